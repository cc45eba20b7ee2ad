package dev.intentkit.client;

/**
 * A consumer in a process of its own, for the test that SIGKILLs it: prints each event it
 * handles as "EVENT seq type intentId", acknowledged after the line is written.
 */
public final class ConsumerMain {
  private ConsumerMain() {}

  public static void main(String[] args) throws Exception {
    IntentkitClient client = IntentkitClient.builder(args[0]).usePlaintext().token(Sandbox.TOKEN).build();
    EventConsumer consumer = client.consume(args[1], e -> {
      System.out.println("EVENT " + e.getSeq() + " " + e.getTypeName() + " " + e.getIntentId());
      System.out.flush();
    });
    while (!consumer.awaitTermination(java.time.Duration.ofHours(1))) {
      // runs until killed
    }
    consumer.failure().ifPresent(Throwable::printStackTrace);
    System.exit(1);
  }
}
