package token

import (
	"crypto/ecdsa"
	"encoding/json"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/jwstest"
	"github.com/keygate/keygate/internal/storage/model"
)

// An access token signed by the profile's own key is refused at
// introspection when its protected header names no alg, another alg or
// none, or carries a crit extension (RFC 7515 §4.1.11, RFC 8725 §3.1).
func TestAccessTokenHeaderRefused(t *testing.T) {
	e := newEnv(t, "https://id.example.com/oauth/v2")
	var key ecdsa.PrivateKey
	if err := e.keys.Active.Private.Raw(&key); err != nil {
		t.Fatal(err)
	}
	kid := e.keys.Active.KID
	claims := func() []byte {
		now := time.Now()
		b, _ := json.Marshal(atClaims{Iss: e.issuer, Sub: "svc", Aud: audience{apiAudience}, Exp: now.Add(time.Minute).Unix(),
			Iat: now.Unix(), Jti: model.NewID(), ClientID: "svc", Scope: "a:read"})
		return b
	}
	if m := e.introspect(jwstest.Forge(t, &key, map[string]any{"alg": "ES256", "kid": kid, "typ": "at+jwt"}, claims())); m["active"] != true {
		t.Fatalf("honest header: %v", m)
	}
	for name, h := range map[string]map[string]any{
		"alg none":     {"alg": "none", "kid": kid, "typ": "at+jwt"},
		"alg HS256":    {"alg": "HS256", "kid": kid, "typ": "at+jwt"},
		"alg missing":  {"kid": kid, "typ": "at+jwt"},
		"crit unknown": {"alg": "ES256", "kid": kid, "typ": "at+jwt", "crit": []string{"urn:example:x"}, "urn:example:x": 1},
		"crit b64":     {"alg": "ES256", "kid": kid, "typ": "at+jwt", "crit": []string{"b64"}, "b64": true},
		"crit empty":   {"alg": "ES256", "kid": kid, "typ": "at+jwt", "crit": []string{}},
	} {
		t.Run(name, func(t *testing.T) {
			if m := e.introspect(jwstest.Forge(t, &key, h, claims())); m["active"] != false {
				t.Fatalf("introspection %v, want inactive", m)
			}
		})
	}
}
