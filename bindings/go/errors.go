package intentkit

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is every failure a Client returns for a call the server (or the transport) refused.
// Branch on Reason, the stable code listed in intentkit's docs/errors.md, never on Message.
//
//	var e *intentkit.Error
//	if errors.As(err, &e) && e.Retryable { /* retry with the same idempotency key */ }
//	if errors.Is(err, intentkit.ErrIdempotencyConflict) { /* a new key is needed */ }
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Reason is the server's ErrorInfo reason (e.g. IDEMPOTENCY_CONFLICT, or a provider's own
	// code such as error_invalid_reference_id). When the failure came from the transport and
	// carries no ErrorInfo (a deadline, a dropped connection), it is the status code's name
	// (DEADLINE_EXCEEDED, UNAVAILABLE, ...).
	Reason string
	// Message is for people and logs; it never holds a credential.
	Message string
	// Retryable says whether the same call, unchanged (same idempotency key), may succeed.
	Retryable bool
	// IntentID names the intent the failure is about, from the ErrorInfo's intent_id: for a
	// failed create, the intent it still recorded (retrying with the same key finishes that
	// intent rather than making another); for IDEMPOTENCY_CONFLICT, the intent the key already
	// made. Empty when the server named none.
	IntentID string
}

// Error is Reason, Code and Message, and the intent when one is named.
func (e *Error) Error() string {
	s := fmt.Sprintf("intentkit: %s (%s): %s", e.Reason, e.Code, e.Message)
	if e.IntentID != "" {
		s += " [intent " + e.IntentID + "]"
	}
	return s
}

// Is matches a sentinel by Reason, so errors.Is(err, ErrIntentNotFound) works on any Error
// with that reason whatever its message.
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) || t == nil {
		return false
	}
	return t.Reason != "" && t.Reason == e.Reason
}

// GRPCStatus lets status.Code(err) and status.FromError(err) see the original status.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// Sentinels for the reasons most callers branch on; compare with errors.Is.
var (
	ErrInvalidArgument      = &Error{Reason: "INVALID_ARGUMENT", Code: codes.InvalidArgument}
	ErrIdempotencyConflict  = &Error{Reason: "IDEMPOTENCY_CONFLICT", Code: codes.AlreadyExists}
	ErrIntentNotFound       = &Error{Reason: "INTENT_NOT_FOUND", Code: codes.NotFound}
	ErrInvalidTransition    = &Error{Reason: "INVALID_TRANSITION", Code: codes.FailedPrecondition}
	ErrUnknownAccount       = &Error{Reason: "UNKNOWN_ACCOUNT", Code: codes.NotFound}
	ErrProviderUnavailable  = &Error{Reason: "PROVIDER_UNAVAILABLE", Code: codes.Unavailable}
	ErrAuthMissing          = &Error{Reason: "AUTH_MISSING", Code: codes.Unauthenticated}
	ErrAuthInvalid          = &Error{Reason: "AUTH_INVALID", Code: codes.Unauthenticated}
	ErrShuttingDown         = &Error{Reason: "SHUTTING_DOWN", Code: codes.Unavailable}
	ErrDeadlineExceeded     = &Error{Reason: "DEADLINE_EXCEEDED", Code: codes.DeadlineExceeded}
	ErrTransportUnavailable = &Error{Reason: "UNAVAILABLE", Code: codes.Unavailable}
)

// errorDomain is the ErrorInfo domain intentkit's server sets.
const errorDomain = "intentkit"

// fromRPC turns what a stub returned into an *Error (nil stays nil; a context error from the
// caller's own ctx stays wrapped so errors.Is(err, context.Canceled) still holds).
func fromRPC(err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	e := &Error{Code: st.Code(), Message: st.Message()}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != errorDomain {
			continue
		}
		e.Reason = info.GetReason()
		e.Retryable = info.GetMetadata()["retryable"] == "true"
		e.IntentID = info.GetMetadata()["intent_id"]
	}
	if e.Reason == "" {
		// No ErrorInfo: the transport or the deadline, not the server's judgement.
		e.Reason = codeName(st.Code())
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
			e.Retryable = true
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", e, err)
	}
	return e
}

// codeName spells a status code as the gRPC specification does (DEADLINE_EXCEEDED).
func codeName(c codes.Code) string {
	var b strings.Builder
	prevLower := false
	for _, r := range c.String() {
		upper := r >= 'A' && r <= 'Z'
		if upper && prevLower {
			b.WriteByte('_')
		}
		prevLower = !upper
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}
