package intentkittest

// The fake's IntentService: each method checks roughly what intentkitd checks, changes the
// in-memory state under s.mu, and appends events as intentkitd's outbox would.

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/intentkit/intentkit/bindings/go/gen/intentkit/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func invalid(format string, args ...any) error {
	return errorStatus(codes.InvalidArgument, "INVALID_ARGUMENT", fmt.Sprintf(format, args...), false, "")
}

// create records a new intent for req under key, or answers a repeat of an earlier create.
func (s *Server) create(key string, req proto.Message, build func(id string, n int) *v1.Intent) (*v1.Intent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keys[key]; ok {
		if !proto.Equal(k.req, req) {
			return nil, errorStatus(codes.AlreadyExists, "IDEMPOTENCY_CONFLICT",
				fmt.Sprintf("idempotency key %q was used for intent %s with other parameters: use a new key for a new operation", key, k.id), false, k.id)
		}
		return proto.Clone(s.intents[k.id]).(*v1.Intent), nil
	}
	n := len(s.order) + 1
	id := fmt.Sprintf("00000000-0000-7000-8000-%012d", n)
	it := build(id, n)
	now := timestamppb.Now()
	it.Id, it.IdempotencyKey, it.CreatedAt, it.UpdatedAt = id, key, now, now
	it.ProviderKey = "ik-" + id
	it.Status, it.Version = v1.IntentStatus_INTENT_STATUS_CREATED, 1
	handoff, ref := it.Handoff, it.ProviderRef
	it.Handoff, it.ProviderRef = nil, nil
	s.intents[id] = it
	s.order = append(s.order, id)
	s.keys[key] = keyed{id: id, req: proto.Clone(req)}
	s.record(it, v1.EventType_EVENT_TYPE_CREATED, v1.IntentStatus_INTENT_STATUS_UNSPECIFIED, v1.Cause_CAUSE_API)
	it.Handoff, it.ProviderRef = handoff, ref
	it.ExpiresAt = timestamppb.New(time.Now().Add(30 * time.Minute))
	s.move(it, v1.IntentStatus_INTENT_STATUS_PENDING, v1.EventType_EVENT_TYPE_PENDING, v1.Cause_CAUSE_API)
	return proto.Clone(it).(*v1.Intent), nil
}

func (s *Server) account(name string, want v1.Provider) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.accounts[name]; !ok || p != want {
		return ErrorStatus(codes.NotFound, "UNKNOWN_ACCOUNT", false, "")
	}
	return nil
}

func common(key, account, reference, userID string) error {
	switch {
	case key == "" || len(key) > 255:
		return invalid("idempotency_key: 1 to 255 characters")
	case account == "":
		return invalid("account: required")
	case reference == "" || len(reference) > 128:
		return invalid("reference: 1 to 128 characters")
	case userID == "":
		return invalid("user_id: required")
	}
	return nil
}

// CreateDeposit records a PENDING deposit with a hosted page.
func (s *Server) CreateDeposit(_ context.Context, req *v1.CreateDepositRequest) (*v1.Intent, error) {
	if err := common(req.GetIdempotencyKey(), req.GetAccount(), req.GetReference(), req.GetUserId()); err != nil {
		return nil, err
	}
	if req.GetAmountMinor() <= 0 || req.GetCurrency() == "" {
		return nil, invalid("amount_minor must be > 0 and currency set")
	}
	if err := s.account(req.GetAccount(), v1.Provider_PROVIDER_PIENTEGRA); err != nil {
		return nil, err
	}
	return s.create(req.GetIdempotencyKey(), req, func(id string, n int) *v1.Intent {
		return &v1.Intent{
			Provider: v1.Provider_PROVIDER_PIENTEGRA, Kind: v1.IntentKind_INTENT_KIND_DEPOSIT,
			Account: req.GetAccount(), AmountMinor: req.GetAmountMinor(), Currency: req.GetCurrency(),
			Reference: req.GetReference(), UserId: req.GetUserId(), Metadata: req.GetMetadata(),
			Handoff: &v1.PayerHandoff{Handoff: &v1.PayerHandoff_HostedPage{HostedPage: &v1.HostedPage{
				Url: fmt.Sprintf("https://pientegra.intentkittest.invalid/d/%d", n)}}},
			ProviderRef: &v1.ProviderRef{Ref: &v1.ProviderRef_Pientegra{Pientegra: &v1.PientegraRef{
				IntentId: fmt.Sprintf("pi-%d", n), ReferenceNo: fmt.Sprintf("R%08d", n)}}},
		}
	})
}

// CreateAccountVerification records a PENDING verification with a UPI hand-off.
func (s *Server) CreateAccountVerification(_ context.Context, req *v1.CreateAccountVerificationRequest) (*v1.Intent, error) {
	if err := common(req.GetIdempotencyKey(), req.GetAccount(), req.GetReference(), req.GetUserId()); err != nil {
		return nil, err
	}
	if strings.ContainsAny(req.GetPurposeMessage(), ".@#$%^&*!;:'\"~`?=+()") {
		return nil, ErrorStatus(codes.InvalidArgument, "error_unsanitized_values", false, "")
	}
	if err := s.account(req.GetAccount(), v1.Provider_PROVIDER_DECENTRO); err != nil {
		return nil, err
	}
	return s.create(req.GetIdempotencyKey(), req, func(id string, n int) *v1.Intent {
		upi := &v1.UpiHandoff{ShortLink: fmt.Sprintf("https://decentro.intentkittest.invalid/u/%d", n)}
		if req.GetGenerateQr() {
			upi.QrCode = "data:image/png;base64,iVBORw0KGgo="
		}
		if req.GetGenerateUri() {
			upi.GpayUri = fmt.Sprintf("tez://upi/pay?tr=%d", n)
			upi.PhonepeUri = fmt.Sprintf("phonepe://pay?tr=%d", n)
			upi.PaytmUri = fmt.Sprintf("paytmmp://pay?tr=%d", n)
		}
		return &v1.Intent{
			Provider: v1.Provider_PROVIDER_DECENTRO, Kind: v1.IntentKind_INTENT_KIND_ACCOUNT_VERIFICATION,
			Account: req.GetAccount(), AmountMinor: 1, Currency: "INR",
			Reference: req.GetReference(), UserId: req.GetUserId(), Metadata: req.GetMetadata(),
			Handoff:     &v1.PayerHandoff{Handoff: &v1.PayerHandoff_Upi{Upi: upi}},
			ProviderRef: &v1.ProviderRef{Ref: &v1.ProviderRef_Decentro{Decentro: &v1.DecentroRef{TxnId: fmt.Sprintf("DCTRFAKE%06d", n)}}},
		}
	})
}

// GetIntent answers one intent, or INTENT_NOT_FOUND.
func (s *Server) GetIntent(_ context.Context, req *v1.GetIntentRequest) (*v1.Intent, error) {
	return s.Intent(req.GetId())
}

// ListIntents answers a page of intents, newest first; the page token is an offset.
func (s *Server) ListIntents(_ context.Context, req *v1.ListIntentsRequest) (*v1.ListIntentsResponse, error) {
	size := int(req.GetPageSize())
	if size == 0 {
		size = 50
	}
	if size > 500 {
		return nil, invalid("page_size")
	}
	from := 0
	if t := req.GetPageToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return nil, invalid("page_token")
		}
		from = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var match []*v1.Intent
	for i := len(s.order) - 1; i >= 0; i-- {
		it := s.intents[s.order[i]]
		switch {
		case len(req.GetStatuses()) > 0 && !slices.Contains(req.GetStatuses(), it.GetStatus()),
			req.GetProvider() != v1.Provider_PROVIDER_UNSPECIFIED && req.GetProvider() != it.GetProvider(),
			req.GetAccount() != "" && req.GetAccount() != it.GetAccount(),
			req.GetCreatedFrom() != nil && it.GetCreatedAt().AsTime().Before(req.GetCreatedFrom().AsTime()),
			req.GetCreatedTo() != nil && !it.GetCreatedAt().AsTime().Before(req.GetCreatedTo().AsTime()):
			continue
		}
		match = append(match, proto.Clone(it).(*v1.Intent))
	}
	resp := &v1.ListIntentsResponse{}
	if from < len(match) {
		end := min(from+size, len(match))
		resp.Intents = match[from:end]
		if end < len(match) {
			resp.NextPageToken = strconv.Itoa(end)
		}
	}
	return resp, nil
}

// CancelIntent cancels an intent the payer has not confirmed yet; INVALID_TRANSITION after.
func (s *Server) CancelIntent(_ context.Context, req *v1.CancelIntentRequest) (*v1.Intent, error) {
	return s.transition(req.GetId(), v1.IntentStatus_INTENT_STATUS_CANCELED, v1.Cause_CAUSE_API, func(it *v1.Intent) {
		it.Reason = req.GetReason()
	})
}

// RefreshIntent answers the intent as it is (the fake has no provider to ask).
func (s *Server) RefreshIntent(_ context.Context, req *v1.RefreshIntentRequest) (*v1.Intent, error) {
	return s.Intent(req.GetId())
}

// HandleWebhook takes any delivery for a configured account as `ignored` (200) and answers 404
// `unknown_account` otherwise: the fake verifies no signature and applies nothing. Drive
// outcomes with Approve, Reject and Expire.
func (s *Server) HandleWebhook(_ context.Context, req *v1.HandleWebhookRequest) (*v1.HandleWebhookResponse, error) {
	s.mu.Lock()
	p, ok := s.accounts[req.GetAccount()]
	s.mu.Unlock()
	if !ok || p != req.GetProvider() {
		return &v1.HandleWebhookResponse{HttpStatus: 404, HttpBody: `{"error":{"code":"UNKNOWN_ACCOUNT"}}`, Outcome: "unknown_account", Reason: "UNKNOWN_ACCOUNT"}, nil
	}
	return &v1.HandleWebhookResponse{HttpStatus: 200, HttpBody: `{}`, Outcome: "ignored"}, nil
}

// after is where a consumer's page or stream starts.
func (s *Server) after(consumer string, afterSeq *uint64) uint64 {
	if afterSeq != nil {
		return *afterSeq
	}
	return s.acks[consumer]
}

// StreamEvents sends the outbox after the cursor, then waits for new events until the call ends.
func (s *Server) StreamEvents(req *v1.StreamEventsRequest, stream grpc.ServerStreamingServer[v1.Event]) error {
	if req.GetConsumer() == "" {
		return invalid("consumer: required")
	}
	s.mu.Lock()
	next := s.after(req.GetConsumer(), req.AfterSeq)
	s.mu.Unlock()
	for {
		s.mu.Lock()
		var batch []*v1.Event
		if next < uint64(len(s.events)) {
			batch = s.events[next:]
		}
		changed := s.changed
		s.mu.Unlock()
		for _, ev := range batch {
			if err := stream.Send(ev); err != nil {
				return err
			}
			next = ev.GetSeq()
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-changed:
		}
	}
}

// ListEvents answers one page of the outbox after the cursor.
func (s *Server) ListEvents(_ context.Context, req *v1.ListEventsRequest) (*v1.ListEventsResponse, error) {
	if req.GetConsumer() == "" {
		return nil, invalid("consumer: required")
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = 100
	}
	if limit > 500 {
		return nil, invalid("limit")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	from := s.after(req.GetConsumer(), req.AfterSeq)
	resp := &v1.ListEventsResponse{AckedSeq: s.acks[req.GetConsumer()], Events: []*v1.Event{}}
	for i := from; i < uint64(len(s.events)) && len(resp.Events) < limit; i++ {
		resp.Events = append(resp.Events, s.events[i])
	}
	return resp, nil
}

// AckEvents moves the consumer's position forward (never back); past the newest event is
// INVALID_ARGUMENT, as in intentkitd.
func (s *Server) AckEvents(_ context.Context, req *v1.AckEventsRequest) (*v1.AckEventsResponse, error) {
	if req.GetConsumer() == "" {
		return nil, invalid("consumer: required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.GetSeq() > uint64(len(s.events)) {
		return nil, invalid("seq %d is past the newest event %d", req.GetSeq(), len(s.events))
	}
	s.acks[req.GetConsumer()] = max(s.acks[req.GetConsumer()], req.GetSeq())
	return &v1.AckEventsResponse{AckedSeq: s.acks[req.GetConsumer()]}, nil
}
