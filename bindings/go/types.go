package intentkit

import v1 "github.com/intentkit/intentkit/bindings/go/gen/intentkit/v1"

// The schema's messages under shorter names; the generated package has the rest.
type (
	Intent                           = v1.Intent
	CreateDepositRequest             = v1.CreateDepositRequest
	CreateAccountVerificationRequest = v1.CreateAccountVerificationRequest
	ListIntentsRequest               = v1.ListIntentsRequest
	HandleWebhookRequest             = v1.HandleWebhookRequest
	HandleWebhookResponse            = v1.HandleWebhookResponse
	ListIntentsResponse              = v1.ListIntentsResponse
	ListEventsRequest                = v1.ListEventsRequest
	ListEventsResponse               = v1.ListEventsResponse
)
