// Package oauth is the OAuth 2.0 error type: sentinel values for the
// error codes of RFC 6749 §5.2 and its extensions, copy-on-write
// descriptions, and the error response writer.
//
// What is sent to the client is the code and a fixed description. Debug
// detail (a parser's message, a storage error) goes into Cause, which
// only logs see.
package oauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/valyala/fasthttp"
)

// Error is an OAuth error response (RFC 6749 §5.2). The sentinels below
// are shared: derive a variant with WithDescription or WithCause, which
// copy, never mutate.
type Error struct {
	Code        string // the "error" member, e.g. invalid_client
	Description string // the "error_description" member; fixed text, no user input
	Status      int    // HTTP status
	// Cause is debug detail for logs only; never sent.
	Cause error
	// Reason says why, finer than Code, for the refusal log and the
	// errors metric: a fixed snake_case word of the code's own (never
	// request input), "" where the code says it all.
	Reason string
	// NoChallenge: a 401 answering credentials the client sent in the
	// body, which Write sends without a WWW-Authenticate challenge.
	NoChallenge bool
}

// Sentinel errors. Compare with errors.Is, which matches by code.
var (
	// RFC 6749 §5.2.
	ErrInvalidRequest       = &Error{Code: "invalid_request", Status: http.StatusBadRequest}
	ErrInvalidClient        = &Error{Code: "invalid_client", Status: http.StatusUnauthorized}
	ErrInvalidGrant         = &Error{Code: "invalid_grant", Status: http.StatusBadRequest}
	ErrUnauthorizedClient   = &Error{Code: "unauthorized_client", Status: http.StatusBadRequest}
	ErrUnsupportedGrantType = &Error{Code: "unsupported_grant_type", Status: http.StatusBadRequest}
	ErrInvalidScope         = &Error{Code: "invalid_scope", Status: http.StatusBadRequest}
	// RFC 8707 §2.
	ErrInvalidTarget = &Error{Code: "invalid_target", Status: http.StatusBadRequest}
	// RFC 7009 §2.2.1.
	ErrUnsupportedTokenType = &Error{Code: "unsupported_token_type", Status: http.StatusBadRequest}
	// RFC 6749 §4.1.2.1, used at every endpoint for failures of ours.
	ErrServerError            = &Error{Code: "server_error", Status: http.StatusInternalServerError}
	ErrTemporarilyUnavailable = &Error{Code: "temporarily_unavailable", Status: http.StatusServiceUnavailable}
)

func (e *Error) Error() string {
	s := e.Code
	if e.Description != "" {
		s += ": " + e.Description
	}
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns the debug cause.
func (e *Error) Unwrap() error { return e.Cause }

// Is matches any *Error with the same code, so a described copy of a
// sentinel is still errors.Is(err, ErrInvalidClient).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// WithDescription returns a copy with the description set. Characters
// RFC 6749 §5.2 does not allow (outside %x20-21 / %x23-5B / %x5D-7E) are
// replaced by '?'. Pass fixed text, never request input.
func (e *Error) WithDescription(desc string) *Error {
	c := *e
	c.Description = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '?'
		}
		return r
	}, desc)
	return &c
}

// WithoutChallenge returns a copy that Write sends with no Basic
// challenge: RFC 6749 §5.2 asks for one only when the client used the
// Authorization header, and a Basic challenge to a client that sent
// client_secret_post or private_key_jwt makes libraries report a failed
// challenge rather than invalid_client.
func (e *Error) WithoutChallenge() *Error {
	c := *e
	c.NoChallenge = true
	return &c
}

// WithReason returns a copy with the reason set; pass a constant.
func (e *Error) WithReason(reason string) *Error {
	c := *e
	c.Reason = reason
	return &c
}

// WithCause returns a copy carrying cause for logs.
func (e *Error) WithCause(cause error) *Error {
	c := *e
	c.Cause = cause
	return &c
}

// From returns err as an *Error, or ErrServerError with err as its cause.
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ErrServerError.WithCause(err)
}

// RetryAfter is the Retry-After (seconds) of a 503 whose cause is the
// database: long enough for a failover, short enough for a user to wait.
const RetryAfter = "5"

// Unavailable reports whether e is a server error caused by a data source
// that is down, too slow or refusing writes (storage.ErrUnavailable):
// that is a 503 temporarily_unavailable, which clients retry, not a 500.
func Unavailable(e *Error) bool {
	var u interface{ Unavailable() bool }
	return e.Code == ErrServerError.Code && errors.As(e.Cause, &u) && u.Unavailable()
}

// Retryable returns e, or ErrTemporarilyUnavailable with e's cause when
// e is Unavailable.
func Retryable(e *Error) *Error {
	if Unavailable(e) {
		return ErrTemporarilyUnavailable.WithCause(e.Cause)
	}
	return e
}

type body struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// Write writes e as the JSON error response of RFC 6749 §5.2, with
// Cache-Control: no-store and Pragma: no-cache. A server error caused by
// an unavailable data source goes out as 503 temporarily_unavailable with
// Retry-After. A 401 carries
// WWW-Authenticate: Basic with realm (RFC 6749 §5.2 requires the scheme
// the client tried when it used the Authorization header; RFC 9110
// §15.5.2 asks for a challenge on a 401, and Basic is the only header
// scheme the endpoints accept), unless e.NoChallenge.
func Write(r *fasthttp.Response, e *Error, realm string) {
	e = Retryable(e)
	if e.Code == ErrTemporarilyUnavailable.Code {
		r.Header.Set(fasthttp.HeaderRetryAfter, RetryAfter)
	}
	b, _ := json.Marshal(body{Error: e.Code, Description: e.Description}) // cannot fail
	r.SetStatusCode(e.Status)
	r.Header.SetContentType("application/json")
	NoStore(r)
	if e.Status == http.StatusUnauthorized && !e.NoChallenge {
		r.Header.Set(fasthttp.HeaderWWWAuthenticate, `Basic realm="`+Realm(realm)+`"`)
	}
	r.SetBodyRaw(b)
}

// NoStore sets the headers of RFC 6749 §5.1 that keep token responses
// out of caches.
func NoStore(r *fasthttp.Response) {
	r.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	r.Header.Set(fasthttp.HeaderPragma, "no-cache")
}

// Realm keeps a challenge's realm (the issuer, for Basic and Bearer) a
// valid quoted-string (RFC 9110 §5.6.4): what could end or escape it, and
// anything outside visible ASCII, is dropped.
func Realm(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}
