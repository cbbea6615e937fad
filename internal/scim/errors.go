// Package scim is the protocol side of SCIM 2.0 (RFC 7643, RFC 7644):
// the User, Group and enterprise schemas, filters parsed into a tree,
// PATCH paths and operations, resource checks, and the SCIM error
// response. It knows nothing of HTTP routing or storage: the
// user-management profile serves it, and the store translates its filter
// trees into SQL.
package scim

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// ErrorSchema is the URN of a SCIM error response (RFC 7644 §3.12).
const ErrorSchema = "urn:ietf:params:scim:api:messages:2.0:Error"

// scimType values (RFC 7644 §3.12, table 9).
const (
	InvalidFilter = "invalidFilter"
	TooMany       = "tooMany"
	Uniqueness    = "uniqueness"
	Mutability    = "mutability"
	InvalidSyntax = "invalidSyntax"
	InvalidPath   = "invalidPath"
	NoTarget      = "noTarget"
	InvalidValue  = "invalidValue"
	InvalidVers   = "invalidVers"
	Sensitive     = "sensitive"
)

// Error is a SCIM error: its HTTP status, scimType (may be empty) and a
// detail for people. Details never quote a secret (a password, a token).
type Error struct {
	Status   int
	ScimType string
	Detail   string
}

// Errorf returns an *Error.
func Errorf(status int, scimType, format string, args ...any) *Error {
	return &Error{Status: status, ScimType: scimType, Detail: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	if e.ScimType == "" {
		return fmt.Sprintf("scim %d: %s", e.Status, e.Detail)
	}
	return fmt.Sprintf("scim %d %s: %s", e.Status, e.ScimType, e.Detail)
}

// MarshalJSON writes the error response body; status is a string, as the
// RFC's examples have it.
func (e *Error) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Schemas  []string `json:"schemas"`
		Status   string   `json:"status"`
		ScimType string   `json:"scimType,omitempty"`
		Detail   string   `json:"detail,omitempty"`
	}{[]string{ErrorSchema}, strconv.Itoa(e.Status), e.ScimType, e.Detail})
}
