package token

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/storage/model"
)

// exchangeAs posts a token-exchange request as client and returns the
// status and body.
func (f *flowEnv) exchangeAs(client, sec string, params url.Values) (int, map[string]any) {
	f.t.Helper()
	params.Set("grant_type", config.GrantTokenExchange)
	resp, m := f.post("/token", params.Encode(), basicAuth(client, sec))
	return resp.StatusCode, m
}

// ccToken is a client_credentials access token of client.
func (f *flowEnv) ccToken(client, sec string) string {
	f.t.Helper()
	resp, m := f.post("/token", "grant_type=client_credentials", basicAuth(client, sec))
	if resp.StatusCode != 200 {
		f.t.Fatalf("client_credentials for %s: %d %v", client, resp.StatusCode, m)
	}
	return m["access_token"].(string)
}

// jwtClaims decodes a JWT's payload (the signature is introspection's
// business here).
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.40s", tok)
	}
	var m map[string]any
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTokenExchange is RFC 8693 end to end: a user signs in to the
// gateway (the code flow with x/oauth2), and the gateway exchanges the
// user's tokens for tokens to call the billing API.
func TestTokenExchange(t *testing.T) {
	f := newFlowEnv(t)
	cookie, _ := f.login()
	cfg := f.config("gateway", gatewaySecret, "https://gw.example.com/cb")
	cfg.Scopes = []string{"openid", "profile", "a:read"}
	user := f.exchange(cookie, cfg, oauth2.GenerateVerifier())
	userAT, userID := user.AccessToken, user.Extra("id_token").(string)
	gatewayAT := f.ccToken("gateway", gatewaySecret)
	batchAT := f.ccToken("batch", batchSecret) // aud gateway: the gateway may present it
	svcAT := f.ccToken("svc", svcSecret)       // neither issued to the gateway nor for it
	other := f.exchange(cookie, f.config("web", webSecret, webRedirect), oauth2.GenerateVerifier())

	subject := func(tok, typ string) url.Values {
		return url.Values{"subject_token": {tok}, "subject_token_type": {typ}}
	}
	with := func(v url.Values, kv ...string) url.Values {
		out := url.Values{}
		for k, vs := range v {
			out[k] = slices.Clone(vs)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	userSubject := subject(userAT, tokenTypeAccess)

	t.Run("delegation names the actor and is down-scoped to the request", func(t *testing.T) {
		st, m := f.exchangeAs("gateway", gatewaySecret, with(userSubject, "actor_token", gatewayAT, "actor_token_type", tokenTypeAccess,
			"audience", billingAPI, "scope", "a:read"))
		if st != 200 || m["issued_token_type"] != tokenTypeAccess || m["token_type"] != "Bearer" || m["scope"] != "a:read" {
			t.Fatalf("%d %v", st, m)
		}
		in := f.introspect(m["access_token"].(string))
		act, _ := in["act"].(map[string]any)
		if in["active"] != true || in["sub"] != f.user.ID || in["client_id"] != "gateway" || in["aud"] != billingAPI ||
			in["scope"] != "a:read" || act["sub"] != "gateway" || act["act"] != nil {
			t.Fatalf("introspection of the exchanged token: %v", in)
		}
		// The token cannot outlive the one it came from.
		if exp, subExp := jwtClaims(t, m["access_token"].(string))["exp"].(float64), jwtClaims(t, userAT)["exp"].(float64); exp > subExp {
			t.Fatalf("exp %v after the subject token's %v", exp, subExp)
		}
	})

	t.Run("a chain nests the earlier actor", func(t *testing.T) {
		// The gateway calls the delegator for the user, which calls on.
		st, first := f.exchangeAs("gateway", gatewaySecret, with(userSubject, "actor_token", gatewayAT, "actor_token_type", tokenTypeAccess,
			"audience", "delegator"))
		if st != 200 {
			t.Fatalf("%d %v", st, first)
		}
		st, m := f.exchangeAs("delegator", delegatorSecret, with(subject(first["access_token"].(string), tokenTypeAccess),
			"actor_token", f.ccToken("delegator", delegatorSecret), "actor_token_type", tokenTypeJWT))
		if st != 200 {
			t.Fatalf("%d %v", st, m)
		}
		act := jwtClaims(t, m["access_token"].(string))["act"].(map[string]any)
		inner, _ := act["act"].(map[string]any)
		if act["sub"] != "delegator" || inner["sub"] != "gateway" || inner["act"] != nil {
			t.Fatalf("act %v", act)
		}
	})

	t.Run("revoking the subject's grant ends the exchanged token", func(t *testing.T) {
		own := f.exchange(cookie, cfg, oauth2.GenerateVerifier())
		st, m := f.exchangeAs("gateway", gatewaySecret, subject(own.AccessToken, tokenTypeAccess))
		if st != 200 || f.introspect(m["access_token"].(string))["active"] != true {
			t.Fatalf("%d %v", st, m)
		}
		f.revoke(own.RefreshToken, basicAuth("gateway", gatewaySecret), "")
		if in := f.introspect(m["access_token"].(string)); in["active"] != false {
			t.Fatalf("exchanged token still active after its grant was revoked: %v", in)
		}
	})

	t.Run("audience may repeat", func(t *testing.T) {
		st, m := f.exchangeAs("gateway", gatewaySecret, url.Values{"subject_token": {userAT}, "subject_token_type": {tokenTypeAccess},
			"audience": {billingAPI, "delegator"}})
		if st != 200 {
			t.Fatalf("%d %v", st, m)
		}
		if aud, _ := jwtClaims(t, m["access_token"].(string))["aud"].([]any); len(aud) != 2 {
			t.Fatalf("aud %v", aud)
		}
	})

	t.Run("impersonation has no act and keeps the subject's scope", func(t *testing.T) {
		st, m := f.exchangeAs("gateway", gatewaySecret, userSubject)
		if st != 200 {
			t.Fatalf("%d %v", st, m)
		}
		c := jwtClaims(t, m["access_token"].(string))
		if c["act"] != nil || c["sub"] != f.user.ID || m["scope"] != "openid profile a:read" {
			t.Fatalf("claims %v, response %v", c, m)
		}
	})

	t.Run("an ID token issued to the client stands for the sign-in only", func(t *testing.T) {
		st, m := f.exchangeAs("gateway", gatewaySecret, subject(userID, tokenTypeID))
		if st != 200 || jwtClaims(t, m["access_token"].(string))["sub"] != f.user.ID || m["scope"] != "openid" {
			t.Fatalf("%d %v", st, m)
		}
		st, m = f.exchangeAs("gateway", gatewaySecret, with(subject(userID, tokenTypeID), "scope", "a:read"))
		if st != 400 || m["error"] != "invalid_scope" {
			t.Fatalf("an API scope from an ID token: %d %v", st, m)
		}
	})

	revoked := f.exchange(cookie, cfg, oauth2.GenerateVerifier()).AccessToken
	f.revoke(revoked, basicAuth("gateway", gatewaySecret), "")

	for _, tc := range []struct {
		name, client, secret string
		params               url.Values
		status               int
		code, reason         string
	}{
		{"no subject_token_type", "gateway", gatewaySecret, url.Values{"subject_token": {userAT}}, 400, "invalid_request", "subject_token_missing"},
		{"unknown subject_token_type", "gateway", gatewaySecret, subject(userAT, "urn:ietf:params:oauth:token-type:saml2"), 400, "invalid_request", "token_type_unsupported"},
		{"a refresh token is not a subject", "gateway", gatewaySecret, subject(user.RefreshToken, tokenTypeAccess), 400, "invalid_request", "subject_token_invalid"},
		{"garbage subject", "gateway", gatewaySecret, subject("not-a-token", tokenTypeJWT), 400, "invalid_request", "subject_token_invalid"},
		{"revoked subject", "gateway", gatewaySecret, subject(revoked, tokenTypeAccess), 400, "invalid_request", "subject_token_invalid"},
		{"another client's token", "gateway", gatewaySecret, subject(svcAT, tokenTypeAccess), 400, "invalid_request", "subject_token_not_for_client"},
		{"another client's ID token", "gateway", gatewaySecret, subject(other.Extra("id_token").(string), tokenTypeID), 400, "invalid_request", "subject_token_not_for_client"},
		{"an access token is no ID token", "gateway", gatewaySecret, subject(userAT, tokenTypeID), 400, "invalid_request", "subject_token_invalid"},
		{"scope beyond the subject's", "gateway", gatewaySecret, with(userSubject, "scope", "a:write"), 400, "invalid_scope", "scope_exceeds_subject"},
		{"scope beyond the client's", "gateway", gatewaySecret, with(userSubject, "scope", "email"), 400, "invalid_scope", "scope_not_allowed"},
		{"audience not allowed", "gateway", gatewaySecret, with(userSubject, "audience", "https://evil.example.com"), 400, "invalid_target", "audience_not_allowed"},
		{"unsupported requested_token_type", "gateway", gatewaySecret, with(userSubject, "requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token"), 400, "invalid_request", "requested_token_type_unsupported"},
		{"actor_token without its type", "gateway", gatewaySecret, with(userSubject, "actor_token", gatewayAT), 400, "invalid_request", "actor_token_type_missing"},
		{"actor_token_type without a token", "gateway", gatewaySecret, with(userSubject, "actor_token_type", tokenTypeAccess), 400, "invalid_request", "actor_token_missing"},
		{"actor not for the client", "gateway", gatewaySecret, with(userSubject, "actor_token", svcAT, "actor_token_type", tokenTypeAccess), 400, "invalid_request", "actor_token_not_for_client"},
		{"an actor that is not the client", "gateway", gatewaySecret, with(userSubject, "actor_token", batchAT, "actor_token_type", tokenTypeAccess), 400, "invalid_request", "actor_token_not_client"},
		{"a user's ID token is no actor", "gateway", gatewaySecret, with(userSubject, "actor_token", userID, "actor_token_type", tokenTypeID), 400, "invalid_request", "actor_token_not_client"},
		{"an ID token is for its audience only", "delegator", delegatorSecret, subject(userID, tokenTypeID), 400, "invalid_request", "subject_token_not_for_client"},
		{"client without the grant", "web", webSecret, subject(other.AccessToken, tokenTypeAccess), 400, "unauthorized_client", "grant_type_not_allowed"},
		{"repeated subject_token", "gateway", gatewaySecret, url.Values{"subject_token": {userAT, userAT}, "subject_token_type": {tokenTypeAccess}}, 400, "invalid_request", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, m := f.exchangeAs(tc.client, tc.secret, tc.params)
			if st != tc.status || m["error"] != tc.code {
				t.Fatalf("got %d %v, want %d %s", st, m, tc.status, tc.code)
			}
			if tc.reason != "" && !slices.Contains(f.metrics.errors, "token/token/"+tc.code+"/"+tc.reason) {
				t.Fatalf("reason %s not counted: %v", tc.reason, f.metrics.errors)
			}
		})
	}

	t.Run("each client may only do what its policy allows", func(t *testing.T) {
		// The gateway passes the user on to two services: tokens for them.
		forService := func(aud string) string {
			st, m := f.exchangeAs("gateway", gatewaySecret, with(userSubject, "audience", aud))
			if st != 200 {
				t.Fatalf("exchange for %s: %d %v", aud, st, m)
			}
			return m["access_token"].(string)
		}
		toDelegator, toImpersonator := forService("delegator"), forService("impersonator")
		st, m := f.exchangeAs("delegator", delegatorSecret, subject(toDelegator, tokenTypeAccess))
		if st != 400 || m["error"] != "invalid_request" || !slices.Contains(f.metrics.errors, "token/token/invalid_request/impersonation_not_allowed") {
			t.Fatalf("impersonation by a delegation-only client: %d %v", st, m)
		}
		st, m = f.exchangeAs("delegator", delegatorSecret, with(subject(toDelegator, tokenTypeAccess),
			"actor_token", f.ccToken("delegator", delegatorSecret), "actor_token_type", tokenTypeAccess))
		if st != 200 || jwtClaims(t, m["access_token"].(string))["act"].(map[string]any)["sub"] != "delegator" {
			t.Fatalf("delegation by the delegation-only client: %d %v", st, m)
		}
		st, m = f.exchangeAs("impersonator", impersonatorSecret, with(subject(toImpersonator, tokenTypeAccess),
			"actor_token", gatewayAT, "actor_token_type", tokenTypeAccess))
		if st != 400 || m["error"] != "invalid_request" || !slices.Contains(f.metrics.errors, "token/token/invalid_request/delegation_not_allowed") {
			t.Fatalf("delegation by an impersonation-only client: %d %v", st, m)
		}
		if st, m = f.exchangeAs("impersonator", impersonatorSecret, subject(toImpersonator, tokenTypeAccess)); st != 200 {
			t.Fatalf("impersonation by the impersonation-only client: %d %v", st, m)
		}
	})

	t.Run("an expired subject is refused", func(t *testing.T) {
		f.offset.Store(int64(time.Hour))
		defer f.offset.Store(0)
		st, m := f.exchangeAs("gateway", gatewaySecret, userSubject)
		if st != 400 || m["error"] != "invalid_request" {
			t.Fatalf("%d %v", st, m)
		}
	})

	t.Run("discovery lists the grant and every exchange is audited", func(t *testing.T) {
		resp, m := f.do(httptest.NewRequest(http.MethodGet, "/oauth/v2/.well-known/openid-configuration", nil))
		if resp.StatusCode != 200 || !slices.Contains(m["grant_types_supported"].([]any), any(config.GrantTokenExchange)) {
			t.Fatalf("discovery grant types: %v", m["grant_types_supported"])
		}
		evs, err := f.store.Audit().List(context.Background(), model.AuditQuery{Type: audit.TokenExchange})
		if err != nil {
			t.Fatal(err)
		}
		var deleg, imp int
		for _, ev := range evs {
			if ev.Subject != f.user.ID || !slices.Contains([]string{"gateway", "delegator", "impersonator"}, ev.ClientID) {
				t.Fatalf("event %+v", ev)
			}
			if ev.Details["actor"] != nil {
				deleg++
			} else if ev.Details["impersonation"] == true {
				imp++
			}
		}
		// Only the exchanges that succeeded, each once.
		if deleg != 4 || imp != 7 {
			t.Fatalf("%d delegation and %d impersonation events: %+v", deleg, imp, evs)
		}
	})
}
