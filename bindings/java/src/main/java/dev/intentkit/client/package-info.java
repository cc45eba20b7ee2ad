/**
 * intentkit's Java client: {@link dev.intentkit.client.IntentkitClient} (blocking, with an
 * asynchronous view), {@link dev.intentkit.client.EventConsumer} for exactly-once event
 * consumption, and {@link dev.intentkit.client.IntentkitException}, the typed error. The request
 * and response messages are the generated {@code dev.intentkit.v1} classes, documented by
 * intentkit's {@code proto/intentkit/v1/*.proto}.
 */
package dev.intentkit.client;
