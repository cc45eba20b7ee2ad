package intentkittest

// What a test does in the provider's and the payer's place, and what it reads back.

import (
	"fmt"

	intentkit "github.com/intentkit/intentkit/bindings/go"
	v1 "github.com/intentkit/intentkit/bindings/go/gen/intentkit/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ApproveOption configures Approve.
type ApproveOption func(*v1.Intent)

// ApprovedAmount approves another amount than requested (a payer who sent less): the event's
// intent.approved_amount_minor, which is what a ledger credits.
func ApprovedAmount(minor int64) ApproveOption {
	return func(it *v1.Intent) { it.ApprovedAmountMinor = &minor }
}

// Payer sets the verified payer of an approved verification (without it: a fixed test payer).
func Payer(p *v1.VerifiedPayer) ApproveOption {
	return func(it *v1.Intent) { it.VerifiedPayer = p }
}

// Approve, Reject and Expire return an *intentkit.Error when the move is not allowed
// (INVALID_TRANSITION) or the intent does not exist (INTENT_NOT_FOUND).

// Approve approves the intent as its provider would (the payer paid): APPROVED, with
// approved_amount_minor (the requested amount unless ApprovedAmount says otherwise) and, for a
// verification, the verified payer; and an intent.approved event.
func (s *Server) Approve(id string, opts ...ApproveOption) error {
	_, err := s.transition(id, v1.IntentStatus_INTENT_STATUS_APPROVED, v1.Cause_CAUSE_WEBHOOK, func(it *v1.Intent) {
		amount := it.GetAmountMinor()
		it.ApprovedAmountMinor = &amount
		if it.GetKind() == v1.IntentKind_INTENT_KIND_ACCOUNT_VERIFICATION {
			it.VerifiedPayer = &v1.VerifiedPayer{Name: "Test Payer", MaskedAccountNumber: "XXXXXXXX1234", Ifsc: "SBIN0000042", Vpa: "payer@oksbi", BankReference: "BR" + it.GetId()[len(it.GetId())-6:]}
		}
		for _, o := range opts {
			o(it)
		}
	})
	return intentkit.AsError(err)
}

// Reject rejects the intent as its provider would: REJECTED with reason, and intent.rejected.
func (s *Server) Reject(id, reason string) error {
	_, err := s.transition(id, v1.IntentStatus_INTENT_STATUS_REJECTED, v1.Cause_CAUSE_WEBHOOK, func(it *v1.Intent) { it.Reason = reason })
	return intentkit.AsError(err)
}

// Expire lets the intent's hand-off run out unpaid: EXPIRED, and intent.expired. An expired
// intent may still be approved (funds that came late).
func (s *Server) Expire(id string) error {
	_, err := s.transition(id, v1.IntentStatus_INTENT_STATUS_EXPIRED, v1.Cause_CAUSE_TIMER, nil)
	return intentkit.AsError(err)
}

// Intent is the intent as the fake holds it (a copy), or INTENT_NOT_FOUND.
func (s *Server) Intent(id string) (*v1.Intent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.intents[id]
	if !ok {
		return nil, ErrorStatus(codes.NotFound, "INTENT_NOT_FOUND", false, "")
	}
	return proto.Clone(it).(*v1.Intent), nil
}

// Events is the whole outbox so far, oldest first.
func (s *Server) Events() []*v1.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*v1.Event(nil), s.events...)
}

// Acked is consumer's acknowledged seq (0 before its first ack).
func (s *Server) Acked(consumer string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acks[consumer]
}

// allowed is intentkitd's transition table, for the moves the fake makes (core/docs/lifecycle.md).
var allowed = map[v1.IntentStatus][]v1.IntentStatus{
	v1.IntentStatus_INTENT_STATUS_APPROVED: {v1.IntentStatus_INTENT_STATUS_PENDING, v1.IntentStatus_INTENT_STATUS_PAYER_CONFIRMED, v1.IntentStatus_INTENT_STATUS_EXPIRED, v1.IntentStatus_INTENT_STATUS_LATE_ARRIVAL, v1.IntentStatus_INTENT_STATUS_CANCELED},
	v1.IntentStatus_INTENT_STATUS_REJECTED: {v1.IntentStatus_INTENT_STATUS_PENDING, v1.IntentStatus_INTENT_STATUS_PAYER_CONFIRMED, v1.IntentStatus_INTENT_STATUS_EXPIRED, v1.IntentStatus_INTENT_STATUS_LATE_ARRIVAL},
	v1.IntentStatus_INTENT_STATUS_EXPIRED:  {v1.IntentStatus_INTENT_STATUS_PENDING},
	v1.IntentStatus_INTENT_STATUS_CANCELED: {v1.IntentStatus_INTENT_STATUS_CREATED, v1.IntentStatus_INTENT_STATUS_PENDING},
}

var eventFor = map[v1.IntentStatus]v1.EventType{
	v1.IntentStatus_INTENT_STATUS_APPROVED: v1.EventType_EVENT_TYPE_APPROVED,
	v1.IntentStatus_INTENT_STATUS_REJECTED: v1.EventType_EVENT_TYPE_REJECTED,
	v1.IntentStatus_INTENT_STATUS_EXPIRED:  v1.EventType_EVENT_TYPE_EXPIRED,
	v1.IntentStatus_INTENT_STATUS_CANCELED: v1.EventType_EVENT_TYPE_CANCELED,
}

// transition moves an intent to `to` if the table allows it (INVALID_TRANSITION otherwise),
// applying edit first, and records the event.
func (s *Server) transition(id string, to v1.IntentStatus, cause v1.Cause, edit func(*v1.Intent)) (*v1.Intent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.intents[id]
	if !ok {
		return nil, ErrorStatus(codes.NotFound, "INTENT_NOT_FOUND", false, "")
	}
	from := it.GetStatus()
	ok = false
	for _, f := range allowed[to] {
		ok = ok || f == from
	}
	if !ok {
		return nil, errorStatus(codes.FailedPrecondition, "INVALID_TRANSITION", fmt.Sprintf("intent %s is %s: it cannot become %s", id, from, to), false, id)
	}
	if edit != nil {
		edit(it)
	}
	s.move(it, to, eventFor[to], cause)
	return proto.Clone(it).(*v1.Intent), nil
}

// move sets the status and records the event; s.mu is held.
func (s *Server) move(it *v1.Intent, to v1.IntentStatus, typ v1.EventType, cause v1.Cause) {
	from := it.GetStatus()
	it.Status = to
	it.Version++
	it.UpdatedAt = timestamppb.Now()
	s.record(it, typ, from, cause)
}

// record appends an event for it's current state and wakes the streams; s.mu is held.
func (s *Server) record(it *v1.Intent, typ v1.EventType, from v1.IntentStatus, cause v1.Cause) {
	seq := uint64(len(s.events) + 1)
	name := typeName(typ)
	s.events = append(s.events, &v1.Event{
		Seq: seq, EventId: fmt.Sprintf("00000000-0000-7000-9000-%012d", seq), Type: typ, TypeName: name,
		IntentId: it.GetId(), BusinessKey: name + ":" + it.GetId(), CreatedAt: it.GetUpdatedAt(),
		Intent:     proto.Clone(it).(*v1.Intent),
		Transition: &v1.Transition{From: from, To: it.GetStatus(), Cause: cause, At: it.GetUpdatedAt()},
	})
	close(s.changed)
	s.changed = make(chan struct{})
}

// typeName is the event type's wire name: EVENT_TYPE_PAYER_CONFIRMED is intent.payer_confirmed.
func typeName(t v1.EventType) string {
	n := t.String()[len("EVENT_TYPE_"):]
	b := []byte("intent." + n)
	for i := len("intent."); i < len(b); i++ {
		if b[i] >= 'A' && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}
