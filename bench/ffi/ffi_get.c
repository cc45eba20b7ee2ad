/* GetIntent through the C ABI, timed from C. Prints the intent id and the ns per call.
 * Usage: ffi_get CONFIG.toml CALLS   (run by bench/ffi_get.sh) */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "intentkit.h"

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    long calls = atol(argv[2]);
    IntentkitError_t err = {0};
    IntentkitHandle_t *ik = NULL;
    if (intentkit_open_file(argv[1], &ik, &err) != INTENTKIT_STATUS_OK) {
        fprintf(stderr, "open: %s\n", err.message);
        return 1;
    }
    char *out = NULL;
    if (intentkit_create_deposit(ik,
            "{\"idempotencyKey\":\"bench-ffi-1\",\"account\":\"tr-main\",\"amountMinor\":\"150000\","
            "\"currency\":\"TRY\",\"reference\":\"bench-ffi-1\",\"userId\":\"user-1\"}",
            &out, &err) != INTENTKIT_STATUS_OK) {
        fprintf(stderr, "create: %s\n", err.message);
        return 1;
    }
    char id[64] = {0};
    const char *p = strstr(out, "\"id\":\"") + 6;
    memcpy(id, p, (size_t)(strchr(p, '"') - p));
    intentkit_string_free(out);
    char req[128];
    snprintf(req, sizeof req, "{\"id\":\"%s\"}", id);
    for (long i = 0; i < calls / 10; i++) { /* warm-up */
        intentkit_get(ik, req, &out, &err);
        intentkit_string_free(out);
    }
    double t0 = now_ns();
    for (long i = 0; i < calls; i++) {
        if (intentkit_get(ik, req, &out, &err) != INTENTKIT_STATUS_OK) return 1;
        intentkit_string_free(out);
    }
    double per = (now_ns() - t0) / (double)calls;
    printf("%s %.0f\n", id, per);
    intentkit_close(ik);
    return 0;
}
