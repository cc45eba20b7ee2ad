// Package intentkit is the Go client of intentkitd, intentkit's gRPC server: hosted deposits
// (Pientegra) and bank-account verifications (Decentro UPI penny pull), their outcomes as an
// exactly-once event stream, and typed errors.
//
// Dial once per process (or New, over a connection of your own) and share the Client; it is
// safe for concurrent use. Code that should be testable without a server takes an API, which a
// Client on package intentkittest's fake server implements. Every call gets
// the Client's default deadline unless the context already has an earlier one. Calls that are
// safe to repeat (reads, acks, and creates, which are idempotent on their key) are retried on
// UNAVAILABLE by gRPC itself, following a RetryPolicy.
package intentkit

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	v1 "github.com/intentkit/intentkit/bindings/go/gen/intentkit/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/stats"
)

// Version is this client's release (see CHANGELOG.md). It is sent in the gRPC user agent
// ("intentkit-go/<Version>"), so the server's logs say which client called.
const Version = "0.2.0"

// DefaultTimeout is the per-call deadline when WithTimeout is not given.
const DefaultTimeout = 10 * time.Second

// ReconnectBound is how soon after a server comes back a Client reconnects, and Consume gets
// its next event, however long the server was down: the channel retries a lost connection at
// most 2 s apart (2.4 s with gRPC's jitter), and Consume waits for that channel rather than
// adding a backoff of its own. An option of yours that replaces the connect parameters
// (WithDialOptions with grpc.WithConnectParams) replaces this bound too.
const ReconnectBound = 5 * time.Second

// reconnectMaxDelay caps the channel's backoff between connection attempts. With gRPC's
// jitter (20%) the wait after a server restart is at most 2.4 s, within ReconnectBound.
const reconnectMaxDelay = 2 * time.Second

// RetryPolicy is how gRPC itself retries the calls that are safe to repeat (creates, which are
// idempotent on their key; reads; HandleWebhook, deduplicated; AckEvents, which never moves a
// position back) when they fail with UNAVAILABLE. CancelIntent and RefreshIntent are never
// retried for you: a repeat of either is a second command, not a replay.
type RetryPolicy struct {
	// MaxAttempts counts the first attempt; 1 or less turns retries off. gRPC caps it at 5.
	MaxAttempts int
	// InitialBackoff is the wait before the first retry (gRPC randomizes every wait).
	InitialBackoff time.Duration
	// MaxBackoff caps the wait between attempts.
	MaxBackoff time.Duration
	// BackoffMultiplier grows the wait after each attempt.
	BackoffMultiplier float64
}

// DefaultRetryPolicy is the policy of a Client dialed without WithRetryPolicy.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 4, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second, BackoffMultiplier: 2}

// retried are the methods a RetryPolicy applies to (see RetryPolicy for why these).
var retried = []string{"CreateDeposit", "CreateAccountVerification", "GetIntent", "ListIntents", "HandleWebhook", "ListEvents", "AckEvents"}

// ServiceConfig is the policy as a gRPC service config, for grpc.WithDefaultServiceConfig
// when you build the connection yourself and pass it to New.
func (p RetryPolicy) ServiceConfig() string {
	if p.MaxAttempts <= 1 {
		return `{}`
	}
	type name struct {
		Service string `json:"service"`
		Method  string `json:"method"`
	}
	names := make([]name, len(retried))
	for i, m := range retried {
		names[i] = name{"intentkit.v1.IntentService", m}
	}
	secs := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s" }
	mult := p.BackoffMultiplier
	if mult <= 0 {
		mult = 1
	}
	cfg := map[string]any{"methodConfig": []any{map[string]any{
		"name": names,
		"retryPolicy": map[string]any{
			"maxAttempts":          p.MaxAttempts,
			"initialBackoff":       secs(max(p.InitialBackoff, time.Millisecond)),
			"maxBackoff":           secs(max(p.MaxBackoff, p.InitialBackoff, time.Millisecond)),
			"backoffMultiplier":    mult,
			"retryableStatusCodes": []string{"UNAVAILABLE"},
		},
	}}}
	b, _ := json.Marshal(cfg) // maps, strings and numbers: cannot fail
	return string(b)
}

type options struct {
	token    string
	tls      *tls.Config
	insecure bool
	timeout  time.Duration
	extra    []grpc.DialOption
	retry    RetryPolicy
	logger   *slog.Logger
	// dialOnly names the options given that shape a connection, which New cannot apply.
	dialOnly []string
}

// Option configures Dial or New.
type Option func(*options)

// WithToken sends `authorization: Bearer <token>` on every call. Over a connection without TLS
// gRPC refuses to send it unless WithInsecure was chosen too.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithTLS connects over TLS with cfg (nil: the system roots and the target's host name).
// Dial only.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		o.tls = cfg
		o.dialOnly = append(o.dialOnly, "WithTLS")
	}
}

// WithInsecure connects without TLS: for loopback, a sidecar, or the sandbox only. With New,
// it allows WithToken's token over a connection without TLS.
func WithInsecure() Option { return func(o *options) { o.insecure = true } }

// WithTimeout sets the default per-call deadline (DefaultTimeout without it). A context with
// an earlier deadline keeps its own. Zero or less means none. Consume's stream has none.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithDialOptions passes further options to grpc.NewClient, after the client's own (a later
// option wins). Dial only.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) {
		o.extra = append(o.extra, opts...)
		o.dialOnly = append(o.dialOnly, "WithDialOptions")
	}
}

// WithUnaryInterceptors runs these around every unary call, the first outermost (tracing,
// metrics, logging). They see the call before the client's retries. Dial only.
func WithUnaryInterceptors(i ...grpc.UnaryClientInterceptor) Option {
	return func(o *options) {
		o.extra = append(o.extra, grpc.WithChainUnaryInterceptor(i...))
		o.dialOnly = append(o.dialOnly, "WithUnaryInterceptors")
	}
}

// WithStreamInterceptors runs these around every stream (Consume's StreamEvents), the first
// outermost. Dial only.
func WithStreamInterceptors(i ...grpc.StreamClientInterceptor) Option {
	return func(o *options) {
		o.extra = append(o.extra, grpc.WithChainStreamInterceptor(i...))
		o.dialOnly = append(o.dialOnly, "WithStreamInterceptors")
	}
}

// WithStatsHandler installs a gRPC stats handler (OpenTelemetry's otelgrpc.NewClientHandler(),
// or your own): it sees every attempt, retries included, and the connection's events. Several
// may be given. Dial only.
func WithStatsHandler(h stats.Handler) Option {
	return func(o *options) {
		o.extra = append(o.extra, grpc.WithStatsHandler(h))
		o.dialOnly = append(o.dialOnly, "WithStatsHandler")
	}
}

// WithKeepalive pings the server on an idle connection, so a peer that vanished without
// closing (a dropped NAT entry, a dead host) is found. intentkitd accepts pings no more often
// than every 10 s (gRPC's own floor for Time). Without it gRPC sends none. Dial only.
func WithKeepalive(p keepalive.ClientParameters) Option {
	return func(o *options) {
		o.extra = append(o.extra, grpc.WithKeepaliveParams(p))
		o.dialOnly = append(o.dialOnly, "WithKeepalive")
	}
}

// WithRetryPolicy replaces DefaultRetryPolicy. RetryPolicy{MaxAttempts: 1} turns gRPC's
// retries off. Dial only (with New, give the connection p.ServiceConfig()).
func WithRetryPolicy(p RetryPolicy) Option {
	return func(o *options) {
		o.retry = p
		o.dialOnly = append(o.dialOnly, "WithRetryPolicy")
	}
}

// WithLogger logs what the client does on its own, with no call of yours to return an error
// to: Consume's reconnects (Warn when the stream breaks, Info when it resumes, with how long
// it was down) and acks it could not send. Nil, or no WithLogger, logs nothing.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Client calls one intentkitd: create it with Dial, or New over a connection of your own; Close
// it when done. It is safe for concurrent use. Code that should be testable without a server
// takes an API instead (package intentkittest serves a fake).
type Client struct {
	conn     *grpc.ClientConn
	owned    bool // Close closes conn (Dial made it)
	rpc      v1.IntentServiceClient
	timeout  time.Duration
	callOpts []grpc.CallOption
	log      *slog.Logger
}

// API is what a Client does, as an interface: take an API in your own code and a test can pass
// a Client on intentkittest's fake server, or a stand-in of its own.
type API interface {
	// CreateDeposit is Client.CreateDeposit.
	CreateDeposit(ctx context.Context, req *CreateDepositRequest) (*Intent, error)
	// CreateAccountVerification is Client.CreateAccountVerification.
	CreateAccountVerification(ctx context.Context, req *CreateAccountVerificationRequest) (*Intent, error)
	// GetIntent is Client.GetIntent.
	GetIntent(ctx context.Context, id string) (*Intent, error)
	// ListIntents is Client.ListIntents.
	ListIntents(ctx context.Context, req *ListIntentsRequest) (*ListIntentsResponse, error)
	// CancelIntent is Client.CancelIntent.
	CancelIntent(ctx context.Context, id, reason string) (*Intent, error)
	// RefreshIntent is Client.RefreshIntent.
	RefreshIntent(ctx context.Context, id string) (*Intent, error)
	// HandleWebhook is Client.HandleWebhook.
	HandleWebhook(ctx context.Context, req *HandleWebhookRequest) (*HandleWebhookResponse, error)
	// ListEvents is Client.ListEvents.
	ListEvents(ctx context.Context, req *ListEventsRequest) (*ListEventsResponse, error)
	// AckEvents is Client.AckEvents.
	AckEvents(ctx context.Context, consumer string, seq uint64) (uint64, error)
	// Consume is Client.Consume.
	Consume(ctx context.Context, consumer string, handle func(context.Context, *Event) error, opts ...ConsumeOption) error
}

var _ API = (*Client)(nil)

func collect(opts []Option) options {
	o := options{timeout: DefaultTimeout, retry: DefaultRetryPolicy}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Dial returns a Client for target ("host:port", or any gRPC target such as "dns:///...").
// It does not connect yet: the first call does, and a server that is down fails that call
// with UNAVAILABLE (after the retries the call allows).
func Dial(target string, opts ...Option) (*Client, error) {
	o := collect(opts)
	if o.tls != nil && o.insecure {
		return nil, errors.New("intentkit: WithTLS and WithInsecure are exclusive")
	}
	if o.tls == nil && !o.insecure {
		return nil, errors.New("intentkit: choose WithTLS (production) or WithInsecure (loopback, sandbox)")
	}
	dial := []grpc.DialOption{
		grpc.WithDefaultServiceConfig(o.retry.ServiceConfig()),
		grpc.WithUserAgent("intentkit-go/" + Version),
		// Reconnect within seconds of a server restart rather than gRPC's default of up to
		// two minutes: intentkitd is a nearby service, not a distant public endpoint.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMaxDelay,
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
	c := newClient(conn, o)
	c.owned = true
	return c, nil
}

// New returns a Client over conn, a connection you built (your own interceptors, resolver,
// TLS; a bufconn in tests). Close on it does not close conn. Of the options it takes
// WithToken (sent per call; over a connection without TLS only with WithInsecure too),
// WithInsecure, WithTimeout and WithLogger; the others shape a connection, so give them to
// grpc.NewClient yourself (and DefaultRetryPolicy.ServiceConfig() as its default service
// config, or gRPC retries nothing).
func New(conn *grpc.ClientConn, opts ...Option) (*Client, error) {
	if conn == nil {
		return nil, errors.New("intentkit: New needs a connection")
	}
	o := collect(opts)
	if len(o.dialOnly) > 0 {
		return nil, fmt.Errorf("intentkit: %s configure a connection: give them to grpc.NewClient, or use Dial", strings.Join(o.dialOnly, ", "))
	}
	c := newClient(conn, o)
	if o.token != "" {
		c.callOpts = append(c.callOpts, grpc.PerRPCCredentials(bearer{token: o.token, requireTLS: !o.insecure}))
	}
	return c, nil
}

func newClient(conn *grpc.ClientConn, o options) *Client {
	log := o.logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{conn: conn, rpc: v1.NewIntentServiceClient(conn), timeout: o.timeout, log: log}
}

// Close ends the connection Dial made; calls in flight fail with CANCELED. On a Client from
// New it does nothing: the connection is yours to close.
func (c *Client) Close() error {
	if !c.owned {
		return nil
	}
	return c.conn.Close()
}

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

// GetRequestMetadata is the credentials.PerRPCCredentials method.
func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is the credentials.PerRPCCredentials method.
func (b bearer) RequireTransportSecurity() bool { return b.requireTLS }

// String keeps the token out of logs.
func (b bearer) String() string { return "bearer([redacted])" }

// GoString keeps the token out of %#v.
func (b bearer) GoString() string { return "bearer([redacted])" }

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
	resp, err := f(callCtx, req, c.callOpts...)
	if err != nil && ctx.Err() != nil {
		// The caller's own context ended: keep context.Canceled / DeadlineExceeded findable.
		return resp, fmt.Errorf("%w: %w", fromRPC(err), ctx.Err())
	}
	return resp, fromRPC(err)
}

// CreateDeposit creates a Pientegra hosted deposit (idempotent on IdempotencyKey: repeat it
// with the same key after any retryable error).
func (c *Client) CreateDeposit(ctx context.Context, req *CreateDepositRequest) (*Intent, error) {
	return unary(c, ctx, c.rpc.CreateDeposit, req)
}

// CreateAccountVerification creates a Decentro UPI penny-pull verification (idempotent on
// IdempotencyKey).
func (c *Client) CreateAccountVerification(ctx context.Context, req *CreateAccountVerificationRequest) (*Intent, error) {
	return unary(c, ctx, c.rpc.CreateAccountVerification, req)
}

// GetIntent reads one intent by intentkit's id.
func (c *Client) GetIntent(ctx context.Context, id string) (*v1.Intent, error) {
	return unary(c, ctx, c.rpc.GetIntent, &v1.GetIntentRequest{Id: id})
}

// ListIntents reads one page of intents, newest first.
func (c *Client) ListIntents(ctx context.Context, req *ListIntentsRequest) (*ListIntentsResponse, error) {
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
func (c *Client) HandleWebhook(ctx context.Context, req *HandleWebhookRequest) (*HandleWebhookResponse, error) {
	return unary(c, ctx, c.rpc.HandleWebhook, req)
}

// ListEvents reads one page of the outbox for a consumer (Consume is the usual way).
func (c *Client) ListEvents(ctx context.Context, req *ListEventsRequest) (*ListEventsResponse, error) {
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
