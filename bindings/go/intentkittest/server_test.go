package intentkittest_test

// The fake's own contract: what a user's tests rely on it to do as intentkitd does.

import (
	"context"
	"errors"
	"testing"

	intentkit "github.com/intentkit/intentkit/bindings/go"
	v1 "github.com/intentkit/intentkit/bindings/go/gen/intentkit/v1"
	"github.com/intentkit/intentkit/bindings/go/intentkittest"
	"google.golang.org/grpc/codes"
)

func TestAVerificationIsApprovedWithItsPayer(t *testing.T) {
	srv := intentkittest.NewServer()
	t.Cleanup(srv.Close)
	c := srv.Client()
	ctx := context.Background()
	v, err := c.CreateAccountVerification(ctx, &intentkit.CreateAccountVerificationRequest{
		IdempotencyKey: "kyc-1", Account: intentkittest.DecentroAccount, Reference: "kyc-1", UserId: "u",
		GenerateQr: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if v.GetStatus() != v1.IntentStatus_INTENT_STATUS_PENDING || v.GetHandoff().GetUpi().GetQrCode() == "" || v.GetProviderRef().GetDecentro().GetTxnId() == "" {
		t.Fatalf("created: %v", v)
	}
	payer := &v1.VerifiedPayer{Name: "Asha Rao", Vpa: "asha@oksbi"}
	if err := srv.Approve(v.GetId(), intentkittest.Payer(payer)); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetIntent(ctx, v.GetId())
	if err != nil || got.GetVerifiedPayer().GetName() != "Asha Rao" || got.GetStatus() != v1.IntentStatus_INTENT_STATUS_APPROVED {
		t.Fatalf("%v %v", got, err)
	}
	// A deposit account does not take verifications, nor an unknown one anything.
	_, err = c.CreateAccountVerification(ctx, &intentkit.CreateAccountVerificationRequest{IdempotencyKey: "kyc-2", Account: intentkittest.PientegraAccount, Reference: "r", UserId: "u"})
	if !errors.Is(err, intentkit.ErrUnknownAccount) {
		t.Fatalf("wrong account: %v", err)
	}
	_, err = c.CreateAccountVerification(ctx, &intentkit.CreateAccountVerificationRequest{IdempotencyKey: "kyc-3", Account: intentkittest.DecentroAccount, Reference: "r", UserId: "u", PurposeMessage: "pay @ once"})
	var e *intentkit.Error
	if !errors.As(err, &e) || e.Reason != "error_unsanitized_values" || e.Code != codes.InvalidArgument {
		t.Fatalf("unsanitized purpose: %v", err)
	}
}

func TestRejectedAndFinalIntentsRefuseFurtherMoves(t *testing.T) {
	srv := intentkittest.NewServer()
	t.Cleanup(srv.Close)
	c := srv.Client()
	ctx := context.Background()
	d, err := c.CreateDeposit(ctx, depositReq("k1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Reject(d.GetId(), "Transfer not received"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Approve(d.GetId()); !errors.Is(err, intentkit.ErrInvalidTransition) {
		t.Fatalf("approve after reject: %v", err)
	}
	if _, err := c.CancelIntent(ctx, d.GetId(), "late"); !errors.Is(err, intentkit.ErrInvalidTransition) {
		t.Fatalf("cancel after reject: %v", err)
	}
	events := srv.Events()
	last := events[len(events)-1]
	if last.GetTypeName() != "intent.rejected" || last.GetBusinessKey() != "intent.rejected:"+d.GetId() || last.GetIntent().GetReason() != "Transfer not received" {
		t.Fatalf("last event: %v", last)
	}
	// An expired deposit may still be approved (funds that came late); a canceled one too.
	e, _ := c.CreateDeposit(ctx, depositReq("k2"))
	if err := srv.Expire(e.GetId()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Approve(e.GetId(), intentkittest.ApprovedAmount(1)); err != nil {
		t.Fatal(err)
	}
	page, err := c.ListIntents(ctx, &intentkit.ListIntentsRequest{Statuses: []v1.IntentStatus{v1.IntentStatus_INTENT_STATUS_APPROVED}})
	if err != nil || len(page.GetIntents()) != 1 || page.GetIntents()[0].GetApprovedAmountMinor() != 1 {
		t.Fatalf("approved: %v %v", page, err)
	}
}

func TestTheTokenIsCheckedWhenSet(t *testing.T) {
	srv := intentkittest.NewServer(intentkittest.WithToken("t0k"))
	t.Cleanup(srv.Close)
	if _, err := srv.Client().CreateDeposit(context.Background(), depositReq("k")); err != nil {
		t.Fatal(err)
	}
	wrong, err := srv.Dial(intentkit.WithToken("nope"))
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	if _, err := wrong.GetIntent(context.Background(), "x"); !errors.Is(err, intentkit.ErrAuthInvalid) {
		t.Fatalf("wrong token: %v", err)
	}
}
