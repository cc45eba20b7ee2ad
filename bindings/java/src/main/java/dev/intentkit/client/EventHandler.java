package dev.intentkit.client;

import dev.intentkit.v1.Event;

/** Handles one event; returning normally acknowledges it, throwing leaves it unacknowledged. */
@FunctionalInterface
public interface EventHandler {
  void handle(Event event) throws Exception;
}
