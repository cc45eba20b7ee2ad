package intentkit

// How a server's status becomes an *Error, without a server.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func withInfo(t *testing.T, code codes.Code, msg string, info *errdetails.ErrorInfo) error {
	t.Helper()
	st, err := status.New(code, msg).WithDetails(info)
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func TestErrorInfoBecomesTheErrorsFields(t *testing.T) {
	err := fromRPC(withInfo(t, codes.Unavailable, "pientegra unreachable", &errdetails.ErrorInfo{
		Reason: "PROVIDER_UNAVAILABLE", Domain: "intentkit",
		Metadata: map[string]string{"retryable": "true", "intent_id": "01J0ABC"},
	}))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%T", err)
	}
	want := Error{Code: codes.Unavailable, Reason: "PROVIDER_UNAVAILABLE", Message: "pientegra unreachable", Retryable: true, IntentID: "01J0ABC"}
	if *e != want {
		t.Fatalf("got %+v want %+v", *e, want)
	}
	if !errors.Is(err, ErrProviderUnavailable) || errors.Is(err, ErrShuttingDown) {
		t.Fatal("errors.Is must match by reason only")
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("status.Code: %v", status.Code(err))
	}
	if !strings.Contains(e.Error(), "PROVIDER_UNAVAILABLE") || !strings.Contains(e.Error(), "01J0ABC") {
		t.Fatal(e.Error())
	}
	// Wrapped by the caller, it is still found.
	if !errors.Is(fmt.Errorf("charging: %w", err), ErrProviderUnavailable) {
		t.Fatal("wrapped")
	}
}

func TestAnotherDomainsErrorInfoIsNotTakenForOurs(t *testing.T) {
	err := fromRPC(withInfo(t, codes.PermissionDenied, "proxy says no", &errdetails.ErrorInfo{
		Reason: "IDEMPOTENCY_CONFLICT", Domain: "proxy.example",
	}))
	var e *Error
	if !errors.As(err, &e) || e.Reason != "PERMISSION_DENIED" || errors.Is(err, ErrIdempotencyConflict) {
		t.Fatalf("%+v", e)
	}
}

func TestTransportFailuresGetTheCodesName(t *testing.T) {
	for code, want := range map[codes.Code]struct {
		reason    string
		retryable bool
	}{
		codes.DeadlineExceeded: {"DEADLINE_EXCEEDED", true},
		codes.Unavailable:      {"UNAVAILABLE", true},
		codes.Unauthenticated:  {"UNAUTHENTICATED", false},
		codes.Internal:         {"INTERNAL", false},
		codes.InvalidArgument:  {"INVALID_ARGUMENT", false},
	} {
		var e *Error
		if !errors.As(fromRPC(status.Error(code, "x")), &e) || e.Reason != want.reason || e.Retryable != want.retryable {
			t.Errorf("%v: %+v", code, e)
		}
	}
}

func TestTheCallersContextErrorStaysVisible(t *testing.T) {
	err := fromRPC(context.Canceled)
	if !errors.Is(err, context.Canceled) || status.Code(err) != codes.Canceled {
		t.Fatalf("%v", err)
	}
	if fromRPC(nil) != nil {
		t.Fatal("nil must stay nil")
	}
}

func TestDialRefusesAnAmbiguousTransport(t *testing.T) {
	if _, err := Dial("127.0.0.1:1"); err == nil {
		t.Fatal("neither TLS nor insecure chosen")
	}
	if _, err := Dial("127.0.0.1:1", WithTLS(nil), WithInsecure()); err == nil {
		t.Fatal("both chosen")
	}
}

func TestTheTokenNeverPrints(t *testing.T) {
	b := bearer{token: "s3cret-token"}
	for _, s := range []string{fmt.Sprint(b), fmt.Sprintf("%v %+v %#v", b, b, b)} {
		if strings.Contains(s, "s3cret") {
			t.Fatalf("printed: %s", s)
		}
	}
}

func TestAConsumerReconnectsAfterTransportFailuresOnly(t *testing.T) {
	for code, want := range map[codes.Code]bool{
		codes.Internal:        true, // a stream cut by a dying server
		codes.Unknown:         true,
		codes.Unauthenticated: false,
		codes.InvalidArgument: false,
	} {
		var e *Error
		errors.As(fromRPC(status.Error(code, "x")), &e)
		if got := transport(e); got != want {
			t.Errorf("%v: transport %v, want %v", code, got, want)
		}
	}
	// A server's own refusal is never taken for the transport's.
	var e *Error
	errors.As(fromRPC(withInfo(t, codes.Internal, "bug", &errdetails.ErrorInfo{Reason: "STORE_CORRUPT", Domain: "intentkit"})), &e)
	if transport(e) {
		t.Error("STORE_CORRUPT taken for a transport failure")
	}
}
