package token

import (
	"context"
	"net/url"
	"testing"

	"golang.org/x/oauth2"

	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/storage/model"
)

// A refused exchange (wrong code_verifier, another client, another
// redirect URI) does not use the code up: the legitimate exchange still
// succeeds, nothing is revoked and no code_reuse is audited. After
// MaxCodeFailures refusals the code is dead, still without a reuse alarm.
// Only a second successful presentation is reuse.
func TestFailedExchangeKeepsCode(t *testing.T) {
	f := newFlowEnv(t)
	cookie, _ := f.login()
	cfg := f.config("web", webSecret, webRedirect)
	v := oauth2.GenerateVerifier()
	exchange := func(client, sec, code, redirect, verifier string) (int, map[string]any) {
		body := "grant_type=authorization_code&code=" + url.QueryEscape(code) + "&redirect_uri=" + url.QueryEscape(redirect) +
			"&code_verifier=" + verifier
		r, m := f.post("/token", body, basicAuth(client, sec))
		return r.StatusCode, m
	}
	reuses := func() int {
		evs, err := f.store.Audit().List(context.Background(), model.AuditQuery{Type: audit.CodeReuse})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	for name, attack := range map[string]func(code string) (int, map[string]any){
		"wrong verifier": func(code string) (int, map[string]any) {
			return exchange("web", webSecret, code, webRedirect, oauth2.GenerateVerifier())
		},
		"other client": func(code string) (int, map[string]any) {
			return exchange("other", otherSecret, code, webRedirect, v)
		},
		"other redirect_uri": func(code string) (int, map[string]any) {
			return exchange("web", webSecret, code, "https://rp.example.com/cb?tenant=1", v)
		},
	} {
		code := f.code(cookie, cfg, v)
		if st, m := attack(code); st != 400 || m["error"] != "invalid_grant" {
			t.Fatalf("%s: %d %v", name, st, m)
		}
		st, m := exchange("web", webSecret, code, webRedirect, v)
		if st != 200 {
			t.Fatalf("%s: the legitimate exchange after it: %d %v", name, st, m)
		}
		if f.introspect(m["access_token"].(string))["active"] != true {
			t.Errorf("%s: the legitimate access token is inactive", name)
		}
	}
	if n := reuses(); n != 0 {
		t.Fatalf("%d code_reuse events for refused exchanges", n)
	}

	// MaxCodeFailures wrong verifiers end the code: the right one is then
	// refused too, and that is no reuse.
	code := f.code(cookie, cfg, v)
	for range model.MaxCodeFailures {
		if st, _ := exchange("web", webSecret, code, webRedirect, oauth2.GenerateVerifier()); st != 400 {
			t.Fatalf("wrong verifier: %d", st)
		}
	}
	if st, m := exchange("web", webSecret, code, webRedirect, v); st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("after %d failures: %d %v", model.MaxCodeFailures, st, m)
	}
	if n := reuses(); n != 0 {
		t.Fatalf("%d code_reuse events for a code ended by failures", n)
	}

	// A second successful presentation is reuse: refused, audited once,
	// and what the first exchange issued is revoked.
	code = f.code(cookie, cfg, v)
	st, first := exchange("web", webSecret, code, webRedirect, v)
	if st != 200 {
		t.Fatalf("first exchange: %d %v", st, first)
	}
	if st, _ := exchange("web", webSecret, code, webRedirect, oauth2.GenerateVerifier()); st != 400 {
		t.Fatalf("a refused presentation of a used code: %d", st)
	}
	if n := reuses(); n != 0 {
		t.Fatalf("a refused presentation of a used code raised %d code_reuse events", n)
	}
	if st, m := exchange("web", webSecret, code, webRedirect, v); st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("reused code: %d %v", st, m)
	}
	if n := reuses(); n != 1 {
		t.Fatalf("%d code_reuse events, want 1", n)
	}
	if f.introspect(first["access_token"].(string))["active"] != false {
		t.Error("access token of a reused code still active")
	}
}
