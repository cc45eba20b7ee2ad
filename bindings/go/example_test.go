package intentkit_test

import (
	"context"
	"fmt"
	"log"
	"os"

	intentkit "github.com/intentkit/intentkit/bindings/go"
	v1 "github.com/intentkit/intentkit/bindings/go/gen/intentkit/v1"
)

// A deposit with the sandbox's address and token (`intentkitd --sandbox` prints both).
func Example() {
	addr := os.Getenv("INTENTKIT_ADDR") // e.g. 127.0.0.1:50051
	client, err := intentkit.Dial(addr, intentkit.WithInsecure(), intentkit.WithToken("sandbox-token"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	intent, err := client.CreateDeposit(context.Background(), &v1.CreateDepositRequest{
		IdempotencyKey: "order-1001", Account: "tr-sandbox", AmountMinor: 150_000,
		Currency: "TRY", Reference: "order-1001", UserId: "user-42",
	})
	if err != nil {
		log.Fatal(err) // *intentkit.Error: branch on Reason, retry with the same key if Retryable
	}
	fmt.Println(intent.GetStatus(), intent.GetHandoff().GetHostedPage().GetUrl() != "")
	// Output: INTENT_STATUS_PENDING true
}
