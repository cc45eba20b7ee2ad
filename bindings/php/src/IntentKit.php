<?php
/**
 * intentkit for PHP, over libintentkit's C ABI with PHP's FFI extension.
 *
 * Requests and responses are intentkit.v1 messages (proto/intentkit/v1/service.proto) as PHP
 * arrays, in proto3's JSON names (camelCase: "idempotencyKey", "amountMinor"). A failure throws
 * IntentKitException with the status (gRPC's numbers), the stable reason code (branch on it),
 * and whether retrying can succeed.
 *
 * Calls block. Create a Client in each process (in PHP-FPM: in the worker, never before the
 * fork); several processes may use the same SQLite file. The FFI definitions are loaded once
 * per process from the flattened header next to this file.
 */

declare(strict_types=1);

namespace IntentKit;

final class IntentKitException extends \RuntimeException
{
    public function __construct(
        public readonly int $status,
        public readonly string $reason,
        string $message,
        public readonly bool $retryable,
        /** The intent a failed create still recorded (retry with the same key to finish it). */
        public readonly ?string $intentId = null,
    ) {
        parent::__construct("$reason: $message", $status);
    }
}

final class Client
{
    /** The ABI this class is written for (`INTENTKIT_ABI_VERSION`): 2 added `intent_id` to errors. */
    public const ABI_VERSION = 2;

    public const STATUS_OK = 0;
    public const STATUS_INVALID_ARGUMENT = 3;
    public const STATUS_NOT_FOUND = 5;
    public const STATUS_ALREADY_EXISTS = 6;
    public const STATUS_FAILED_PRECONDITION = 9;
    public const STATUS_INTERNAL = 13;
    public const STATUS_UNAVAILABLE = 14;

    private static ?\FFI $ffi = null;
    /** @var \FFI\CData|null IntentkitHandle_t* */
    private ?\FFI\CData $handle;

    /** The FFI binding, loaded once. `$library` defaults to $INTENTKIT_LIB, then libintentkit.so. */
    public static function ffi(?string $library = null): \FFI
    {
        if (self::$ffi === null) {
            $header = file_get_contents(__DIR__ . '/../intentkit.php.h');
            // FFI::cdef reads no preprocessor lines; FFI_SCOPE/FFI_LIB are for FFI::load users.
            $header = preg_replace('/^#.*$/m', '', $header);
            $library ??= getenv('INTENTKIT_LIB') ?: 'libintentkit.so';
            self::$ffi = \FFI::cdef($header, $library);
        }
        return self::$ffi;
    }

    /** Opens intentkit from TOML text (an [ffi] table and provider accounts). */
    public function __construct(string $configToml)
    {
        $this->handle = self::open('intentkit_open', $configToml);
    }

    /** Opens intentkit from a TOML file. */
    public static function fromFile(string $path): self
    {
        $client = (new \ReflectionClass(self::class))->newInstanceWithoutConstructor();
        $client->handle = self::open('intentkit_open_file', $path);
        return $client;
    }

    private static function open(string $function, string $arg): \FFI\CData
    {
        $ffi = self::ffi();
        if ($ffi->intentkit_abi_version() !== self::ABI_VERSION) {
            throw new \LogicException('libintentkit ABI ' . $ffi->intentkit_abi_version() . ', this class speaks ' . self::ABI_VERSION);
        }
        $handle = $ffi->new('IntentkitHandle_t*');
        $error = $ffi->new('IntentkitError_t');
        $status = $ffi->$function($arg, \FFI::addr($handle), \FFI::addr($error));
        self::check($status, $error);
        return $handle;
    }

    public function __destruct()
    {
        $this->close();
    }

    /** Frees the handle; the client is unusable afterwards. Called by the destructor. */
    public function close(): void
    {
        if ($this->handle !== null) {
            self::ffi()->intentkit_close($this->handle);
            $this->handle = null;
        }
    }

    /** The library's version, e.g. "0.1.0". */
    public static function version(): string
    {
        // FFI turns a returned `const char *` into a PHP string itself.
        return (string) self::ffi()->intentkit_version();
    }

    private static function check(int $status, \FFI\CData $error): void
    {
        if ($status === self::STATUS_OK) {
            return;
        }
        $ffi = self::ffi();
        $reason = $error->reason === null ? 'UNKNOWN' : \FFI::string($error->reason);
        $message = $error->message === null ? '' : \FFI::string($error->message);
        $retryable = (bool) $error->retryable;
        $intentId = $error->intent_id === null ? null : \FFI::string($error->intent_id);
        $ffi->intentkit_error_free(\FFI::addr($error));
        throw new IntentKitException($status, $reason, $message, $retryable, $intentId);
    }

    private function call(string $function, array $request): array
    {
        if ($this->handle === null) {
            throw new \LogicException('this intentkit client is closed');
        }
        $ffi = self::ffi();
        $out = $ffi->new('char*');
        $error = $ffi->new('IntentkitError_t');
        $json = json_encode((object) $request, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES);
        $status = $ffi->$function($this->handle, $json, \FFI::addr($out), \FFI::addr($error));
        self::check($status, $error);
        try {
            return json_decode(\FFI::string($out), true, 512, JSON_THROW_ON_ERROR);
        } finally {
            $ffi->intentkit_string_free($out);
        }
    }

    /** CreateDepositRequest → Intent. */
    public function createDeposit(array $request): array
    {
        return $this->call('intentkit_create_deposit', $request);
    }

    /** CreateAccountVerificationRequest → Intent. */
    public function createAccountVerification(array $request): array
    {
        return $this->call('intentkit_create_account_verification', $request);
    }

    public function get(string $id): array
    {
        return $this->call('intentkit_get', ['id' => $id]);
    }

    /** ListIntentsRequest → ListIntentsResponse. */
    public function list(array $request = []): array
    {
        return $this->call('intentkit_list', $request);
    }

    public function cancel(string $id, string $reason = ''): array
    {
        return $this->call('intentkit_cancel', ['id' => $id, 'reason' => $reason]);
    }

    public function refresh(string $id): array
    {
        return $this->call('intentkit_refresh', ['id' => $id]);
    }

    /**
     * A provider webhook or callback as received: answer the provider with the result's
     * httpStatus and httpBody. `$rawBody` is passed byte for byte (the signature covers it).
     */
    public function handleWebhook(string $provider, string $account, array $headers, string $rawBody): array
    {
        return $this->call('intentkit_handle_webhook', [
            'provider' => $provider,
            'account' => $account,
            'headers' => (object) $headers,
            'body' => base64_encode($rawBody),
        ]);
    }

    /** The next events for `$consumer`, after `$afterSeq` or its last ack. */
    public function nextEvents(string $consumer, ?int $afterSeq = null, int $limit = 100): array
    {
        $request = ['consumer' => $consumer, 'limit' => $limit];
        if ($afterSeq !== null) {
            $request['afterSeq'] = (string) $afterSeq;
        }
        return $this->call('intentkit_next_events', $request);
    }

    /** Acknowledges every event up to `$seq`; returns the consumer's position. */
    public function ack(string $consumer, int $seq): int
    {
        $r = $this->call('intentkit_ack', ['consumer' => $consumer, 'seq' => (string) $seq]);
        return (int) ($r['ackedSeq'] ?? 0);
    }

    /** One recovery/expiry/reconciliation pass; call it from a timer if intentkitd is not running. */
    public function runMaintenance(): array
    {
        return $this->call('intentkit_run_maintenance', []);
    }
}
