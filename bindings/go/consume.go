package intentkit

// Consume: the event stream as a loop that hands each event to the caller's function once, acks
// it, and survives server restarts. Invariants: events reach the handler in seq order, never one
// at or before the last handled; an ack never names an event the handler has not accepted; and
// a lost connection is waited out by the gRPC channel alone (WaitForReady), so Consume adds no
// backoff of its own on top of the channel's (the bound is ReconnectBound).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	v1 "github.com/intentkit/intentkit/bindings/go/gen/intentkit/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// Event is one outbox event (intent.approved, intent.rejected, ...), as the server sends it.
// Seq orders events and is what Consume acks; EventId (GetEventId) and BusinessKey
// (GetBusinessKey, "<type>:<intent id>") are unique.
type Event = v1.Event

// HandlerError is what Consume returns when the handler fails: the event was not acknowledged,
// so the next Consume for the same consumer delivers it again.
type HandlerError struct {
	// Seq is the event the handler failed on.
	Seq uint64
	// Err is what the handler returned.
	Err error
}

// Error says which event failed, and why.
func (e *HandlerError) Error() string {
	return fmt.Sprintf("intentkit: handler failed on event %d: %v", e.Seq, e.Err)
}

// Unwrap returns the handler's error, for errors.Is and errors.As.
func (e *HandlerError) Unwrap() error { return e.Err }

// ConsumeOption configures Consume.
type ConsumeOption func(*consumeOptions)

type consumeOptions struct {
	minBackoff, maxBackoff time.Duration
	onRetry                func(err error, wait time.Duration)
	startAfter             *uint64
	ackEvery               int
	ackDelay               time.Duration
}

// WithBackoff bounds the wait before reopening a stream that the server refused or ended at
// once (a server shutting down, say): 100 ms doubling to 5 s without it. A connection that is
// down is not retried by this backoff but waited for (see ReconnectBound).
func WithBackoff(min, max time.Duration) ConsumeOption {
	return func(o *consumeOptions) { o.minBackoff, o.maxBackoff = min, max }
}

// OnRetry is called with each transient failure before Consume waits and reconnects (to log
// it, or count it).
func OnRetry(f func(err error, wait time.Duration)) ConsumeOption {
	return func(o *consumeOptions) { o.onRetry = f }
}

// StartAfter streams from after seq instead of after the consumer's acknowledged position: to
// replay from an earlier point (an ack never moves the position back, so replayed events do not
// undo later acks), or to skip ahead. seq 0 is the outbox's beginning.
func StartAfter(seq uint64) ConsumeOption {
	return func(o *consumeOptions) { o.startAfter = &seq }
}

// WithAckBatch acknowledges after every n handled events, or maxDelay after the oldest
// unacknowledged one, whichever comes first, instead of after each: fewer calls on a busy
// stream. Whatever is handled is acknowledged before Consume returns, if the server can be
// reached; after a crash up to n events may come again (be idempotent on Event.BusinessKey).
// n of 1 or less is the default, an ack per event.
func WithAckBatch(n int, maxDelay time.Duration) ConsumeOption {
	return func(o *consumeOptions) { o.ackEvery, o.ackDelay = n, maxDelay }
}

// consumeState is what one Consume knows across its streams.
type consumeState struct {
	consumer string
	handled  uint64 // the last seq handle accepted, once started is true
	started  bool
	acked    uint64 // the highest seq this Consume acknowledged
	pending  int    // events handled since the last ack
}

// Consume delivers consumer's events to handle, in seq order, each once, until ctx ends or
// something other than a transient failure happens.
//
// It streams from the consumer's acknowledged position (or StartAfter's) and acknowledges each
// event after handle returns nil (or in batches, WithAckBatch), so a process that dies and
// calls Consume again receives nothing it had acknowledged and loses nothing it had not (an
// event whose ack did not reach the server may come again after a crash: make handle
// idempotent on Event.BusinessKey, or Event.Seq).
//
// A dropped connection or a server restart does not end Consume: it waits for the connection
// to come back (the next event arrives within ReconnectBound of the server's return) and
// resumes after the last event handled. Authentication or argument errors end Consume with an
// *Error. If handle fails, Consume returns a *HandlerError and that event stays
// unacknowledged. When ctx ends Consume returns ctx's error, having acknowledged what was
// handled.
//
// One Consume per consumer name at a time: two would each receive every event.
func (c *Client) Consume(ctx context.Context, consumer string, handle func(context.Context, *Event) error, opts ...ConsumeOption) error {
	o := consumeOptions{minBackoff: 100 * time.Millisecond, maxBackoff: 5 * time.Second, ackEvery: 1}
	for _, opt := range opts {
		opt(&o)
	}
	o.ackEvery = max(o.ackEvery, 1)
	o.minBackoff = max(o.minBackoff, time.Millisecond)
	o.maxBackoff = max(o.maxBackoff, o.minBackoff)
	st := &consumeState{consumer: consumer}
	if o.startAfter != nil {
		st.handled, st.started = *o.startAfter, true
	}
	defer c.flushAcks(ctx, st)
	wait := o.minBackoff
	var downSince time.Time
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		began := time.Now()
		progressed, err := c.stream(ctx, st, handle, o, &downSince)
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
		if downSince.IsZero() {
			downSince = time.Now()
		}
		// A stream that lived (events came, or it stayed open a while) was cut by the server
		// or the network: reopen it at once, and the channel waits for the connection. One
		// that failed straight away was refused: back off, so a server that refuses does not
		// get a loop of calls.
		lived := progressed || time.Since(began) > o.maxBackoff
		if lived {
			wait = o.minBackoff
		}
		// Full jitter: many consumers cut off by one restart do not come back in step.
		sleep := time.Duration(rand.Int64N(int64(wait)) + 1)
		c.log.Warn("intentkit: event stream interrupted; reconnecting",
			"consumer", consumer, "after_seq", st.handled, "error", err, "wait", sleep)
		if o.onRetry != nil {
			o.onRetry(err, sleep)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(sleep):
		}
		if !lived {
			wait = min(wait*2, o.maxBackoff)
		}
	}
}

// received is one Recv's result, passed from the reading goroutine.
type received struct {
	ev  *Event
	err error
}

// stream runs one StreamEvents call to its end. progressed says whether any event came.
func (c *Client) stream(ctx context.Context, st *consumeState, handle func(context.Context, *Event) error, o consumeOptions, downSince *time.Time) (progressed bool, err error) {
	req := &v1.StreamEventsRequest{Consumer: st.consumer}
	if st.started {
		after := st.handled
		req.AfterSeq = &after
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// WaitForReady: while the connection is down the call waits for the channel to reconnect
	// (on its own backoff) instead of failing at once and making Consume back off as well.
	stream, err := c.rpc.StreamEvents(sctx, req, append(c.callOpts, grpc.WaitForReady(true))...)
	if err != nil {
		return false, fromRPC(err)
	}
	if !downSince.IsZero() {
		c.log.Info("intentkit: event stream resumed", "consumer", st.consumer, "after_seq", st.handled, "down", time.Since(*downSince))
		*downSince = time.Time{}
	}
	// An ack that failed with the last stream goes first, now that the channel is up.
	if err := c.ackHandled(ctx, st); err != nil {
		return false, err
	}
	events := make(chan received)
	go func() {
		for {
			ev, err := stream.Recv()
			select {
			case events <- received{ev, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var flush <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return progressed, ctx.Err()
		case <-flush:
			flush = nil
			if err := c.ackHandled(ctx, st); err != nil {
				return progressed, err
			}
		case r := <-events:
			if r.err != nil {
				if errors.Is(r.err, io.EOF) {
					// The server ended the stream without an error: reconnect.
					return progressed, &Error{Code: codes.Unavailable, Reason: "UNAVAILABLE", Message: "the event stream ended", Retryable: true}
				}
				return progressed, fromRPC(r.err)
			}
			progressed = true
			ev := r.ev
			if st.started && ev.GetSeq() <= st.handled {
				continue
			}
			if herr := handle(ctx, ev); herr != nil {
				return progressed, &HandlerError{Seq: ev.GetSeq(), Err: herr}
			}
			st.handled, st.started = ev.GetSeq(), true
			st.pending++
			if st.pending >= o.ackEvery {
				flush = nil
				if err := c.ackHandled(ctx, st); err != nil {
					return progressed, err
				}
			} else if flush == nil {
				flush = time.After(o.ackDelay)
			}
		}
	}
}

// ackHandled acknowledges the last handled event, if this Consume has not yet.
func (c *Client) ackHandled(ctx context.Context, st *consumeState) error {
	if st.pending == 0 || st.handled <= st.acked {
		st.pending = 0
		return nil
	}
	if _, err := c.AckEvents(ctx, st.consumer, st.handled); err != nil {
		return err
	}
	st.acked, st.pending = st.handled, 0
	return nil
}

// flushAcks acknowledges what was handled when Consume returns, even once ctx has ended (a
// handler that cancels Consume after its last event still has it acknowledged).
func (c *Client) flushAcks(ctx context.Context, st *consumeState) {
	if st.pending == 0 {
		return
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := c.ackHandled(fctx, st); err != nil {
		c.log.Warn("intentkit: could not acknowledge handled events; they will come again",
			"consumer", st.consumer, "seq", st.handled, "error", err)
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
