package intentkittest_test

// The client's options and Consume's, against the fake: no server process needed.

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	intentkit "github.com/intentkit/intentkit/bindings/go"
	"github.com/intentkit/intentkit/bindings/go/intentkittest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

func depositReq(key string) *intentkit.CreateDepositRequest {
	return &intentkit.CreateDepositRequest{IdempotencyKey: key, Account: intentkittest.PientegraAccount,
		AmountMinor: 150_000, Currency: "TRY", Reference: key, UserId: "user-42"}
}

func TestNewWrapsAConnectionTheCallerOwns(t *testing.T) {
	srv := intentkittest.NewServer(intentkittest.WithToken("t0k"))
	t.Cleanup(srv.Close)
	conn, err := grpc.NewClient("passthrough:///intentkittest", srv.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := intentkit.New(conn, intentkit.WithToken("t0k"), intentkit.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateDeposit(context.Background(), depositReq("k1")); err != nil {
		t.Fatal(err)
	}
	c.Close() // not the caller's connection
	other, _ := intentkit.New(conn)
	if _, err := other.GetIntent(context.Background(), "x"); !errors.Is(err, intentkit.ErrAuthMissing) {
		t.Fatalf("the connection was closed, or the token leaked across clients: %v", err)
	}
	if _, err := intentkit.New(conn, intentkit.WithTLS(nil), intentkit.WithRetryPolicy(intentkit.DefaultRetryPolicy)); err == nil ||
		!strings.Contains(err.Error(), "WithTLS") || !strings.Contains(err.Error(), "WithRetryPolicy") {
		t.Fatalf("New must refuse what shapes a connection: %v", err)
	}
}

func TestAFakeIsAnAPI(t *testing.T) {
	srv := intentkittest.NewServer()
	t.Cleanup(srv.Close)
	var api intentkit.API = srv.Client()
	if _, err := api.GetIntent(context.Background(), "nope"); !errors.Is(err, intentkit.ErrIntentNotFound) {
		t.Fatal(err)
	}
}

// statsRecorder counts the calls a stats handler saw begin.
type statsRecorder struct {
	mu    sync.Mutex
	begun int
}

func (s *statsRecorder) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (s *statsRecorder) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (s *statsRecorder) HandleConn(context.Context, stats.ConnStats) {}
func (s *statsRecorder) HandleRPC(_ context.Context, st stats.RPCStats) {
	if _, ok := st.(*stats.Begin); ok {
		s.mu.Lock()
		s.begun++
		s.mu.Unlock()
	}
}

func TestInterceptorsAndStatsHandlersSeeTheCalls(t *testing.T) {
	srv := intentkittest.NewServer()
	t.Cleanup(srv.Close)
	var mu sync.Mutex
	var seen []string
	rec := func(m string) { mu.Lock(); seen = append(seen, m); mu.Unlock() }
	sh := &statsRecorder{}
	c, err := srv.Dial(
		intentkit.WithUnaryInterceptors(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			rec("unary " + method)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		intentkit.WithStreamInterceptors(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			rec("stream " + method)
			return streamer(ctx, desc, cc, method, opts...)
		}),
		intentkit.WithStatsHandler(sh),
		intentkit.WithKeepalive(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	it, err := c.CreateDeposit(context.Background(), depositReq("k1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	_ = c.Consume(ctx, "ledger", func(context.Context, *intentkit.Event) error { stop(); return nil })
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"unary /intentkit.v1.IntentService/CreateDeposit", "stream /intentkit.v1.IntentService/StreamEvents", "unary /intentkit.v1.IntentService/AckEvents"} {
		if !slices.Contains(seen, want) {
			t.Errorf("no %q in %v", want, seen)
		}
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.begun < 3 || it.GetId() == "" {
		t.Errorf("the stats handler saw %d calls", sh.begun)
	}
}

func TestTheRetryPolicyIsTheCallersChoice(t *testing.T) {
	srv := intentkittest.NewServer()
	t.Cleanup(srv.Close)
	down := status.Error(codes.Unavailable, "connection refused")
	srv.FailNext("GetIntent", down)
	srv.FailNext("GetIntent", down)
	if _, err := srv.Client().GetIntent(context.Background(), "x"); !errors.Is(err, intentkit.ErrIntentNotFound) || srv.Calls("GetIntent") != 3 {
		t.Fatalf("the default policy retries UNAVAILABLE: %v after %d calls", err, srv.Calls("GetIntent"))
	}
	none, err := srv.Dial(intentkit.WithRetryPolicy(intentkit.RetryPolicy{MaxAttempts: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer none.Close()
	srv.FailNext("GetIntent", down)
	if _, err := none.GetIntent(context.Background(), "x"); !errors.Is(err, intentkit.ErrTransportUnavailable) || srv.Calls("GetIntent") != 4 {
		t.Fatalf("MaxAttempts 1 retries nothing: %v after %d calls", err, srv.Calls("GetIntent"))
	}
	two, _ := srv.Dial(intentkit.WithRetryPolicy(intentkit.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond, BackoffMultiplier: 1}))
	defer two.Close()
	for range 3 {
		srv.FailNext("GetIntent", down)
	}
	if _, err := two.GetIntent(context.Background(), "x"); !errors.Is(err, intentkit.ErrTransportUnavailable) || srv.Calls("GetIntent") != 6 {
		t.Fatalf("MaxAttempts 2: %v after %d calls", err, srv.Calls("GetIntent"))
	}
}

func TestAConflictNamesTheIntentTheKeyAlreadyMade(t *testing.T) {
	srv := intentkittest.NewServer()
	t.Cleanup(srv.Close)
	c := srv.Client()
	first, err := c.CreateDeposit(context.Background(), depositReq("k1"))
	if err != nil {
		t.Fatal(err)
	}
	other := depositReq("k1")
	other.AmountMinor++
	_, err = c.CreateDeposit(context.Background(), other)
	var e *intentkit.Error
	if !errors.As(err, &e) || !errors.Is(err, intentkit.ErrIdempotencyConflict) || e.IntentID != first.GetId() {
		t.Fatalf("conflict: %v (IntentID %q, want %q)", err, e.IntentID, first.GetId())
	}
}

// consumeUntil runs Consume until the handler has seen n events, and returns their seqs.
func consumeUntil(t *testing.T, c intentkit.API, consumer string, n int, opts ...intentkit.ConsumeOption) []uint64 {
	t.Helper()
	ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	var seqs []uint64
	err := c.Consume(ctx, consumer, func(_ context.Context, e *intentkit.Event) error {
		seqs = append(seqs, e.GetSeq())
		if len(seqs) == n {
			stop()
		}
		return nil
	}, opts...)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Consume: %v after %v", err, seqs)
	}
	return seqs
}

func TestStartAfterReplaysFromTheSeqGiven(t *testing.T) {
	srv := intentkittest.NewServer()
	t.Cleanup(srv.Close)
	c := srv.Client()
	for _, k := range []string{"a", "b"} {
		if _, err := c.CreateDeposit(context.Background(), depositReq(k)); err != nil {
			t.Fatal(err)
		}
	}
	if got := consumeUntil(t, c, "ledger", 4); !slices.Equal(got, []uint64{1, 2, 3, 4}) || srv.Acked("ledger") != 4 {
		t.Fatalf("first pass %v, acked %d", got, srv.Acked("ledger"))
	}
	if got := consumeUntil(t, c, "ledger", 2, intentkit.StartAfter(2)); !slices.Equal(got, []uint64{3, 4}) || srv.Acked("ledger") != 4 {
		t.Fatalf("replay after 2: %v, acked %d", got, srv.Acked("ledger"))
	}
}

func TestAckBatchAcksEveryNAndWhatIsLeftOnReturn(t *testing.T) {
	srv := intentkittest.NewServer()
	t.Cleanup(srv.Close)
	c := srv.Client()
	for _, k := range []string{"a", "b"} { // events 1..4
		if _, err := c.CreateDeposit(context.Background(), depositReq(k)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	acks := []uint64{}
	err := c.Consume(ctx, "ledger", func(_ context.Context, e *intentkit.Event) error {
		acks = append(acks, srv.Acked("ledger")) // the position when each event arrives
		if e.GetSeq() == 4 {
			stop()
		}
		return nil
	}, intentkit.WithAckBatch(3, time.Hour))
	if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if !slices.Equal(acks, []uint64{0, 0, 0, 3}) || srv.Acked("ledger") != 4 || srv.Calls("AckEvents") != 2 {
		t.Fatalf("positions %v, acked %d in %d calls", acks, srv.Acked("ledger"), srv.Calls("AckEvents"))
	}
	// The delay acks a batch that does not fill.
	ctx, stop = context.WithCancel(context.Background())
	defer stop()
	go func() {
		_ = c.Consume(ctx, "ledger", func(context.Context, *intentkit.Event) error { return nil }, intentkit.WithAckBatch(100, 20*time.Millisecond))
	}()
	if _, err := c.CreateDeposit(context.Background(), depositReq("c")); err != nil { // events 5, 6
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); srv.Acked("ledger") != 6; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("acked %d, want 6", srv.Acked("ledger"))
		}
	}
}

func TestAFailedHandlerLeavesItsEventUnacked(t *testing.T) {
	srv := intentkittest.NewServer()
	t.Cleanup(srv.Close)
	c := srv.Client()
	if _, err := c.CreateDeposit(context.Background(), depositReq("a")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("ledger down")
	err := c.Consume(context.Background(), "ledger", func(_ context.Context, e *intentkit.Event) error {
		if e.GetSeq() == 2 {
			return boom
		}
		return nil
	}, intentkit.WithAckBatch(10, time.Hour))
	var herr *intentkit.HandlerError
	if !errors.As(err, &herr) || herr.Seq != 2 || !errors.Is(err, boom) || srv.Acked("ledger") != 1 {
		t.Fatalf("%v; acked %d, want 1 (the event before the failure, batch flushed)", err, srv.Acked("ledger"))
	}
}

func TestTheLoggerTellsOfAReconnect(t *testing.T) {
	srv := intentkittest.NewServer()
	t.Cleanup(srv.Close)
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) }), nil))
	c, err := srv.Dial(intentkit.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateDeposit(context.Background(), depositReq("a")); err != nil {
		t.Fatal(err)
	}
	srv.FailNext("StreamEvents", status.Error(codes.Unavailable, "the server went away"))
	consumeUntil(t, c, "ledger", 2, intentkit.WithBackoff(time.Millisecond, time.Millisecond))
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"level=WARN msg=\"intentkit: event stream interrupted; reconnecting\" consumer=ledger", "level=INFO msg=\"intentkit: event stream resumed\" consumer=ledger"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("no %q in:\n%s", want, buf.String())
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
