// Package bad has one of each problem doccheck reports.
package bad

import v1 "github.com/intentkit/intentkit/bindings/go/gen/intentkit/v1"

func Undocumented() {}

// Thing is documented, its field is not.
type Thing struct {
	Field int
}

// Event is an alias into the module's generated code: be idempotent on Event.Id (there is no
// Id: the check follows the alias), or Event.Seq (there is).
type Event = v1.Event

// Nope names Thing.Missing, and Thing.Field, which exists.
const Nope = 1
