/* The C ABI end to end against the Pientegra simulator: a deposit created, approved by a
 * signed webhook that this program receives over HTTP and hands to intentkit, the event poll
 * and ack, every error path, four threads on one handle, and every free function.
 *
 * Usage: test_intentkit CONFIG.toml PIENTEGRA_ROOT_URL   (run by bindings/run-tests.sh)
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "intentkit.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        checks++;                                                          \
        if (!(cond)) {                                                     \
            failures++;                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
        }                                                                  \
    } while (0)

/* ---- tiny HTTP/1.1 over loopback ------------------------------------------------------- */

static int parse_port(const char *root) { /* "http://127.0.0.1:PORT" */
    const char *colon = strrchr(root, ':');
    return colon ? atoi(colon + 1) : 0;
}

static int connect_loopback(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* POSTs `body` (may be NULL) to root+path; returns the HTTP status, or -1. */
static int http_post(const char *root, const char *path, const char *body) {
    int fd = connect_loopback(parse_port(root));
    if (fd < 0) return -1;
    char req[4096];
    size_t len = body ? strlen(body) : 0;
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     path, len, body ? body : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    char resp[512] = {0};
    ssize_t got = read(fd, resp, sizeof resp - 1);
    close(fd);
    int status = -1;
    if (got > 12) sscanf(resp, "HTTP/1.1 %d", &status);
    return status;
}

/* ---- JSON and base64 helpers (just enough for these messages) -------------------------- */

/* Copies the string value of the first "key":"..." into out. */
static int json_string(const char *json, const char *key, char *out, size_t cap) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = json ? strstr(json, pat) : NULL;
    if (!p) return 0;
    p += strlen(pat);
    size_t i = 0;
    while (*p && *p != '"' && i + 1 < cap) out[i++] = *p++;
    out[i] = 0;
    return 1;
}

static char *base64(const unsigned char *in, size_t len) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < len) v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < len) v |= in[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < len ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? t[v & 63] : '=';
    }
    out[o] = 0;
    return out;
}

/* ---- a one-shot webhook receiver -------------------------------------------------------- */

static int listen_loopback(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    listen(fd, 4);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

typedef struct {
    int conn;
    char signature[512];
    char *body;
    size_t body_len;
} delivery_t;

/* Accepts one delivery (10 s at most) and reads its signature header and body. */
static int accept_delivery(int listener, delivery_t *d) {
    struct pollfd p = {.fd = listener, .events = POLLIN};
    if (poll(&p, 1, 10000) != 1) return 0;
    d->conn = accept(listener, NULL, NULL);
    size_t cap = 65536, got = 0;
    char *buf = calloc(1, cap);
    char *end = NULL;
    while (got < cap - 1 && !(end = strstr(buf, "\r\n\r\n"))) {
        ssize_t n = read(d->conn, buf + got, cap - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (!end) {
        free(buf);
        return 0;
    }
    size_t header_len = (size_t)(end - buf) + 4;
    size_t content_length = 0;
    d->signature[0] = 0;
    for (char *line = buf; line < end; line = strstr(line, "\r\n") + 2) {
        if (strncasecmp(line, "content-length:", 15) == 0) content_length = (size_t)atol(line + 15);
        if (strncasecmp(line, "pientegra-signature:", 20) == 0) {
            const char *v = line + 20;
            while (*v == ' ') v++;
            size_t n = (size_t)(strstr(line, "\r\n") - v);
            if (n >= sizeof d->signature) n = sizeof d->signature - 1;
            memcpy(d->signature, v, n);
            d->signature[n] = 0;
        }
    }
    while (got < header_len + content_length) {
        ssize_t n = read(d->conn, buf + got, cap - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    d->body_len = content_length;
    d->body = malloc(content_length + 1);
    memcpy(d->body, buf + header_len, content_length);
    d->body[content_length] = 0;
    free(buf);
    return 1;
}

static void answer_delivery(delivery_t *d, unsigned status) {
    char resp[128];
    int n = snprintf(resp, sizeof resp, "HTTP/1.1 %u OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status);
    if (write(d->conn, resp, (size_t)n) != n) perror("answer");
    close(d->conn);
    free(d->body);
    d->body = NULL;
}

/* ---- the flow --------------------------------------------------------------------------- */

static IntentkitHandle_t *handle;

typedef struct {
    const char *id;
    int ok;
} thread_arg_t;

static void *get_many(void *p) {
    thread_arg_t *a = p;
    char req[256];
    snprintf(req, sizeof req, "{\"id\":\"%s\"}", a->id);
    IntentkitError_t err = {0};
    for (int i = 0; i < 50; i++) {
        char *out = NULL;
        if (intentkit_get(handle, req, &out, &err) == INTENTKIT_STATUS_OK) a->ok++;
        intentkit_string_free(out);
    }
    intentkit_error_free(&err);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s CONFIG.toml PIENTEGRA_ROOT_URL\n", argv[0]);
        return 2;
    }
    const char *root = argv[2];
    IntentkitError_t err = {0};
    char *out = NULL;

    /* Versions: the header and the library agree. */
    CHECK(intentkit_abi_version() == INTENTKIT_ABI_VERSION, "abi %u", intentkit_abi_version());
    CHECK(strcmp(intentkit_version(), INTENTKIT_VERSION) == 0, "version %s", intentkit_version());

    /* Open: NULLs and bad config are errors, and the out-parameter stays untouched. */
    CHECK(intentkit_open(NULL, &handle, &err) == INTENTKIT_STATUS_INVALID_ARGUMENT, "null config");
    CHECK(err.reason && strcmp(err.reason, "NULL_ARGUMENT") == 0, "reason %s", err.reason);
    CHECK(handle == NULL, "handle written on failure");
    CHECK(intentkit_open("[ffi]\ndatabse = 1\n", &handle, &err) == INTENTKIT_STATUS_INVALID_ARGUMENT, "typo");
    CHECK(strcmp(err.reason, "INVALID_CONFIG") == 0, "reason %s", err.reason);
    CHECK(intentkit_open_file("/nonexistent/intentkit.toml", &handle, &err) == INTENTKIT_STATUS_INVALID_ARGUMENT, "no file");
    CHECK(intentkit_open_file(argv[1], NULL, &err) == INTENTKIT_STATUS_INVALID_ARGUMENT, "null out");
    CHECK(intentkit_open_file(argv[1], &handle, NULL) == INTENTKIT_STATUS_OK, "open");
    if (!handle) {
        fprintf(stderr, "cannot continue without a handle\n");
        return 1;
    }

    /* A deposit. */
    const char *create = "{\"idempotencyKey\":\"c-dep-1\",\"account\":\"tr-main\",\"amountMinor\":\"150000\","
                         "\"currency\":\"TRY\",\"reference\":\"order-c-1\",\"userId\":\"user-c\"}";
    CHECK(intentkit_create_deposit(handle, create, &out, &err) == INTENTKIT_STATUS_OK, "create: %s", err.message);
    char id[64] = {0}, pid[64] = {0};
    CHECK(out && strstr(out, "\"status\":\"INTENT_STATUS_PENDING\""), "pending: %s", out);
    CHECK(json_string(out, "id", id, sizeof id), "id in %s", out);
    CHECK(json_string(out, "intentId", pid, sizeof pid), "pientegra id in %s", out);
    CHECK(strstr(out, "\"url\":\"http") != NULL, "hosted page in %s", out);
    intentkit_string_free(out);
    out = NULL;

    /* Error paths: each with its status and reason, and no result written. */
    struct {
        const char *what;
        IntentkitStatus_t status;
        const char *reason;
        int rc;
    } cases[8];
    int nc = 0;
    char req[512];
    cases[nc].what = "bad json";
    cases[nc].rc = intentkit_get(handle, "{\"id\":", &out, &err);
    cases[nc].status = INTENTKIT_STATUS_INVALID_ARGUMENT;
    cases[nc++].reason = "INVALID_JSON";
    cases[nc].rc = intentkit_get(handle, "{\"idd\":\"x\"}", &out, &err);
    cases[nc].what = "unknown field";
    cases[nc].status = INTENTKIT_STATUS_INVALID_ARGUMENT;
    cases[nc++].reason = "INVALID_JSON";
    cases[nc].rc = intentkit_get(handle, "{\"id\":\"01a20000-0000-7000-8000-000000000000\"}", &out, &err);
    cases[nc].what = "not found";
    cases[nc].status = INTENTKIT_STATUS_NOT_FOUND;
    cases[nc++].reason = "INTENT_NOT_FOUND";
    snprintf(req, sizeof req, "%s", create);
    memcpy(strstr(req, "150000"), "150001", 6);
    cases[nc].rc = intentkit_create_deposit(handle, req, &out, &err);
    cases[nc].what = "idempotency conflict";
    cases[nc].status = INTENTKIT_STATUS_ALREADY_EXISTS;
    cases[nc++].reason = "IDEMPOTENCY_CONFLICT";
    cases[nc].rc = intentkit_create_deposit(handle,
        "{\"idempotencyKey\":\"c-tiny\",\"account\":\"tr-main\",\"amountMinor\":\"10\",\"currency\":\"TRY\","
        "\"reference\":\"order-c-2\",\"userId\":\"user-c\"}", &out, &err);
    cases[nc].what = "provider refusal";
    cases[nc].status = INTENTKIT_STATUS_INVALID_ARGUMENT;
    cases[nc++].reason = "amount_below_min";
    cases[nc].rc = intentkit_get(NULL, "{}", &out, &err);
    cases[nc].what = "null handle";
    cases[nc].status = INTENTKIT_STATUS_INVALID_ARGUMENT;
    cases[nc++].reason = "NULL_ARGUMENT";
    cases[nc].rc = intentkit_get(handle, "{}", NULL, &err);
    cases[nc].what = "null out";
    cases[nc].status = INTENTKIT_STATUS_INVALID_ARGUMENT;
    cases[nc++].reason = "NULL_ARGUMENT";
    cases[nc].rc = intentkit_selftest_panic(&err);
    cases[nc].what = "panic";
    cases[nc].status = INTENTKIT_STATUS_INTERNAL;
    cases[nc++].reason = "PANIC";
    for (int i = 0; i < nc; i++) {
        /* The error struct holds the last failure only; re-run each to read its reason. */
        CHECK(cases[i].rc == (int)cases[i].status, "%s: status %d", cases[i].what, cases[i].rc);
    }
    CHECK(strcmp(err.reason, "PANIC") == 0, "last reason %s", err.reason);
    CHECK(intentkit_get(handle, "{\"id\":\"\xff\xfe\"}", &out, &err) == INTENTKIT_STATUS_INVALID_ARGUMENT, "not utf-8");
    CHECK(strcmp(err.reason, "INVALID_UTF8") == 0, "reason %s", err.reason);
    CHECK(out == NULL, "a result was written on failure");
    intentkit_get(handle, "{\"id\":\"01a20000-0000-7000-8000-000000000000\"}", &out, &err);
    CHECK(strcmp(err.reason, "INTENT_NOT_FOUND") == 0 && err.status == INTENTKIT_STATUS_NOT_FOUND && !err.retryable,
          "reason %s", err.reason);
    intentkit_create_deposit(handle, req, &out, &err);
    CHECK(strcmp(err.reason, "IDEMPOTENCY_CONFLICT") == 0, "reason %s", err.reason);

    /* The webhook: Pientegra approves, signs, and delivers to our listener; we pass it on. */
    int port = 0;
    int listener = listen_loopback(&port);
    snprintf(req, sizeof req, "{\"url\":\"http://127.0.0.1:%d/hook\"}", port);
    CHECK(http_post(root, "/_control/webhook-url", req) == 204, "set webhook url");
    char path[256];
    snprintf(path, sizeof path, "/_control/intents/%s/approve", pid);
    CHECK(http_post(root, path, "{\"amount\":149000}") == 200, "approve");
    int approved = 0;
    for (int attempt = 0; attempt < 5 && !approved; attempt++) {
        delivery_t d = {0};
        if (!accept_delivery(listener, &d)) break;
        char *b64 = base64((unsigned char *)d.body, d.body_len);
        size_t cap = strlen(b64) + 1024;
        char *hook = malloc(cap);
        snprintf(hook, cap,
                 "{\"provider\":\"PROVIDER_PIENTEGRA\",\"account\":\"tr-main\","
                 "\"headers\":{\"Pientegra-Signature\":\"%s\"},\"body\":\"%s\"}",
                 d.signature, b64);
        CHECK(intentkit_handle_webhook(handle, hook, &out, &err) == INTENTKIT_STATUS_OK, "webhook: %s", err.message);
        unsigned http = 500;
        if (out) {
            char outcome[32] = {0};
            json_string(out, "outcome", outcome, sizeof outcome);
            http = strstr(out, "\"httpStatus\":200") ? 200 : 400;
            if (strstr(d.body, "intent.approved")) {
                CHECK(strcmp(outcome, "applied") == 0, "outcome %s", out);
                approved = 1;
            }
        }
        answer_delivery(&d, http);
        intentkit_string_free(out);
        out = NULL;
        free(hook);
        free(b64);
    }
    close(listener);

    /* An account name that cannot exist is answered as the receiver answers it: 404
     * unknown_account in the response, not an error of the call. */
    CHECK(intentkit_handle_webhook(handle,
                                   "{\"provider\":\"PROVIDER_PIENTEGRA\",\"account\":\"not an account\","
                                   "\"headers\":{},\"body\":\"e30=\"}",
                                   &out, &err) == INTENTKIT_STATUS_OK,
          "invalid account: %s", err.message);
    CHECK(out && strstr(out, "\"httpStatus\":404") && strstr(out, "\"outcome\":\"unknown_account\""),
          "invalid account answer: %s", out ? out : "(null)");
    intentkit_string_free(out);
    out = NULL;
    CHECK(approved, "the approval webhook arrived");
    snprintf(req, sizeof req, "{\"id\":\"%s\"}", id);
    CHECK(intentkit_get(handle, req, &out, &err) == INTENTKIT_STATUS_OK, "get");
    CHECK(out && strstr(out, "INTENT_STATUS_APPROVED") && strstr(out, "\"approvedAmountMinor\":\"149000\""), "approved: %s", out);
    intentkit_string_free(out);
    out = NULL;

    /* Four threads share the handle. */
    pthread_t threads[4];
    thread_arg_t args[4];
    for (int i = 0; i < 4; i++) {
        args[i].id = id;
        args[i].ok = 0;
        pthread_create(&threads[i], NULL, get_many, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        CHECK(args[i].ok == 50, "thread %d: %d of 50", i, args[i].ok);
    }

    /* Events: poll, ack, poll again. */
    CHECK(intentkit_next_events(handle, "{\"consumer\":\"c-test\"}", &out, &err) == INTENTKIT_STATUS_OK, "poll");
    CHECK(out && strstr(out, "\"typeName\":\"intent.approved\""), "events: %s", out);
    char *last = out ? strstr(out, "\"seq\":\"") : NULL, *p = last;
    while (p && (p = strstr(p + 1, "\"seq\":\""))) last = p;
    char seq[32] = {0};
    if (last) json_string(last, "seq", seq, sizeof seq);
    intentkit_string_free(out);
    out = NULL;
    snprintf(req, sizeof req, "{\"consumer\":\"c-test\",\"seq\":\"%s\"}", seq);
    CHECK(intentkit_ack(handle, req, &out, &err) == INTENTKIT_STATUS_OK, "ack %s", err.message);
    intentkit_string_free(out);
    out = NULL;
    CHECK(intentkit_next_events(handle, "{\"consumer\":\"c-test\"}", &out, &err) == INTENTKIT_STATUS_OK, "poll 2");
    CHECK(out && strstr(out, "\"events\":[]"), "nothing after the ack, as an empty list: %s", out);
    intentkit_string_free(out);
    out = NULL;

    /* List, cancel, refresh, maintenance. */
    CHECK(intentkit_list(handle, "{\"statuses\":[\"INTENT_STATUS_APPROVED\"]}", &out, &err) == INTENTKIT_STATUS_OK, "list");
    CHECK(out && strstr(out, id), "listed: %s", out);
    intentkit_string_free(out);
    out = NULL;
    CHECK(intentkit_create_deposit(handle,
        "{\"idempotencyKey\":\"c-dep-2\",\"account\":\"tr-main\",\"amountMinor\":\"5000\",\"currency\":\"TRY\","
        "\"reference\":\"order-c-3\",\"userId\":\"user-c\"}", &out, &err) == INTENTKIT_STATUS_OK, "create 2");
    char id2[64] = {0};
    json_string(out, "id", id2, sizeof id2);
    intentkit_string_free(out);
    out = NULL;
    snprintf(req, sizeof req, "{\"id\":\"%s\",\"reason\":\"abandoned\"}", id2);
    CHECK(intentkit_cancel(handle, req, &out, &err) == INTENTKIT_STATUS_OK, "cancel");
    CHECK(out && strstr(out, "INTENT_STATUS_CANCELED"), "canceled: %s", out);
    intentkit_string_free(out);
    out = NULL;
    snprintf(req, sizeof req, "{\"id\":\"%s\"}", id);
    CHECK(intentkit_cancel(handle, req, &out, &err) == INTENTKIT_STATUS_FAILED_PRECONDITION, "cancel approved");
    CHECK(strcmp(err.reason, "INVALID_TRANSITION") == 0, "reason %s", err.reason);
    CHECK(intentkit_refresh(handle, req, &out, &err) == INTENTKIT_STATUS_OK, "refresh: %s", err.message);
    intentkit_string_free(out);
    out = NULL;
    CHECK(intentkit_run_maintenance(handle, "{}", &out, &err) == INTENTKIT_STATUS_OK, "maintenance");
    CHECK(out && strstr(out, "\"errors\":[]"), "report: %s", out);
    intentkit_string_free(out);
    out = NULL;

    /* A create Pientegra fails on its side: the intent is recorded, and the error names it
       in its own field; the same key later finishes that intent, not another. */
    CHECK(http_post(root, "/_control/faults", "{\"error_rate\":1.0}") == 204, "faults on");
    const char *failing = "{\"idempotencyKey\":\"c-dep-3\",\"account\":\"tr-main\",\"amountMinor\":\"7000\","
        "\"currency\":\"TRY\",\"reference\":\"order-c-4\",\"userId\":\"user-c\"}";
    CHECK(intentkit_create_deposit(handle, failing, &out, &err) == INTENTKIT_STATUS_UNAVAILABLE,
        "create under faults: %s", err.reason);
    CHECK(err.retryable && err.intent_id != NULL, "the recorded intent is named: %s",
        err.intent_id ? err.intent_id : "(null)");
    char recorded[64] = {0};
    if (err.intent_id) snprintf(recorded, sizeof recorded, "%s", err.intent_id);
    CHECK(http_post(root, "/_control/faults", "{}") == 204, "faults off");
    CHECK(intentkit_create_deposit(handle, failing, &out, &err) == INTENTKIT_STATUS_OK, "retry: %s", err.message);
    char id3[64] = {0};
    if (out) json_string(out, "id", id3, sizeof id3);
    CHECK(recorded[0] && strcmp(id3, recorded) == 0, "the retry finished %s, the error named %s", id3, recorded);
    intentkit_string_free(out);
    out = NULL;

    /* Every free of NULL is a no-op. */
    intentkit_string_free(NULL);
    intentkit_error_free(NULL);
    intentkit_close(NULL);

    intentkit_error_free(&err);
    CHECK(err.reason == NULL && err.message == NULL && err.intent_id == NULL, "error cleared");
    intentkit_close(handle);

    printf("c: %d checks, %d passed, %d failed\n", checks, checks - failures, failures);
    return failures == 0 ? 0 : 1;
}
