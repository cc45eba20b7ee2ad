// Package intentkit is the Go client of intentkitd, intentkit's gRPC server: hosted deposits
// (Pientegra) and bank-account verifications (Decentro UPI penny pull), their outcomes as an
// exactly-once event stream, and typed errors.
//
// Dial once per process and share the Client; it is safe for concurrent use. Every call gets
// the Client's default deadline unless the context already has an earlier one. Calls that are
// safe to repeat (reads, acks, and creates, which are idempotent on their key) are retried on
// UNAVAILABLE by gRPC itself, following the service config in retryPolicy.
package intentkit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	v1 "github.com/intentkit/intentkit/bindings/go/gen/intentkit/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// DefaultTimeout is the per-call deadline when WithTimeout is not given.
const DefaultTimeout = 10 * time.Second

// retryPolicy is the gRPC service config: which methods gRPC retries by itself, and how.
// Creates are safe because the server answers a repeated idempotency key with the same intent;
// HandleWebhook because deliveries are deduplicated; AckEvents because an ack never moves a
// position back. CancelIntent and RefreshIntent are left to the caller (a repeat of either
// is a second command, not a replay), and StreamEvents to Consume, which resumes from its ack.
const retryPolicy = `{
  "methodConfig": [{
    "name": [
      {"service": "intentkit.v1.IntentService", "method": "CreateDeposit"},
      {"service": "intentkit.v1.IntentService", "method": "CreateAccountVerification"},
      {"service": "intentkit.v1.IntentService", "method": "GetIntent"},
      {"service": "intentkit.v1.IntentService", "method": "ListIntents"},
      {"service": "intentkit.v1.IntentService", "method": "HandleWebhook"},
      {"service": "intentkit.v1.IntentService", "method": "ListEvents"},
      {"service": "intentkit.v1.IntentService", "method": "AckEvents"}
    ],
    "retryPolicy": {
      "maxAttempts": 4,
      "initialBackoff": "0.1s",
      "maxBackoff": "2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

type options struct {
	token    string
	tls      *tls.Config
	insecure bool
	timeout  time.Duration
	extra    []grpc.DialOption
}

// Option configures Dial.
type Option func(*options)

// WithToken sends `authorization: Bearer <token>` on every call. Over a connection without TLS
// gRPC refuses to send it unless WithInsecure was chosen too.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithTLS connects over TLS with cfg (nil: the system roots and the target's host name).
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		o.tls = cfg
	}
}

// WithInsecure connects without TLS: for loopback, a sidecar, or the sandbox only.
func WithInsecure() Option { return func(o *options) { o.insecure = true } }

// WithTimeout sets the default per-call deadline (DefaultTimeout without it). A context with
// an earlier deadline keeps its own. Zero or less means none.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithDialOptions passes further options to grpc.NewClient (interceptors, keepalive, ...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.extra = append(o.extra, opts...) }
}

// Client calls one intentkitd. Create it with Dial; Close it when done.
type Client struct {
	conn    *grpc.ClientConn
	rpc     v1.IntentServiceClient
	timeout time.Duration
}

// Dial returns a Client for target ("host:port", or any gRPC target such as "dns:///...").
// It does not connect yet: the first call does, and a server that is down fails that call
// with UNAVAILABLE (after the retries the call allows).
func Dial(target string, opts ...Option) (*Client, error) {
	o := options{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if o.tls != nil && o.insecure {
		return nil, errors.New("intentkit: WithTLS and WithInsecure are exclusive")
	}
	if o.tls == nil && !o.insecure {
		return nil, errors.New("intentkit: choose WithTLS (production) or WithInsecure (loopback, sandbox)")
	}
	dial := []grpc.DialOption{
		grpc.WithDefaultServiceConfig(retryPolicy),
		// Reconnect within seconds of a server restart rather than gRPC's default of up to
		// two minutes: intentkitd is a nearby service, not a distant public endpoint.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second,
		}, MinConnectTimeout: 5 * time.Second}),
	}
	if o.insecure {
		dial = append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		dial = append(dial, grpc.WithTransportCredentials(credentials.NewTLS(o.tls)))
	}
	if o.token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearer{token: o.token, requireTLS: !o.insecure}))
	}
	dial = append(dial, o.extra...)
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, rpc: v1.NewIntentServiceClient(conn), timeout: o.timeout}, nil
}

// Close ends the connection; calls in flight fail with CANCELED.
func (c *Client) Close() error { return c.conn.Close() }

// Stub is the generated client on the same connection, for what this package does not wrap.
// Its errors are plain gRPC statuses; AsError turns one into an *Error.
func (c *Client) Stub() v1.IntentServiceClient { return c.rpc }

// AsError converts an error from Stub() calls into an *Error (nil stays nil).
func AsError(err error) error { return fromRPC(err) }

// bearer is the token as per-call credentials; it prints as redacted.
type bearer struct {
	token      string
	requireTLS bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}
func (b bearer) RequireTransportSecurity() bool { return b.requireTLS }
func (b bearer) String() string                 { return "bearer([redacted])" }
func (b bearer) GoString() string               { return "bearer([redacted])" }

// call applies the default deadline to one unary call.
func (c *Client) call(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout <= 0 {
		return ctx, func() {}
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= c.timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

func unary[Req, Resp any](c *Client, ctx context.Context, f func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	callCtx, cancel := c.call(ctx)
	defer cancel()
	resp, err := f(callCtx, req)
	if err != nil && ctx.Err() != nil {
		// The caller's own context ended: keep context.Canceled / DeadlineExceeded findable.
		return resp, fmt.Errorf("%w: %w", fromRPC(err), ctx.Err())
	}
	return resp, fromRPC(err)
}

// CreateDeposit creates a Pientegra hosted deposit (idempotent on IdempotencyKey: repeat it
// with the same key after any retryable error).
func (c *Client) CreateDeposit(ctx context.Context, req *v1.CreateDepositRequest) (*v1.Intent, error) {
	return unary(c, ctx, c.rpc.CreateDeposit, req)
}

// CreateAccountVerification creates a Decentro UPI penny-pull verification (idempotent on
// IdempotencyKey).
func (c *Client) CreateAccountVerification(ctx context.Context, req *v1.CreateAccountVerificationRequest) (*v1.Intent, error) {
	return unary(c, ctx, c.rpc.CreateAccountVerification, req)
}

// GetIntent reads one intent by intentkit's id.
func (c *Client) GetIntent(ctx context.Context, id string) (*v1.Intent, error) {
	return unary(c, ctx, c.rpc.GetIntent, &v1.GetIntentRequest{Id: id})
}

// ListIntents reads one page of intents, newest first.
func (c *Client) ListIntents(ctx context.Context, req *v1.ListIntentsRequest) (*v1.ListIntentsResponse, error) {
	return unary(c, ctx, c.rpc.ListIntents, req)
}

// CancelIntent cancels an intent before payment.
func (c *Client) CancelIntent(ctx context.Context, id, reason string) (*v1.Intent, error) {
	return unary(c, ctx, c.rpc.CancelIntent, &v1.CancelIntentRequest{Id: id, Reason: reason})
}

// RefreshIntent asks the provider once and applies what it says (for support tools).
func (c *Client) RefreshIntent(ctx context.Context, id string) (*v1.Intent, error) {
	return unary(c, ctx, c.rpc.RefreshIntent, &v1.RefreshIntentRequest{Id: id})
}

// HandleWebhook passes a provider delivery that your own HTTP server received; answer the
// provider with the response's HttpStatus and HttpBody.
func (c *Client) HandleWebhook(ctx context.Context, req *v1.HandleWebhookRequest) (*v1.HandleWebhookResponse, error) {
	return unary(c, ctx, c.rpc.HandleWebhook, req)
}

// ListEvents reads one page of the outbox for a consumer (Consume is the usual way).
func (c *Client) ListEvents(ctx context.Context, req *v1.ListEventsRequest) (*v1.ListEventsResponse, error) {
	return unary(c, ctx, c.rpc.ListEvents, req)
}

// AckEvents acknowledges every event up to and including seq for consumer.
func (c *Client) AckEvents(ctx context.Context, consumer string, seq uint64) (uint64, error) {
	resp, err := unary(c, ctx, c.rpc.AckEvents, &v1.AckEventsRequest{Consumer: consumer, Seq: seq})
	if err != nil {
		return 0, err
	}
	return resp.GetAckedSeq(), nil
}
