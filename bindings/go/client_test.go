package intentkit_test

// Over the network against the real intentkitd: every test here is a gRPC call a Go backend
// makes, and what the server really answered.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	intentkit "github.com/intentkit/intentkit/bindings/go"
	v1 "github.com/intentkit/intentkit/bindings/go/gen/intentkit/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// shared is the server most tests use; tests that restart one start their own.
var shared *sandbox

func TestMain(m *testing.M) {
	if os.Getenv("INTENTKIT_CONSUMER_PROCESS") != "" {
		os.Exit(m.Run()) // a consumer child process: no server of its own
	}
	dir, err := os.MkdirTemp("", "intentkit-go-")
	if err != nil {
		panic(err)
	}
	t := &mainTB{}
	shared = startSandbox(t, dir, "")
	// The example dials the address a user would be given.
	os.Setenv("INTENTKIT_ADDR", shared.grpcAddr)
	code := m.Run()
	shared.stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

func dial(tb testing.TB, s *sandbox, opts ...intentkit.Option) *intentkit.Client {
	tb.Helper()
	opts = append([]intentkit.Option{intentkit.WithInsecure(), intentkit.WithToken(sandboxToken)}, opts...)
	c, err := intentkit.Dial(s.grpcAddr, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// unique makes keys and references that no other test or run uses.
func unique(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
}

func deposit(key string, amount int64) *v1.CreateDepositRequest {
	return &v1.CreateDepositRequest{
		IdempotencyKey: key,
		Account:        "tr-sandbox",
		AmountMinor:    amount,
		Currency:       "TRY",
		Reference:      "order-" + key,
		UserId:         "user-42",
	}
}

// waitStatus polls GetIntent until the intent reaches want (webhooks are asynchronous).
func waitStatus(t *testing.T, c *intentkit.Client, id string, want v1.IntentStatus) *v1.Intent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		it, err := c.GetIntent(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if it.GetStatus() == want {
			return it
		}
		if time.Now().After(deadline) {
			t.Fatalf("intent %s is %s, want %s", id, it.GetStatus(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// approve opens the deposit's hosted page as the payer would, then approves it at the
// simulator, which signs and sends intent.approved to intentkitd's receiver.
func approve(t *testing.T, s *sandbox, it *v1.Intent) {
	t.Helper()
	resp, err := http.Get(it.GetHandoff().GetHostedPage().GetUrl())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("hosted page: %d", resp.StatusCode)
	}
	control(t, s.pientegra+"/_control/intents/"+it.GetProviderRef().GetPientegra().GetIntentId()+"/approve", "")
}

// consumerProcess runs TestConsumerProcess in a child process: a real consumer that can be
// SIGKILLed. Each event it handles comes back as a line "EVENT <seq> <type> <intent id>".
type consumerProcess struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func startConsumer(t *testing.T, s *sandbox, name string) *consumerProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestConsumerProcess$", "-test.v=false")
	cmd.Env = append(os.Environ(),
		"INTENTKIT_CONSUMER_PROCESS=1",
		"INTENTKIT_CONSUMER_ADDR="+s.grpcAddr,
		"INTENTKIT_CONSUMER_NAME="+name,
	)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &consumerProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "EVENT ") {
				p.mu.Lock()
				p.lines = append(p.lines, sc.Text())
				p.mu.Unlock()
			}
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	return p
}

func (p *consumerProcess) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// events returns what the consumer handled so far, as (seq, type, intent id).
func (p *consumerProcess) events() [][3]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out [][3]string
	for _, l := range p.lines {
		f := strings.Fields(l)
		out = append(out, [3]string{f[1], f[2], f[3]})
	}
	return out
}

func (p *consumerProcess) waitFor(t *testing.T, typ, intentID string) uint64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range p.events() {
			if e[1] == typ && e[2] == intentID {
				seq, _ := strconv.ParseUint(e[0], 10, 64)
				return seq
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the consumer did not receive %s for %s; it had %v", typ, intentID, p.events())
	return 0
}

// TestConsumerProcess is the child's body (skipped in a normal run).
func TestConsumerProcess(t *testing.T) {
	if os.Getenv("INTENTKIT_CONSUMER_PROCESS") == "" {
		t.Skip("runs only as the child of TestApprovedDepositReachesTheConsumerExactlyOnce")
	}
	c, err := intentkit.Dial(os.Getenv("INTENTKIT_CONSUMER_ADDR"), intentkit.WithInsecure(), intentkit.WithToken(sandboxToken))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Consume(context.Background(), os.Getenv("INTENTKIT_CONSUMER_NAME"), func(_ context.Context, e *intentkit.Event) error {
		_, err := fmt.Printf("EVENT %d %s %s\n", e.GetSeq(), e.GetTypeName(), e.GetIntentId())
		return err
	})
	t.Fatal(err)
}

func TestApprovedDepositReachesTheConsumerExactlyOnce(t *testing.T) {
	c := dial(t, shared)
	ctx := context.Background()
	consumer := unique("ledger")

	first := startConsumer(t, shared, consumer)
	it, err := c.CreateDeposit(ctx, deposit(unique("dep"), 150_000))
	if err != nil {
		t.Fatal(err)
	}
	if it.GetStatus() != v1.IntentStatus_INTENT_STATUS_PENDING || it.GetHandoff().GetHostedPage().GetUrl() == "" {
		t.Fatalf("created: %v", it)
	}
	approve(t, shared, it)
	waitStatus(t, c, it.GetId(), v1.IntentStatus_INTENT_STATUS_APPROVED)
	approvedSeq := first.waitFor(t, "intent.approved", it.GetId())

	// Kill the consumer only once its ack of intent.approved reached the server.
	deadline := time.Now().Add(10 * time.Second)
	for {
		page, err := c.ListEvents(ctx, &v1.ListEventsRequest{Consumer: consumer, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if page.GetAckedSeq() >= approvedSeq {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acked %d, want >= %d", page.GetAckedSeq(), approvedSeq)
		}
		time.Sleep(20 * time.Millisecond)
	}
	first.kill()
	seen := map[string]int{}
	for _, e := range first.events() {
		seen[e[0]]++
		if e[1] == "intent.approved" && e[2] == it.GetId() && seen[e[0]] > 1 {
			t.Fatalf("intent.approved handled twice: %v", first.events())
		}
	}

	// A new consumer process under the same name: only what came after the ack.
	second := startConsumer(t, shared, consumer)
	next, err := c.CreateDeposit(ctx, deposit(unique("dep"), 99_00))
	if err != nil {
		t.Fatal(err)
	}
	approve(t, shared, next)
	second.waitFor(t, "intent.approved", next.GetId())
	for _, e := range second.events() {
		seq, _ := strconv.ParseUint(e[0], 10, 64)
		if seq <= approvedSeq {
			t.Fatalf("the restarted consumer received seq %d (%s %s) at or before its ack %d", seq, e[1], e[2], approvedSeq)
		}
		if e[2] == it.GetId() {
			t.Fatalf("the restarted consumer received the first deposit again: %v", e)
		}
	}
	approvals := 0
	for _, e := range append(first.events(), second.events()...) {
		if e[1] == "intent.approved" && e[2] == it.GetId() {
			approvals++
		}
	}
	if approvals != 1 {
		t.Fatalf("intent.approved for %s handled %d times", it.GetId(), approvals)
	}
}

func TestConsumeResumesAcrossAServerRestart(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	s := startSandbox(t, dir, addr)
	c := dial(t, s, intentkit.WithTimeout(3*time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	got := map[string][]uint64{} // type/intent -> seqs
	retries := 0
	consumed := make(chan error, 1)
	go func() {
		consumed <- c.Consume(ctx, "restart", func(_ context.Context, e *intentkit.Event) error {
			mu.Lock()
			defer mu.Unlock()
			got[e.GetTypeName()+"/"+e.GetIntentId()] = append(got[e.GetTypeName()+"/"+e.GetIntentId()], e.GetSeq())
			return nil
		}, intentkit.WithBackoff(50*time.Millisecond, 500*time.Millisecond), intentkit.OnRetry(func(error, time.Duration) {
			mu.Lock()
			retries++
			mu.Unlock()
		}))
	}()
	has := func(key string) bool { mu.Lock(); defer mu.Unlock(); return len(got[key]) > 0 }
	waitHas := func(key string) {
		deadline := time.Now().Add(20 * time.Second)
		for !has(key) {
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("no %s; got %v", key, got)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	before, err := c.CreateDeposit(ctx, deposit(unique("before"), 10_00))
	if err != nil {
		t.Fatal(err)
	}
	approve(t, s, before)
	waitHas("intent.approved/" + before.GetId())

	// A crash, then the same server back on the same port and database. The first calls may
	// fail fast while the connection backs off: retried with the same key, as documented.
	s.kill()
	s = startSandbox(t, dir, addr)
	req := deposit(unique("after"), 20_00)
	var after *v1.Intent
	for attempt := 0; ; attempt++ {
		after, err = c.CreateDeposit(ctx, req)
		var e *intentkit.Error
		if err == nil || !errors.As(err, &e) || !e.Retryable || attempt == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	approve(t, s, after)
	waitHas("intent.approved/" + after.GetId())

	cancel()
	if err := <-consumed; !errors.Is(err, context.Canceled) {
		t.Fatalf("Consume ended with %v, want context.Canceled", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if retries == 0 {
		t.Fatal("the consumer never had to reconnect")
	}
	var seqs []uint64
	for k, v := range got {
		if len(v) != 1 {
			t.Fatalf("%s handled %d times: %v", k, len(v), v)
		}
		seqs = append(seqs, v[0])
	}
	// Nothing lost: the seqs handled are exactly the outbox's, with no gap.
	page, err := c.ListEvents(context.Background(), &v1.ListEventsRequest{Consumer: "audit", AfterSeq: new(uint64), Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.GetEvents()) != len(seqs) {
		t.Fatalf("handled %d events, the outbox holds %d", len(seqs), len(page.GetEvents()))
	}
}

// After an 8 s outage (SIGKILL, then the same server on the same port and database), the
// consumer's next event arrives within intentkit.ReconnectBound of the server's return (plus
// 1 s of slack): the channel's backoff alone, not Consume's stacked on it. Consume itself
// retries once for the outage and then waits for the channel (the old Consume failed fast
// and backed off again and again: 6 times or more in 8 s).
func TestConsumeRecoversWithinTheBoundAfterAnOutage(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	s := startSandbox(t, dir, addr)
	c := dial(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type arrival struct {
		seq    uint64
		intent string
		typ    string
		at     time.Time
	}
	arrivals := make(chan arrival, 1000)
	consumed := make(chan error, 1)
	var retries atomic.Int32
	go func() {
		consumed <- c.Consume(ctx, "recovery", func(_ context.Context, e *intentkit.Event) error {
			arrivals <- arrival{e.GetSeq(), e.GetIntentId(), e.GetTypeName(), time.Now()}
			return nil
		}, intentkit.OnRetry(func(error, time.Duration) { retries.Add(1) }))
	}()
	before, err := c.CreateDeposit(ctx, deposit(unique("before"), 10_00))
	if err != nil {
		t.Fatal(err)
	}
	// The last event before the outage: the deposit's intent.pending.
	var last uint64
	for deadline := time.After(15 * time.Second); last == 0; {
		select {
		case a := <-arrivals:
			if a.intent == before.GetId() && a.typ == "intent.pending" {
				last = a.seq
			}
		case <-deadline:
			t.Fatal("no intent.pending before the outage")
		}
	}

	s.kill()
	time.Sleep(8 * time.Second)
	s = startSandbox(t, dir, addr)
	back := time.Now()
	// Something new in the outbox at once, made through a client of its own.
	if _, err := dial(t, s).CreateDeposit(context.Background(), deposit(unique("after"), 20_00)); err != nil {
		t.Fatal(err)
	}
	bound := intentkit.ReconnectBound + time.Second
	for {
		select {
		case a := <-arrivals:
			if a.seq <= last {
				continue
			}
			took := a.at.Sub(back)
			t.Logf("recovery: the consumer's next event came %v after the server's return (8 s outage; bound %v + 1 s); Consume retried %d times",
				took.Round(time.Millisecond), intentkit.ReconnectBound, retries.Load())
			if took > bound {
				t.Fatalf("recovered in %v, over %v", took, bound)
			}
			if n := retries.Load(); n > 3 {
				t.Fatalf("Consume retried %d times over one outage: its backoff stacks on the channel's", n)
			}
			cancel()
			if err := <-consumed; !errors.Is(err, context.Canceled) {
				t.Fatalf("Consume: %v", err)
			}
			return
		case err := <-consumed:
			t.Fatalf("Consume ended: %v", err)
		case <-time.After(bound + 5*time.Second):
			t.Fatalf("no event %v after the server's return", bound+5*time.Second)
		}
	}
}

func TestVerificationReturnsTheVerifiedPayer(t *testing.T) {
	c := dial(t, shared)
	ctx := context.Background()
	it, err := c.CreateAccountVerification(ctx, &v1.CreateAccountVerificationRequest{
		IdempotencyKey: unique("ver"),
		Account:        "in-sandbox",
		Reference:      unique("kyc"),
		UserId:         "user-7",
		PurposeMessage: "Verify your account",
		GenerateQr:     true,
		GenerateUri:    true,
	})
	if err != nil {
		t.Fatal(err)
	}
	up := it.GetHandoff().GetUpi()
	if it.GetStatus() != v1.IntentStatus_INTENT_STATUS_PENDING || up.GetShortLink() == "" || up.GetQrCode() == "" {
		t.Fatalf("created: %v", it)
	}
	txn := it.GetProviderRef().GetDecentro().GetTxnId()
	control(t, shared.decentro+"/_control/transactions/"+txn+"/pay",
		`{"payerName":"Asha Rao","payerVpa":"asha@oksbi","payerAccountNumber":"XXXXXXXX1234","payerIfsc":"SBIN0000042"}`)
	got := waitStatus(t, c, it.GetId(), v1.IntentStatus_INTENT_STATUS_APPROVED)
	p := got.GetVerifiedPayer()
	if p.GetName() != "Asha Rao" || p.GetVpa() != "asha@oksbi" || p.GetMaskedAccountNumber() != "XXXXXXXX1234" || p.GetIfsc() != "SBIN0000042" {
		t.Fatalf("verified payer: %v", p)
	}
}

func TestSameKeyReplaysAndOtherParametersConflict(t *testing.T) {
	c := dial(t, shared)
	ctx := context.Background()
	key := unique("idem")
	first, err := c.CreateDeposit(ctx, deposit(key, 500_00))
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.CreateDeposit(ctx, deposit(key, 500_00))
	if err != nil {
		t.Fatal(err)
	}
	if again.GetId() != first.GetId() || again.GetProviderRef().GetPientegra().GetIntentId() != first.GetProviderRef().GetPientegra().GetIntentId() {
		t.Fatalf("a repeat made another intent: %s vs %s", again.GetId(), first.GetId())
	}
	_, err = c.CreateDeposit(ctx, deposit(key, 501_00))
	var e *intentkit.Error
	if !errors.As(err, &e) {
		t.Fatalf("want *intentkit.Error, got %T %v", err, err)
	}
	if e.Reason != "IDEMPOTENCY_CONFLICT" || e.Code != codes.AlreadyExists || e.Retryable {
		t.Fatalf("conflict: %+v", e)
	}
	// The typed error names the intent the key already made (ErrorInfo's intent_id).
	if e.IntentID != first.GetId() {
		t.Fatalf("conflict names intent %q, want %q (%v)", e.IntentID, first.GetId(), err)
	}
	if !errors.Is(err, intentkit.ErrIdempotencyConflict) || errors.Is(err, intentkit.ErrIntentNotFound) {
		t.Fatalf("errors.Is does not match by reason: %v", err)
	}
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("status.Code: %v", status.Code(err))
	}
}

// intentkit sends its own intent id as Decentro's reference_id (the caller's reference stays
// ours), so a caller cannot send a bad one; what a caller can get wrong, and what Decentro
// itself refuses, comes back under Decentro's own response key.
func TestDecentroRefusalsKeepDecentrosReason(t *testing.T) {
	c := dial(t, shared)
	verification := func(purpose string) *v1.CreateAccountVerificationRequest {
		return &v1.CreateAccountVerificationRequest{
			IdempotencyKey: unique("refused"), Account: "in-sandbox", Reference: unique("kyc"),
			UserId: "user-7", PurposeMessage: purpose,
		}
	}
	// Refused before sending, as Decentro would.
	_, err := c.CreateAccountVerification(context.Background(), verification("pay @ once"))
	var e *intentkit.Error
	if !errors.As(err, &e) || e.Reason != "error_unsanitized_values" || e.Code != codes.InvalidArgument || e.Retryable {
		t.Fatalf("unsanitized purpose: %v", err)
	}
	// Refused by Decentro over the wire.
	control(t, shared.decentro+"/_control/account", `{"disabled":true}`)
	t.Cleanup(func() { control(t, shared.decentro+"/_control/account", `{"disabled":false}`) })
	_, err = c.CreateAccountVerification(context.Background(), verification("Verify"))
	if !errors.As(err, &e) || e.Reason != "error_company/account_disabled" || e.Code != codes.FailedPrecondition {
		t.Fatalf("disabled account: %v", err)
	}
}

func TestNoTokenIsUnauthenticated(t *testing.T) {
	c, err := intentkit.Dial(shared.grpcAddr, intentkit.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.GetIntent(context.Background(), "anything")
	if !errors.Is(err, intentkit.ErrAuthMissing) || status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	bad := dial(t, shared, intentkit.WithToken("not-the-token"))
	_, err = bad.GetIntent(context.Background(), "anything")
	if !errors.Is(err, intentkit.ErrAuthInvalid) {
		t.Fatalf("wrong token: %v", err)
	}
	if strings.Contains(err.Error(), "not-the-token") {
		t.Fatalf("the error echoes the token: %v", err)
	}
}

func TestASlowProviderExceedsTheCallDeadline(t *testing.T) {
	// The simulator holds every Pientegra call for 3 s; the client allows 300 ms.
	control(t, shared.pientegra+"/_control/faults", `{"latency_ms":3000}`)
	t.Cleanup(func() { control(t, shared.pientegra+"/_control/faults", `{"latency_ms":0}`) })
	c := dial(t, shared, intentkit.WithTimeout(300*time.Millisecond))
	key := unique("slow")
	start := time.Now()
	_, err := c.CreateDeposit(context.Background(), deposit(key, 100_00))
	took := time.Since(start)
	var e *intentkit.Error
	if !errors.As(err, &e) || e.Code != codes.DeadlineExceeded || e.Reason != "DEADLINE_EXCEEDED" || !e.Retryable {
		t.Fatalf("want DEADLINE_EXCEEDED, got %v", err)
	}
	if !errors.Is(err, intentkit.ErrDeadlineExceeded) || took > 2*time.Second {
		t.Fatalf("errors.Is %v, took %v", errors.Is(err, intentkit.ErrDeadlineExceeded), took)
	}
	// A caller's own shorter deadline wins over the client's default.
	slow := dial(t, shared)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := slow.CreateDeposit(ctx, deposit(unique("slow"), 100_00)); status.Code(err) != codes.DeadlineExceeded || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("caller deadline: %v", err)
	}
	// Retrying with the same key once the provider is back gives the one intent.
	control(t, shared.pientegra+"/_control/faults", `{"latency_ms":0}`)
	it, err := dial(t, shared).CreateDeposit(context.Background(), deposit(key, 100_00))
	if err != nil {
		t.Fatal(err)
	}
	if it.GetIdempotencyKey() != key {
		t.Fatalf("retry: %v", it)
	}
}

// mainTB lets TestMain use startSandbox.
type mainTB struct{ testing.TB }

func (mainTB) Helper()                           {}
func (mainTB) Cleanup(func())                    {}
func (mainTB) Fatal(args ...any)                 { panic(fmt.Sprint(args...)) }
func (mainTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
