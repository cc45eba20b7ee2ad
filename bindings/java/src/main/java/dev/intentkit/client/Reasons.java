package dev.intentkit.client;

/**
 * The reasons ({@link IntentkitException#reason()}) most callers branch on; all of them are in
 * intentkit's {@code docs/errors.md}, and a provider's refusal keeps the provider's own code.
 */
public final class Reasons {
  private Reasons() {}

  /** A request field is missing or out of range; fix the request. */
  public static final String INVALID_ARGUMENT = "INVALID_ARGUMENT";
  /** The idempotency key was used with other parameters; {@code intentId()} names that intent. */
  public static final String IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT";
  /** No intent has that id. */
  public static final String INTENT_NOT_FOUND = "INTENT_NOT_FOUND";
  /** The intent's status does not allow that (e.g. cancelling an approved intent). */
  public static final String INVALID_TRANSITION = "INVALID_TRANSITION";
  /** The account is not configured on the server. */
  public static final String UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT";
  /** The provider could not be reached; retry with the same key. */
  public static final String PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE";
  /** No bearer token was sent. */
  public static final String AUTH_MISSING = "AUTH_MISSING";
  /** The bearer token is not one the server knows. */
  public static final String AUTH_INVALID = "AUTH_INVALID";
  /** The server is stopping; retry (another instance, or this one once back). */
  public static final String SHUTTING_DOWN = "SHUTTING_DOWN";
  /** No ErrorInfo: the call's deadline passed. */
  public static final String DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED";
  /** No ErrorInfo: the server could not be reached. */
  public static final String UNAVAILABLE = "UNAVAILABLE";
}
