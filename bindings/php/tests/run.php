<?php
/**
 * The PHP binding's tests, against the Pientegra simulator (run by bindings/run-tests.sh):
 *  1. the deposit flow: create, a signed webhook received here over HTTP and handed on,
 *     approved, events polled and acked, list, cancel, refresh, maintenance;
 *  2. errors as exceptions with their status and reason, including a panic inside the library;
 *  3. 4 processes, forked after the library is loaded (as PHP-FPM does), each opening its own
 *     handle on one SQLite file and creating at once: no event lost or doubled;
 *  4. 10,000 calls with flat RSS.
 *
 * Usage: php run.php CONFIG.toml PIENTEGRA_ROOT_URL
 */

declare(strict_types=1);

require __DIR__ . '/../src/IntentKit.php';

use IntentKit\Client;
use IntentKit\IntentKitException;

[$_, $configPath, $root] = $argv + [null, null, null];
if ($configPath === null || $root === null) {
    fwrite(STDERR, "usage: php run.php CONFIG.toml PIENTEGRA_ROOT_URL\n");
    exit(2);
}
$config = file_get_contents($configPath);

$passed = 0;
$failed = 0;
function check(bool $ok, string $what): void
{
    global $passed, $failed;
    if ($ok) {
        $passed++;
    } else {
        $failed++;
        fwrite(STDERR, "FAIL: $what\n");
    }
}

function expectError(callable $f, int $status, string $reason, string $what): void
{
    try {
        $f();
        check(false, "$what: no exception");
    } catch (IntentKitException $e) {
        check($e->status === $status && $e->reason === $reason, "$what: got {$e->status} {$e->reason}");
    }
}

function post(string $url, string $body): int
{
    $ctx = stream_context_create(['http' => [
        'method' => 'POST',
        'header' => "Content-Type: application/json\r\n",
        'content' => $body,
        'ignore_errors' => true,
    ]]);
    file_get_contents($url, false, $ctx);
    preg_match('/^HTTP\/\S+ (\d+)/', $http_response_header[0] ?? '', $m);
    return (int) ($m[1] ?? 0);
}

function deposit(string $key, int $amount = 150000): array
{
    return [
        'idempotencyKey' => $key,
        'account' => 'tr-main',
        'amountMinor' => $amount,
        'currency' => 'TRY',
        'reference' => "order-$key",
        'userId' => 'user-php',
    ];
}

function rssKib(): int
{
    preg_match('/VmRSS:\s+(\d+)/', file_get_contents('/proc/self/status'), $m);
    return (int) $m[1];
}

// ---- 1. the flow ----------------------------------------------------------------------------
check(Client::version() !== '', 'version');
$ik = new Client($config);
$intent = $ik->createDeposit(deposit('php-1'));
check($intent['status'] === 'INTENT_STATUS_PENDING', 'pending');
check(str_contains($intent['handoff']['hostedPage']['url'] ?? '', '/d/'), 'hosted page');
$again = $ik->createDeposit(deposit('php-1'));
check($again['id'] === $intent['id'], 'idempotent create');

$server = stream_socket_server('tcp://127.0.0.1:0');
$port = (int) substr(strrchr(stream_socket_get_name($server, false), ':'), 1);
check(post("$root/_control/webhook-url", json_encode(['url' => "http://127.0.0.1:$port/hook"])) === 204, 'webhook url');
$pid = $intent['providerRef']['pientegra']['intentId'];
check(post("$root/_control/intents/$pid/approve", '{"amount":149000}') === 200, 'approve');
$applied = false;
for ($i = 0; $i < 5 && !$applied; $i++) {
    $conn = @stream_socket_accept($server, 10);
    if ($conn === false) {
        break;
    }
    $head = '';
    while (!str_contains($head, "\r\n\r\n") && ($line = fgets($conn)) !== false) {
        $head .= $line;
    }
    preg_match('/content-length:\s*(\d+)/i', $head, $m);
    preg_match('/pientegra-signature:\s*(.+?)\r\n/i', $head, $s);
    $body = '';
    while (strlen($body) < (int) $m[1] && !feof($conn)) {
        $body .= fread($conn, (int) $m[1] - strlen($body));
    }
    $answer = $ik->handleWebhook('PROVIDER_PIENTEGRA', 'tr-main', ['Pientegra-Signature' => $s[1] ?? ''], $body);
    if (str_contains($body, 'intent.approved')) {
        check($answer['outcome'] === 'applied', 'webhook applied: ' . json_encode($answer));
        $applied = true;
    }
    fwrite($conn, "HTTP/1.1 {$answer['httpStatus']} OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    fclose($conn);
}
check($applied, 'the approval webhook arrived');
$got = $ik->get($intent['id']);
check($got['status'] === 'INTENT_STATUS_APPROVED' && $got['approvedAmountMinor'] === '149000', 'approved 149000');

$events = $ik->nextEvents('php-ledger')['events'] ?? [];
$types = array_map(fn ($e) => $e['typeName'], $events);
check($types === ['intent.created', 'intent.pending', 'intent.approved'], 'events: ' . implode(',', $types));
check($ik->ack('php-ledger', (int) end($events)['seq']) === (int) end($events)['seq'], 'ack');
check(($ik->nextEvents('php-ledger')['events'] ?? []) === [], 'nothing after the ack');

$listed = $ik->list(['statuses' => ['INTENT_STATUS_APPROVED']])['intents'] ?? [];
check(count($listed) === 1 && $listed[0]['id'] === $intent['id'], 'list');
$other = $ik->createDeposit(deposit('php-2', 5000));
check($ik->cancel($other['id'], 'abandoned')['status'] === 'INTENT_STATUS_CANCELED', 'cancel');
check($ik->refresh($intent['id'])['status'] === 'INTENT_STATUS_APPROVED', 'refresh');
check(($ik->runMaintenance()['errors'] ?? null) === [], 'maintenance');

// ---- 2. errors ------------------------------------------------------------------------------
expectError(fn () => $ik->get('nope'), Client::STATUS_INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'bad id');
expectError(fn () => $ik->get('01a20000-0000-7000-8000-000000000000'), Client::STATUS_NOT_FOUND, 'INTENT_NOT_FOUND', 'not found');
expectError(fn () => $ik->createDeposit(deposit('php-1', 150001)), Client::STATUS_ALREADY_EXISTS, 'IDEMPOTENCY_CONFLICT', 'conflict');
expectError(fn () => $ik->createDeposit(deposit('php-tiny', 10)), Client::STATUS_INVALID_ARGUMENT, 'amount_below_min', 'provider refusal');
expectError(fn () => $ik->cancel($intent['id']), Client::STATUS_FAILED_PRECONDITION, 'INVALID_TRANSITION', 'cancel approved');
expectError(fn () => $ik->list(['statusez' => []]), Client::STATUS_INVALID_ARGUMENT, 'INVALID_JSON', 'unknown field');
expectError(fn () => new Client("[ffi]\n"), Client::STATUS_INVALID_ARGUMENT, 'INVALID_CONFIG', 'no database');
// A create Pientegra fails on its side: the intent is recorded and the exception names it; the
// same key later finishes that intent.
check(post("$root/_control/faults", '{"error_rate":1.0}') === 204, 'faults on');
$recorded = null;
try {
    $ik->createDeposit(deposit('php-fault', 7000));
    check(false, 'fault: no exception');
} catch (IntentKitException $e) {
    $recorded = $e->intentId;
    check($e->status === Client::STATUS_UNAVAILABLE && $e->retryable && $recorded !== null,
        "fault: {$e->status} {$e->reason} " . var_export($recorded, true));
}
check(post("$root/_control/faults", '{}') === 204, 'faults off');
check($ik->createDeposit(deposit('php-fault', 7000))['id'] === $recorded, 'the retry finishes the recorded intent');
$ffi = Client::ffi();
$err = $ffi->new('IntentkitError_t');
$st = $ffi->intentkit_selftest_panic(FFI::addr($err));
check($st === Client::STATUS_INTERNAL && FFI::string($err->reason) === 'PANIC', 'a panic is an error, not an abort');
$ffi->intentkit_error_free(FFI::addr($err));
$ik->close();

// ---- 3. four processes on one file ----------------------------------------------------------
// The library is loaded (FFI::cdef above); each child opens its own handle after the fork.
$perChild = 25;
$children = [];
for ($c = 0; $c < 4; $c++) {
    $pid = pcntl_fork();
    if ($pid === 0) {
        $code = 0;
        try {
            $mine = new Client($config);
            for ($n = 0; $n < $perChild; $n++) {
                $mine->createDeposit(deposit("fork-$c-$n", 10000 + $n));
                // Every child also creates the same shared intents: one each, whoever wins.
                $mine->createDeposit(deposit("shared-$n", 20000));
            }
            $mine->close();
        } catch (\Throwable $e) {
            fwrite(STDERR, "child $c: " . $e->getMessage() . "\n");
            $code = 1;
        }
        exit($code);
    }
    $children[] = $pid;
}
foreach ($children as $pid) {
    pcntl_waitpid($pid, $status);
    check(pcntl_wexitstatus($status) === 0, "child $pid exited 0");
}
$ik = new Client($config);
$created = [];
$pending = [];
$seqs = [];
$after = null;
do {
    $page = $ik->nextEvents('php-audit', $after, 500)['events'] ?? [];
    foreach ($page as $e) {
        $seqs[] = (int) $e['seq'];
        if ($e['typeName'] === 'intent.created') {
            $created[$e['intentId']] = ($created[$e['intentId']] ?? 0) + 1;
        }
        if ($e['typeName'] === 'intent.pending') {
            $pending[$e['intentId']] = ($pending[$e['intentId']] ?? 0) + 1;
        }
        $after = (int) $e['seq'];
    }
} while ($page !== []);
$expected = 3 + 4 * $perChild + $perChild; // php-1, php-2, php-fault, the forks' own, the shared ones
check(count($created) === $expected, 'intents created: ' . count($created) . " of $expected");
check(max($created) === 1 && max($pending) === 1, 'no event doubled');
check(count($pending) === $expected - 0, 'every intent pending once: ' . count($pending));
check($seqs === range(1, count($seqs)), 'seqs contiguous, none lost');

// ---- 4. memory: 10,000 calls ----------------------------------------------------------------
for ($i = 0; $i < 1000; $i++) {
    $ik->get($intent['id']);
}
$before = rssKib();
for ($i = 0; $i < 10000; $i++) {
    $ik->get($intent['id']);
    if ($i % 100 === 0) {
        try {
            $ik->get('01a20000-0000-7000-8000-000000000000');
        } catch (IntentKitException) {
        }
    }
}
$after = rssKib();
$growth = $after - $before;
check($growth < 2048, "RSS grew $growth KiB over 10,000 calls (before $before KiB, after $after KiB)");
echo "php memory: RSS $before KiB before, $after KiB after 10,000 calls\n";
$ik->close();

echo "php: " . ($passed + $failed) . " checks, $passed passed, $failed failed\n";
exit($failed === 0 ? 0 : 1);
