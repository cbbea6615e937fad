package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/keygate/keygate/internal/config"
)

// partner is another issuer: its keys at /jwks on a loopback server.
type partner struct {
	issuer  string
	keys    []jwk.Key // private; all published
	fetches atomic.Int32
}

func newPartner(t *testing.T) *partner {
	t.Helper()
	p := &partner{}
	p.rotate(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		set := jwk.NewSet()
		for _, k := range p.keys {
			pub, _ := jwk.PublicKeyOf(k)
			_ = set.AddKey(pub)
		}
		// A symmetric key in the set must never verify anything.
		oct, _ := jwk.FromRaw([]byte("a-published-secret-is-no-secret-at-all"))
		_ = oct.Set(jwk.KeyIDKey, "oct")
		_ = set.AddKey(oct)
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(srv.Close)
	p.issuer = srv.URL
	return p
}

// rotate adds a new signing key (the newest signs).
func (p *partner) rotate(t *testing.T) {
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := jwk.FromRaw(raw)
	_ = k.Set(jwk.KeyIDKey, time.Now().Format(time.RFC3339Nano))
	p.keys = append(p.keys, k)
}

func (p *partner) token(t *testing.T, claims map[string]any) string {
	t.Helper()
	tok := jwt.New()
	now := time.Now()
	for k, v := range map[string]any{"iss": p.issuer, "sub": "partner-123", "exp": now.Add(5 * time.Minute), "iat": now} {
		_ = tok.Set(k, v)
	}
	for k, v := range claims {
		if v == nil {
			_ = tok.Remove(k)
		} else {
			_ = tok.Set(k, v)
		}
	}
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, p.keys[len(p.keys)-1]))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTokenExchangeTrustedIssuer: a JWT of a trusted issuer, meant for this
// issuer, is exchanged for a token of the local user its username claim
// names; everything else about it is refused.
func TestTokenExchangeTrustedIssuer(t *testing.T) {
	pa := newPartner(t)
	f := newFlowEnvEdit(t, keySet(t), false, func(cp *config.Profile, cs map[string]*config.Client) {
		cp.TokenExchange.TrustedIssuers = map[string]*config.TrustedIssuer{"partner": {Issuer: pa.issuer, JWKSURI: pa.issuer + "/jwks"}}
		cs["gateway"].TokenExchange.TrustedIssuers = []string{"partner"}
	})
	good := func() map[string]any {
		return map[string]any{"aud": f.issuer, "preferred_username": f.user.Username, "scope": "openid a:read"}
	}
	with := func(k string, v any) map[string]any { m := good(); m[k] = v; return m }
	exchange := func(client, secret, tok string) (int, map[string]any) {
		return f.exchangeAs(client, secret, url.Values{"subject_token": {tok}, "subject_token_type": {tokenTypeJWT}})
	}

	st, m := exchange("gateway", gatewaySecret, pa.token(t, good()))
	if st != 200 || m["scope"] != "openid a:read" {
		t.Fatalf("%d %v", st, m)
	}
	if c := jwtClaims(t, m["access_token"].(string)); c["sub"] != f.user.ID || c["iss"] != f.issuer || c["client_id"] != "gateway" {
		t.Fatalf("claims %v", c)
	}

	// A key the partner added since: one refetch finds it, once the keys
	// are older than the refetch limit (an unknown kid cannot make the
	// server fetch on every request).
	before := pa.fetches.Load()
	pa.rotate(t)
	if st, _ := exchange("gateway", gatewaySecret, pa.token(t, good())); st != 400 || pa.fetches.Load() != before {
		t.Fatalf("a new key within the refetch limit: %d, %d fetches", st, pa.fetches.Load()-before)
	}
	f.offset.Store(int64(jwksRefetchAfter + time.Second))
	defer f.offset.Store(0)
	if st, m := exchange("gateway", gatewaySecret, pa.token(t, good())); st != 200 {
		t.Fatalf("after the partner's key rotation: %d %v", st, m)
	}
	if pa.fetches.Load() != before+1 {
		t.Errorf("%d fetches for a rotation, want 1", pa.fetches.Load()-before)
	}

	hs, _ := jws.Sign([]byte(`{"iss":"`+pa.issuer+`","aud":"`+f.issuer+`","preferred_username":"alice","exp":9999999999}`),
		jws.WithKey(jwa.HS256, []byte("a-published-secret-is-no-secret-at-all"), jws.WithProtectedHeaders(func() jws.Headers {
			h := jws.NewHeaders()
			_ = h.Set(jws.KeyIDKey, "oct")
			return h
		}())))
	for _, tc := range []struct {
		name, client, secret, token, reason string
	}{
		{"not meant for this issuer", "gateway", gatewaySecret, pa.token(t, with("aud", "https://elsewhere.example.com")), "subject_token_invalid"},
		{"expired", "gateway", gatewaySecret, pa.token(t, with("exp", time.Now().Add(-time.Hour))), "subject_token_invalid"},
		{"no exp", "gateway", gatewaySecret, pa.token(t, with("exp", nil)), "subject_token_invalid"},
		{"signed with the published symmetric key", "gateway", gatewaySecret, string(hs), "subject_token_invalid"},
		{"no local user", "gateway", gatewaySecret, pa.token(t, with("preferred_username", "nobody")), "subject_token_no_user"},
		{"a client that may not", "delegator", delegatorSecret, pa.token(t, good()), "subject_token_untrusted_issuer"},
		{"an issuer nobody trusts", "gateway", gatewaySecret, func() string { m := good(); m["iss"] = "https://rogue.example.com"; return pa.token(t, m) }(), "subject_token_untrusted_issuer"},
		{"a scope beyond the token's", "gateway", gatewaySecret, pa.token(t, with("scope", "openid")), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token
			params := url.Values{"subject_token": {tok}, "subject_token_type": {tokenTypeJWT}}
			if tc.reason == "" {
				params.Set("scope", "a:read")
			}
			st, m := f.exchangeAs(tc.client, tc.secret, params)
			if st != 400 {
				t.Fatalf("%d %v", st, m)
			}
			if tc.reason != "" && (m["error"] != "invalid_request" || !containsString(f.metrics.errors, "token/token/invalid_request/"+tc.reason)) {
				t.Fatalf("%v; want reason %s in %v", m, tc.reason, f.metrics.errors)
			}
		})
	}
}
