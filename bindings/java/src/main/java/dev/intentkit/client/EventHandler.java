package dev.intentkit.client;

import dev.intentkit.v1.Event;

/** Handles one event; returning normally acknowledges it, throwing leaves it unacknowledged. */
@FunctionalInterface
public interface EventHandler {
  /**
   * Handles one event, idempotently on {@code event.getBusinessKey()} (an event whose ack was
   * lost in a crash comes again).
   *
   * @param event the event, in seq order
   * @throws Exception to stop the consumer, leaving the event unacknowledged
   */
  void handle(Event event) throws Exception;
}
