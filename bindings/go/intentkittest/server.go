// Package intentkittest is a fake intentkitd for the unit tests of code that uses package
// intentkit: an in-process gRPC server (over bufconn, no port, no process) that keeps intents
// and the event outbox in memory and lets a test play the payer and the provider.
//
//	srv := intentkittest.NewServer()
//	defer srv.Close()
//	client := srv.Client()                   // an *intentkit.Client, which is an intentkit.API
//	intent, _ := client.CreateDeposit(ctx, req)
//	srv.Approve(intent.GetId())              // as if the payer paid and Pientegra approved
//	// client.Consume now delivers intent.created, intent.pending, intent.approved
//
// It follows intentkitd's contract where a caller can see it: idempotent creates (the same key
// and request give the same intent; the same key with another request fails with
// IDEMPOTENCY_CONFLICT naming the intent), the statuses and their transitions, events with
// seqs, business keys and acks per consumer, and errors with the same codes and reasons
// (INTENT_NOT_FOUND, UNKNOWN_ACCOUNT, INVALID_TRANSITION, ...). It does not call providers or
// verify webhook signatures, and it validates requests only roughly. For anything else, make a
// call fail with FailNext.
package intentkittest

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"

	intentkit "github.com/intentkit/intentkit/bindings/go"
	v1 "github.com/intentkit/intentkit/bindings/go/gen/intentkit/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
)

// Accounts the fake knows without WithAccount: the sandbox's, so code written against
// `intentkitd --sandbox` runs unchanged.
const (
	// PientegraAccount is the deposit account, as in `intentkitd --sandbox`.
	PientegraAccount = "tr-sandbox"
	// DecentroAccount is the verification account, as in `intentkitd --sandbox`.
	DecentroAccount = "in-sandbox"
)

// Server is one fake intentkitd. Its methods are safe for concurrent use.
type Server struct {
	v1.UnimplementedIntentServiceServer

	lis    *bufconn.Listener
	grpc   *grpc.Server
	conn   *grpc.ClientConn
	client *intentkit.Client

	mu       sync.Mutex
	token    string
	accounts map[string]v1.Provider
	intents  map[string]*v1.Intent
	order    []string           // intent ids, oldest first
	keys     map[string]keyed   // idempotency key -> the create it named
	events   []*v1.Event        // the outbox; events[i].Seq == i+1
	acks     map[string]uint64  // consumer -> acknowledged seq
	failures map[string][]error // method -> errors to return next, in order
	changed  chan struct{}      // closed (and replaced) when an event is added
	calls    map[string]int     // method -> calls received
	payers   map[string]*v1.VerifiedPayer
}

type keyed struct {
	id  string
	req proto.Message
}

// Option configures NewServer.
type Option func(*Server)

// WithToken makes the fake require `authorization: Bearer <token>` like intentkitd
// (UNAUTHENTICATED with AUTH_MISSING or AUTH_INVALID otherwise). Client() sends it.
func WithToken(token string) Option { return func(s *Server) { s.token = token } }

// WithAccount adds a configured account for provider (PROVIDER_PIENTEGRA for deposits,
// PROVIDER_DECENTRO for verifications), beside the sandbox's two.
func WithAccount(name string, provider v1.Provider) Option {
	return func(s *Server) { s.accounts[name] = provider }
}

// NewServer starts a fake. Close it when done (t.Cleanup(srv.Close)).
func NewServer(opts ...Option) *Server {
	s := &Server{
		lis:      bufconn.Listen(1 << 20),
		accounts: map[string]v1.Provider{PientegraAccount: v1.Provider_PROVIDER_PIENTEGRA, DecentroAccount: v1.Provider_PROVIDER_DECENTRO},
		intents:  map[string]*v1.Intent{},
		keys:     map[string]keyed{},
		acks:     map[string]uint64{},
		failures: map[string][]error{},
		changed:  make(chan struct{}),
		calls:    map[string]int{},
		payers:   map[string]*v1.VerifiedPayer{},
	}
	for _, o := range opts {
		o(s)
	}
	s.grpc = grpc.NewServer(grpc.ChainUnaryInterceptor(s.unaryGate), grpc.ChainStreamInterceptor(s.streamGate))
	v1.RegisterIntentServiceServer(s.grpc, s)
	go func() { _ = s.grpc.Serve(s.lis) }()
	conn, err := grpc.NewClient("passthrough:///intentkittest", s.DialOptions()...)
	if err != nil {
		panic("intentkittest: " + err.Error()) // only a malformed target fails here
	}
	s.conn = conn
	var copts []intentkit.Option
	if s.token != "" {
		copts = append(copts, intentkit.WithToken(s.token), intentkit.WithInsecure())
	}
	s.client, err = intentkit.New(conn, copts...)
	if err != nil {
		panic("intentkittest: " + err.Error())
	}
	return s
}

// Client is a Client on the fake (made with intentkit.New), shared by every caller and closed
// by Close.
func (s *Server) Client() *intentkit.Client { return s.client }

// DialOptions connect a grpc.NewClient of your own to the fake (with target
// "passthrough:///intentkittest"), with intentkit.DefaultRetryPolicy's service config.
func (s *Server) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(intentkit.DefaultRetryPolicy.ServiceConfig()),
	}
}

// Dial makes a Client of its own on the fake with intentkit.Dial, so options that only Dial
// takes (interceptors, stats handlers, a retry policy) can be tested. The caller closes it.
func (s *Server) Dial(opts ...intentkit.Option) (*intentkit.Client, error) {
	base := []intentkit.Option{intentkit.WithInsecure(), intentkit.WithDialOptions(grpc.WithContextDialer(
		func(ctx context.Context, _ string) (net.Conn, error) { return s.lis.DialContext(ctx) }))}
	if s.token != "" {
		base = append(base, intentkit.WithToken(s.token))
	}
	return intentkit.Dial("passthrough:///intentkittest", append(base, opts...)...)
}

// Close stops the fake; calls in flight fail, and Consume on its Client ends.
func (s *Server) Close() {
	_ = s.conn.Close()
	s.grpc.Stop()
}

// ErrorStatus is an error as intentkitd sends it: code, and an ErrorInfo in the intentkit
// domain with reason, retryable and (when not empty) intent_id. intentkit turns it into an
// *intentkit.Error; give it to FailNext to test how your code handles one.
func ErrorStatus(code codes.Code, reason string, retryable bool, intentID string) error {
	return errorStatus(code, reason, reason+" (intentkittest)", retryable, intentID)
}

func errorStatus(code codes.Code, reason, msg string, retryable bool, intentID string) error {
	md := map[string]string{"retryable": strconv.FormatBool(retryable)}
	if intentID != "" {
		md["intent_id"] = intentID
	}
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "intentkit", Metadata: md})
	if err != nil {
		return status.Error(code, reason) // an ErrorInfo always marshals
	}
	return st.Err()
}

// FailNext makes the next call of method (its name in the service: "CreateDeposit",
// "StreamEvents", ...) fail with err, before it does anything; several calls queue several
// failures. err is typically from ErrorStatus, or status.Error(codes.Unavailable, ...) for a
// transport failure (which intentkit's retry policy retries).
func (s *Server) FailNext(method string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[method] = append(s.failures[method], err)
}

// Calls says how many calls of method the fake received, failed ones and retries included.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

func (s *Server) gate(ctx context.Context, fullMethod string) error {
	method := fullMethod[strings.LastIndex(fullMethod, "/")+1:]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[method]++
	if s.token != "" {
		md, _ := metadata.FromIncomingContext(ctx)
		auth := md.Get("authorization")
		switch {
		case len(auth) == 0:
			return ErrorStatus(codes.Unauthenticated, "AUTH_MISSING", false, "")
		case auth[0] != "Bearer "+s.token:
			return ErrorStatus(codes.Unauthenticated, "AUTH_INVALID", false, "")
		}
	}
	if q := s.failures[method]; len(q) > 0 {
		s.failures[method] = q[1:]
		return q[0]
	}
	return nil
}

func (s *Server) unaryGate(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.gate(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) streamGate(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.gate(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}
