/**
 * Testing code that uses intentkit without a server: {@link
 * dev.intentkit.client.testing.IntentkitTestServer}, an in-process fake intentkitd whose
 * intents the test approves or rejects as a payer and provider would.
 */
package dev.intentkit.client.testing;
