package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestWithDescriptionCopies(t *testing.T) {
	e := ErrInvalidScope.WithDescription("scope \"x\" not\nallowed")
	if ErrInvalidScope.Description != "" {
		t.Fatal("sentinel mutated")
	}
	if e.Description != "scope ?x? not?allowed" {
		t.Errorf("description %q", e.Description)
	}
	if !errors.Is(e, ErrInvalidScope) || errors.Is(e, ErrInvalidClient) {
		t.Error("errors.Is by code")
	}
	wrapped := fmt.Errorf("ctx: %w", ErrInvalidGrant.WithCause(errors.New("debug")))
	if From(wrapped).Code != "invalid_grant" || From(errors.New("x")).Code != "server_error" {
		t.Error("From")
	}
}

func TestWrite(t *testing.T) {
	for _, c := range []struct {
		err       *Error
		status    int
		challenge bool
	}{
		{ErrInvalidRequest, 400, false},
		{ErrInvalidClient.WithCause(errors.New("secret mismatch")), 401, true},
		{ErrInvalidGrant, 400, false},
		{ErrUnauthorizedClient, 400, false},
		{ErrUnsupportedGrantType, 400, false},
		{ErrInvalidScope, 400, false},
		{ErrInvalidTarget, 400, false},
		{ErrServerError, 500, false},
	} {
		var r fasthttp.Response
		Write(&r, c.err.WithDescription("d"), `kg"x`)
		if r.StatusCode() != c.status {
			t.Errorf("%s: status %d", c.err.Code, r.StatusCode())
		}
		if string(r.Header.Peek("Cache-Control")) != "no-store" || string(r.Header.Peek("Pragma")) != "no-cache" {
			t.Errorf("%s: cache headers", c.err.Code)
		}
		if got := string(r.Header.Peek("WWW-Authenticate")); (got != "") != c.challenge || (c.challenge && got != `Basic realm="kgx"`) {
			t.Errorf("%s: WWW-Authenticate %q", c.err.Code, got)
		}
		var b map[string]string
		if err := json.Unmarshal(r.Body(), &b); err != nil {
			t.Fatal(err)
		}
		if len(b) != 2 || b["error"] != c.err.Code || b["error_description"] != "d" {
			t.Errorf("%s: body %s (debug detail must not leak)", c.err.Code, r.Body())
		}
	}
}
