package intentkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	v1 "github.com/intentkit/intentkit/bindings/go/gen/intentkit/v1"
	"google.golang.org/grpc/codes"
)

// Event is one outbox event (intent.approved, intent.rejected, ...), as the server sends it.
type Event = v1.Event

// HandlerError is what Consume returns when the handler fails: the event was not acknowledged,
// so the next Consume for the same consumer delivers it again.
type HandlerError struct {
	Seq uint64
	Err error
}

func (e *HandlerError) Error() string {
	return fmt.Sprintf("intentkit: handler failed on event %d: %v", e.Seq, e.Err)
}
func (e *HandlerError) Unwrap() error { return e.Err }

// ConsumeOption configures Consume.
type ConsumeOption func(*consumeOptions)

type consumeOptions struct {
	minBackoff, maxBackoff time.Duration
	onRetry                func(err error, wait time.Duration)
}

// WithBackoff bounds the wait between reconnects (100 ms doubling to 5 s without it).
func WithBackoff(min, max time.Duration) ConsumeOption {
	return func(o *consumeOptions) { o.minBackoff, o.maxBackoff = min, max }
}

// OnRetry is called with each transient failure before Consume waits and reconnects (to log
// it, or count it).
func OnRetry(f func(err error, wait time.Duration)) ConsumeOption {
	return func(o *consumeOptions) { o.onRetry = f }
}

// Consume delivers consumer's events to handle, in seq order, each once, until ctx ends or
// something other than a transient failure happens.
//
// It streams from the consumer's acknowledged position and acknowledges each event after
// handle returns nil, so a process that dies and calls Consume again receives nothing it had
// acknowledged and loses nothing it had not (an event whose ack did not reach the server may
// come again after a crash: make handle idempotent on Event.Seq or Event.Id). A dropped
// connection or a server restart is retried with backoff and resumes after the last event
// handled; authentication or argument errors end Consume with an *Error. If handle fails,
// Consume returns a *HandlerError and that event stays unacknowledged.
//
// One Consume per consumer name at a time: two would each receive every event.
func (c *Client) Consume(ctx context.Context, consumer string, handle func(context.Context, *Event) error, opts ...ConsumeOption) error {
	o := consumeOptions{minBackoff: 100 * time.Millisecond, maxBackoff: 5 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	var (
		handled    uint64 // the last seq handle accepted, once started is true
		started    bool
		unacked    bool // handled is not known to be acknowledged yet
		wait       = o.minBackoff
		resetAfter bool
	)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := func() error {
			if unacked {
				if _, err := c.AckEvents(ctx, consumer, handled); err != nil {
					return err
				}
				unacked = false
			}
			req := &v1.StreamEventsRequest{Consumer: consumer}
			if started {
				after := handled
				req.AfterSeq = &after
			}
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := c.rpc.StreamEvents(sctx, req)
			if err != nil {
				return fromRPC(err)
			}
			for {
				ev, err := stream.Recv()
				if err != nil {
					if errors.Is(err, io.EOF) {
						// The server ended the stream without an error: reconnect.
						return &Error{Code: codes.Unavailable, Reason: "UNAVAILABLE", Message: "the event stream ended", Retryable: true}
					}
					return fromRPC(err)
				}
				resetAfter = true
				if started && ev.GetSeq() <= handled {
					continue
				}
				if herr := handle(ctx, ev); herr != nil {
					return &HandlerError{Seq: ev.GetSeq(), Err: herr}
				}
				handled, started, unacked = ev.GetSeq(), true, true
				if _, err := c.AckEvents(ctx, consumer, handled); err != nil {
					return err
				}
				unacked = false
			}
		}()
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		var herr *HandlerError
		if errors.As(err, &herr) {
			return err
		}
		var e *Error
		if !errors.As(err, &e) || !(e.Retryable || transport(e)) {
			return err
		}
		if resetAfter {
			wait, resetAfter = o.minBackoff, false
		}
		// Full jitter: many consumers cut off by one restart do not come back in step.
		sleep := time.Duration(rand.Int64N(int64(wait)) + 1)
		if o.onRetry != nil {
			o.onRetry(err, sleep)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(sleep):
		}
		wait = min(wait*2, o.maxBackoff)
	}
}

// transport says whether e is a failure of the connection rather than a refusal by the server
// (no ErrorInfo, so the reason is the code's name): a stream cut by a server that died may end
// with INTERNAL or UNKNOWN as well as UNAVAILABLE, and reconnecting is right for those; not for
// what says the consumer itself is wrong (credentials, arguments, a server without the method).
func transport(e *Error) bool {
	if e.Reason != codeName(e.Code) {
		return false
	}
	switch e.Code {
	case codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument, codes.NotFound, codes.Unimplemented:
		return false
	}
	return true
}
