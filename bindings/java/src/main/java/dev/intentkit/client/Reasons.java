package dev.intentkit.client;

/** The reasons most callers branch on (all of them: intentkit's docs/errors.md). */
public final class Reasons {
  private Reasons() {}

  public static final String INVALID_ARGUMENT = "INVALID_ARGUMENT";
  public static final String IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT";
  public static final String INTENT_NOT_FOUND = "INTENT_NOT_FOUND";
  public static final String INVALID_TRANSITION = "INVALID_TRANSITION";
  public static final String UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT";
  public static final String PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE";
  public static final String AUTH_MISSING = "AUTH_MISSING";
  public static final String AUTH_INVALID = "AUTH_INVALID";
  public static final String SHUTTING_DOWN = "SHUTTING_DOWN";
  /** No ErrorInfo: the call's deadline passed. */
  public static final String DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED";
  /** No ErrorInfo: the server could not be reached. */
  public static final String UNAVAILABLE = "UNAVAILABLE";
}
