// Package secret holds values that must never be printed: client secrets,
// private keys, database URLs with passwords. A String formats, marshals and
// logs as "<redacted>"; only code that uses the value calls Reveal.
package secret

import (
	"crypto/subtle"
	"log/slog"
)

// Redacted is what every secret prints as.
const Redacted = "<redacted>"

// String is a secret string value. The zero value is the empty secret.
// The plaintext sits behind a pointer so that fmt, which cannot call String()
// on an unexported field, prints an address rather than the value.
type String struct{ p *string }

// New wraps a plaintext value.
func New(v string) String { return String{p: &v} }

// Reveal returns the plaintext. Call it only where the value is used.
func (s String) Reveal() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

// IsZero reports whether the secret is empty.
func (s String) IsZero() bool { return s.Reveal() == "" }

// Equal compares two secrets in constant time (for equal lengths).
func (s String) Equal(o String) bool {
	return subtle.ConstantTimeCompare([]byte(s.Reveal()), []byte(o.Reveal())) == 1
}

func (String) String() string               { return Redacted }
func (String) GoString() string             { return Redacted }
func (String) LogValue() slog.Value         { return slog.StringValue(Redacted) }
func (String) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }
func (String) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
func (String) MarshalYAML() (any, error)    { return Redacted, nil }
