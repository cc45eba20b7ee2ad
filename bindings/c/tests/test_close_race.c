/* intentkit_close racing calls on the same handle, built with -fsanitize=address: in each of
 * ROUNDS rounds, 8 threads call intentkit_get/intentkit_list in a loop while the main thread
 * closes the handle under them; each thread then calls AFTER more times with the stale handle.
 * Every call must come back (none may crash or hang) with a normal answer (OK, NOT_FOUND) or
 * with FAILED_PRECONDITION / CLOSED, and once a thread has seen CLOSED it sees nothing else.
 *
 * Usage: test_close_race CONFIG.toml   (run by bindings/run-tests.sh; not under valgrind)
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "intentkit.h"

enum { ROUNDS = 100, THREADS = 8, AFTER = 3, MAX_CALLS = 100000 };

typedef struct {
    IntentkitHandle_t *handle; /* stale once closed: the point of the test */
    atomic_int *started;       /* threads that have had at least one answer */
    long calls, answered, closed, unexpected;
    char last_unexpected[256];
} caller_t;

static int is_closed(IntentkitStatus_t st, const IntentkitError_t *e) {
    return st == INTENTKIT_STATUS_FAILED_PRECONDITION && e->reason && strcmp(e->reason, "CLOSED") == 0;
}

static void *caller(void *p) {
    caller_t *c = p;
    IntentkitError_t e = {0};
    int after = -1; /* calls left once CLOSED was seen */
    for (long i = 0; after != 0; i++) {
        char *out = NULL;
        c->calls++;
        IntentkitStatus_t st = i % 2
            ? intentkit_list(c->handle, "{\"pageSize\":5}", &out, &e)
            : intentkit_get(c->handle, "{\"id\":\"0190b5c4-3c2e-7d2a-9c61-000000000000\"}", &out, &e);
        c->answered++;
        intentkit_string_free(out);
        if (is_closed(st, &e)) {
            c->closed++;
            after = after < 0 ? AFTER : after - 1;
        } else if (after >= 0 || (st != INTENTKIT_STATUS_OK && st != INTENTKIT_STATUS_NOT_FOUND)) {
            c->unexpected++;
            snprintf(c->last_unexpected, sizeof c->last_unexpected, "status %d %s: %s", (int)st,
                     e.reason ? e.reason : "(no reason)", e.message ? e.message : "");
        }
        if (i == 0) atomic_fetch_add(c->started, 1);
        if (i == MAX_CALLS && after < 0) { /* close never took effect: fail, do not spin */
            c->unexpected++;
            snprintf(c->last_unexpected, sizeof c->last_unexpected, "no CLOSED after %d calls", MAX_CALLS);
            break;
        }
    }
    intentkit_error_free(&e);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONFIG.toml\n", argv[0]);
        return 2;
    }
    alarm(600); /* a call or a close that never returns fails the run instead of hanging it */
    long calls = 0, answered = 0, closed = 0;
    int failures = 0;
    for (int round = 0; round < ROUNDS; round++) {
        IntentkitHandle_t *handle = NULL;
        IntentkitError_t e = {0};
        if (intentkit_open_file(argv[1], &handle, &e) != INTENTKIT_STATUS_OK) {
            fprintf(stderr, "round %d: open: %s: %s\n", round, e.reason, e.message);
            intentkit_error_free(&e);
            return 1;
        }
        atomic_int started = 0;
        caller_t callers[THREADS];
        pthread_t threads[THREADS];
        for (int i = 0; i < THREADS; i++) {
            memset(&callers[i], 0, sizeof callers[i]);
            callers[i].handle = handle;
            callers[i].started = &started;
            pthread_create(&threads[i], NULL, caller, &callers[i]);
        }
        /* Close while every thread is calling: at once, or a little later, round by round. */
        while (atomic_load(&started) < THREADS) sched_yield();
        struct timespec pause = {0, (round % 5) * 200000L};
        nanosleep(&pause, NULL);
        intentkit_close(handle);
        intentkit_close(handle); /* a second close is a no-op */
        for (int i = 0; i < THREADS; i++) {
            pthread_join(threads[i], NULL);
            calls += callers[i].calls;
            answered += callers[i].answered;
            closed += callers[i].closed;
            if (callers[i].unexpected || callers[i].closed < AFTER + 1) {
                failures++;
                fprintf(stderr, "FAIL round %d thread %d: %ld unexpected answers (last: %s), %ld CLOSED\n",
                        round, i, callers[i].unexpected, callers[i].last_unexpected, callers[i].closed);
            }
        }
    }
    if (answered != calls) failures++;
    printf("c close race: %d rounds x %d threads, %ld calls, %ld answered, %ld CLOSED, %d failed\n",
           ROUNDS, THREADS, calls, answered, closed, failures);
    return failures == 0 ? 0 : 1;
}
