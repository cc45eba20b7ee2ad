package intentkittest_test

// A user's code and its unit test, as you would write them: the code takes an intentkit.API,
// and the test gives it a Client on the fake server, then plays the payer and Pientegra.
// Copy this file as a start.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	intentkit "github.com/intentkit/intentkit/bindings/go"
	"github.com/intentkit/intentkit/bindings/go/intentkittest"
	"google.golang.org/grpc/codes"
)

// Shop is the user's code: it takes deposits for orders and credits its ledger once per
// approved deposit.
type Shop struct {
	Payments intentkit.API

	mu      sync.Mutex
	credits map[string]int64 // business key -> amount: the unique key of a real ledger
}

// StartDeposit creates the order's deposit (the order id is the idempotency key: a retry
// after any error gives the same deposit) and returns the page to send the payer to.
func (s *Shop) StartDeposit(ctx context.Context, orderID string, amountMinor int64) (string, error) {
	intent, err := s.Payments.CreateDeposit(ctx, &intentkit.CreateDepositRequest{
		IdempotencyKey: orderID, Account: "tr-sandbox", AmountMinor: amountMinor,
		Currency: "TRY", Reference: orderID, UserId: "user-42",
	})
	if err != nil {
		return "", fmt.Errorf("deposit for %s: %w", orderID, err)
	}
	return intent.GetHandoff().GetHostedPage().GetUrl(), nil
}

// RunLedger credits every approved deposit, until ctx ends.
func (s *Shop) RunLedger(ctx context.Context) error {
	return s.Payments.Consume(ctx, "ledger", func(_ context.Context, e *intentkit.Event) error {
		if e.GetTypeName() != "intent.approved" {
			return nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.credits == nil {
			s.credits = map[string]int64{}
		}
		s.credits[e.GetBusinessKey()] = e.GetIntent().GetApprovedAmountMinor()
		return nil
	})
}

// Credited is the total credited so far.
func (s *Shop) Credited() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum int64
	for _, v := range s.credits {
		sum += v
	}
	return sum
}

func TestShopCreditsWhatPientegraApproved(t *testing.T) {
	srv := intentkittest.NewServer()
	t.Cleanup(srv.Close)
	shop := &Shop{Payments: srv.Client()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ledger := make(chan error, 1)
	go func() { ledger <- shop.RunLedger(ctx) }()

	url, err := shop.StartDeposit(ctx, "order-1001", 150_000)
	if err != nil || url == "" {
		t.Fatalf("StartDeposit: %q, %v", url, err)
	}
	// The payer sent less than asked; Pientegra approved what came.
	intent := srv.Events()[0].GetIntent()
	if err := srv.Approve(intent.GetId(), intentkittest.ApprovedAmount(149_000)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); shop.Credited() != 149_000; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("credited %d, want 149000", shop.Credited())
		}
	}
	cancel()
	if err := <-ledger; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunLedger: %v", err)
	}
	// Every event was acknowledged: a restarted ledger would not see them again.
	if got, want := srv.Acked("ledger"), uint64(len(srv.Events())); got != want {
		t.Fatalf("acked %d of %d events", got, want)
	}
}

func TestShopReportsAProviderOutage(t *testing.T) {
	srv := intentkittest.NewServer()
	t.Cleanup(srv.Close)
	shop := &Shop{Payments: srv.Client()}
	// gRPC itself retries UNAVAILABLE (intentkit.DefaultRetryPolicy): this outage outlasts
	// every attempt.
	for range intentkit.DefaultRetryPolicy.MaxAttempts {
		srv.FailNext("CreateDeposit", intentkittest.ErrorStatus(codes.Unavailable, "PROVIDER_UNAVAILABLE", true, ""))
	}
	_, err := shop.StartDeposit(context.Background(), "order-1002", 99_00)
	var e *intentkit.Error
	if !errors.As(err, &e) || !e.Retryable || !errors.Is(err, intentkit.ErrProviderUnavailable) {
		t.Fatalf("want a retryable PROVIDER_UNAVAILABLE, got %v", err)
	}
	// Retried with the same order id, it goes through.
	if _, err := shop.StartDeposit(context.Background(), "order-1002", 99_00); err != nil {
		t.Fatal(err)
	}
}

// The fake in a few lines: a deposit, its approval, and the events a consumer receives.
func Example() {
	srv := intentkittest.NewServer()
	defer srv.Close()
	client := srv.Client()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()

	intent, _ := client.CreateDeposit(ctx, &intentkit.CreateDepositRequest{
		IdempotencyKey: "order-1001", Account: "tr-sandbox", AmountMinor: 150_000,
		Currency: "TRY", Reference: "order-1001", UserId: "user-42",
	})
	_ = srv.Approve(intent.GetId())
	_ = client.Consume(ctx, "ledger", func(_ context.Context, e *intentkit.Event) error {
		fmt.Println(e.GetSeq(), e.GetTypeName(), e.GetIntent().GetStatus())
		if e.GetTypeName() == "intent.approved" {
			stop()
		}
		return nil
	})
	// Output:
	// 1 intent.created INTENT_STATUS_CREATED
	// 2 intent.pending INTENT_STATUS_PENDING
	// 3 intent.approved INTENT_STATUS_APPROVED
}
