/* The smallest useful libintentkit host: open, create a deposit, print where to send the
 * payer, close. Build: cc -Wall -Wextra -Werror -I bindings/c bindings/c/example.c
 *   -L target/debug -lintentkit -o example
 * Run:   ./example intentkit.toml      (an [ffi] table and a [pientegra.tr-main] account) */
#include <stdio.h>
#include <string.h>

#include "intentkit.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONFIG.toml\n", argv[0]);
        return 2;
    }
    if (intentkit_abi_version() != INTENTKIT_ABI_VERSION) {
        fprintf(stderr, "libintentkit ABI %u, header %u\n", intentkit_abi_version(), INTENTKIT_ABI_VERSION);
        return 1;
    }
    IntentkitError_t err = {0};
    IntentkitHandle_t *ik = NULL;
    if (intentkit_open_file(argv[1], &ik, &err) != INTENTKIT_STATUS_OK) {
        fprintf(stderr, "open: %s: %s\n", err.reason, err.message);
        intentkit_error_free(&err);
        return 1;
    }
    char *intent = NULL;
    IntentkitStatus_t st = intentkit_create_deposit(ik,
        "{\"idempotencyKey\":\"example-order-1\",\"account\":\"tr-main\",\"amountMinor\":\"150000\","
        "\"currency\":\"TRY\",\"reference\":\"example-order-1\",\"userId\":\"user-1\"}",
        &intent, &err);
    int rc = 0;
    if (st == INTENTKIT_STATUS_OK) {
        printf("%s\n", intent);
    } else {
        /* Branch on the reason, never on the message. UNAVAILABLE: retry with the same key. */
        fprintf(stderr, "create: status %d, %s: %s%s\n", (int)st, err.reason, err.message,
                err.retryable ? " (retry with the same key)" : "");
        rc = 1;
    }
    intentkit_string_free(intent);
    intentkit_error_free(&err);
    intentkit_close(ik);
    return rc;
}
