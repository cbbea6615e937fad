package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/storage/model"
)

// TestFAPI2Profile: with security-profile fapi-2.0 the profile offers only
// private_key_jwt and requires pushed requests in discovery, refuses an
// authorization request that was not pushed and a token request without a
// DPoP proof, and binds what it issues.
func TestFAPI2Profile(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	f := newFlowEnvEdit(t, keySet(t), false, func(cp *config.Profile, cs map[string]*config.Client) {
		cp.SecurityProfile = config.SecurityProfileFAPI2
		cs["fapi-app"] = &config.Client{Profile: "token", TokenEndpointAuthMethod: config.AuthPrivateKeyJWT,
			GrantTypes: []string{config.GrantAuthorizationCode, config.GrantClientCredentials},
			Scopes:     []string{"openid", "a:read"}, RedirectURIs: []string{"https://fapi.example.com/cb"},
			PublicKeys: []string{string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}}
	})
	assertion := func(aud any) string {
		tok := jwt.New()
		now := time.Now()
		for k, v := range map[string]any{"iss": "fapi-app", "sub": "fapi-app", "aud": aud,
			"exp": now.Add(time.Minute), "iat": now, "jti": model.NewID()} {
			_ = tok.Set(k, v)
		}
		b, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, key))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cc := func(aud ...string) string {
		var a any = f.issuer
		if len(aud) > 0 {
			a = aud
		}
		return url.Values{"grant_type": {"client_credentials"}, "client_assertion": {assertion(a)},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}}.Encode()
	}

	resp, m := f.do(httptest.NewRequest(http.MethodGet, "/oauth/v2/.well-known/openid-configuration", nil))
	methods, _ := m["token_endpoint_auth_methods_supported"].([]any)
	if resp.StatusCode != 200 || len(methods) != 1 || methods[0] != "private_key_jwt" || m["require_pushed_authorization_requests"] != true {
		t.Fatalf("discovery: auth methods %v, require PAR %v", methods, m["require_pushed_authorization_requests"])
	}

	// FAPI 2.0: the issuer, alone, is the assertion's audience.
	for _, aud := range [][]string{{f.issuer + "/token"}, {f.issuer, "https://elsewhere.example.com"}} {
		resp, m = f.post("/token", cc(aud...), "")
		if resp.StatusCode != 401 || m["error"] != "invalid_client" {
			t.Fatalf("assertion with aud %v: %d %v", aud, resp.StatusCode, m)
		}
	}
	resp, m = f.post("/token", cc(), "")
	if resp.StatusCode != 400 || m["error"] != "invalid_dpop_proof" {
		t.Fatalf("token without a DPoP proof: %d %v", resp.StatusCode, m)
	}
	proof := newProofKey(t)
	resp, m = f.postDPoP("/token", cc(), "", proof.proof(t, "POST", f.issuer+"/token", "", proofOpts{}))
	if resp.StatusCode != 200 || m["token_type"] != "DPoP" || cnfJKT(claimsOf(t, m["access_token"].(string))) != proof.jkt {
		t.Fatalf("token with a proof: %d %v", resp.StatusCode, m)
	}

	cookie, _ := f.login()
	q := url.Values{"client_id": {"fapi-app"}, "response_type": {"code"}, "redirect_uri": {"https://fapi.example.com/cb"},
		"scope": {"openid"}, "state": {"s"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
		"code_challenge_method": {"S256"}}
	_, loc := f.authorize(cookie, q.Encode())
	if loc == nil || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("code") != "" {
		t.Fatalf("authorize without PAR: %v", loc)
	}
}
