#define FFI_SCOPE "INTENTKIT"
#define FFI_LIB "libintentkit.so"
/* GENERATED from bindings/c/intentkit.h by ffi/tests/headers.rs; do not edit. */
uint32_t
intentkit_abi_version (void);
typedef struct IntentkitHandle IntentkitHandle_t;
enum IntentkitStatus {
    INTENTKIT_STATUS_OK = 0,
    INTENTKIT_STATUS_CANCELLED = 1,
    INTENTKIT_STATUS_UNKNOWN = 2,
    INTENTKIT_STATUS_INVALID_ARGUMENT = 3,
    INTENTKIT_STATUS_DEADLINE_EXCEEDED = 4,
    INTENTKIT_STATUS_NOT_FOUND = 5,
    INTENTKIT_STATUS_ALREADY_EXISTS = 6,
    INTENTKIT_STATUS_PERMISSION_DENIED = 7,
    INTENTKIT_STATUS_RESOURCE_EXHAUSTED = 8,
    INTENTKIT_STATUS_FAILED_PRECONDITION = 9,
    INTENTKIT_STATUS_ABORTED = 10,
    INTENTKIT_STATUS_OUT_OF_RANGE = 11,
    INTENTKIT_STATUS_UNIMPLEMENTED = 12,
    INTENTKIT_STATUS_INTERNAL = 13,
    INTENTKIT_STATUS_UNAVAILABLE = 14,
    INTENTKIT_STATUS_DATA_LOSS = 15,
    INTENTKIT_STATUS_UNAUTHENTICATED = 16,
}
; typedef int32_t
IntentkitStatus_t;
typedef struct IntentkitError {
    IntentkitStatus_t status;
    char * reason;
    char * message;
    bool retryable;
    char * intent_id;
} IntentkitError_t;
IntentkitStatus_t
intentkit_ack (
    IntentkitHandle_t const * handle,
    char const * request_json,
    char * * out_json,
    IntentkitError_t * error);
IntentkitStatus_t
intentkit_cancel (
    IntentkitHandle_t const * handle,
    char const * request_json,
    char * * out_json,
    IntentkitError_t * error);
void
intentkit_close (
    IntentkitHandle_t * handle);
IntentkitStatus_t
intentkit_create_account_verification (
    IntentkitHandle_t const * handle,
    char const * request_json,
    char * * out_json,
    IntentkitError_t * error);
IntentkitStatus_t
intentkit_create_deposit (
    IntentkitHandle_t const * handle,
    char const * request_json,
    char * * out_json,
    IntentkitError_t * error);
void
intentkit_error_free (
    IntentkitError_t * error);
IntentkitStatus_t
intentkit_get (
    IntentkitHandle_t const * handle,
    char const * request_json,
    char * * out_json,
    IntentkitError_t * error);
IntentkitStatus_t
intentkit_handle_webhook (
    IntentkitHandle_t const * handle,
    char const * request_json,
    char * * out_json,
    IntentkitError_t * error);
IntentkitStatus_t
intentkit_list (
    IntentkitHandle_t const * handle,
    char const * request_json,
    char * * out_json,
    IntentkitError_t * error);
IntentkitStatus_t
intentkit_next_events (
    IntentkitHandle_t const * handle,
    char const * request_json,
    char * * out_json,
    IntentkitError_t * error);
IntentkitStatus_t
intentkit_open (
    char const * config_toml,
    IntentkitHandle_t * * out_handle,
    IntentkitError_t * error);
IntentkitStatus_t
intentkit_open_file (
    char const * path,
    IntentkitHandle_t * * out_handle,
    IntentkitError_t * error);
IntentkitStatus_t
intentkit_refresh (
    IntentkitHandle_t const * handle,
    char const * request_json,
    char * * out_json,
    IntentkitError_t * error);
IntentkitStatus_t
intentkit_run_maintenance (
    IntentkitHandle_t const * handle,
    char const * request_json,
    char * * out_json,
    IntentkitError_t * error);
IntentkitStatus_t
intentkit_selftest_panic (
    IntentkitError_t * error);
void
intentkit_string_free (
    char * s);
char const *
intentkit_version (void);
