package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"golang.org/x/oauth2"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/secret"
	"github.com/keygate/keygate/internal/storage/model"
)

// proofKey is a client's DPoP key.
type proofKey struct {
	priv jwk.Key
	pub  jwk.Key
	jkt  string
}

func newProofKey(t *testing.T) *proofKey {
	t.Helper()
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwk.FromRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &proofKey{priv: priv, pub: pub, jkt: base64.RawURLEncoding.EncodeToString(tp)}
}

// proofOpts change a proof from the valid one for a request.
type proofOpts struct {
	claims  map[string]any // set (nil value: delete)
	typ     string         // "" = dpop+jwt
	jwk     jwk.Key        // nil = the key's public JWK
	alg     jwa.SignatureAlgorithm
	signKey any // nil = the key's private key
}

// proof signs a DPoP proof for htm and htu, with ath of token if given.
func (k *proofKey) proof(t *testing.T, htm, htu, token string, o proofOpts) string {
	t.Helper()
	claims := map[string]any{"jti": model.NewID(), "htm": htm, "htu": htu, "iat": time.Now().Unix()}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	for n, v := range o.claims {
		if v == nil {
			delete(claims, n)
		} else {
			claims[n] = v
		}
	}
	payload, _ := json.Marshal(claims)
	h := jws.NewHeaders()
	typ := o.typ
	if typ == "" {
		typ = typDPoP
	}
	_ = h.Set(jws.TypeKey, typ)
	key := o.jwk
	if key == nil {
		key = k.pub
	}
	_ = h.Set(jws.JWKKey, key)
	alg, signKey := o.alg, o.signKey
	if alg == "" {
		alg = jwa.ES256
	}
	if signKey == nil {
		signKey = k.priv
	}
	b, err := jws.Sign(payload, jws.WithKey(alg, signKey, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// noneProof is an unsigned proof (alg none), which jwx will not make.
func (k *proofKey) noneProof(t *testing.T, htu string) string {
	jwkJSON, _ := json.Marshal(k.pub)
	hdr := `{"typ":"dpop+jwt","alg":"none","jwk":` + string(jwkJSON) + `}`
	claims, _ := json.Marshal(map[string]any{"jti": model.NewID(), "htm": "POST", "htu": htu, "iat": time.Now().Unix()})
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(hdr)) + "." + enc(claims) + "."
}

// postDPoP posts a form with the given DPoP headers (none, one or more).
func (f *flowEnv) postDPoP(path, body, authz string, proofs ...string) (*http.Response, map[string]any) {
	f.t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/oauth/v2"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	return f.do(req)
}

// userinfoDPoP calls userinfo with GET, an Authorization header and
// proofs.
func (f *flowEnv) userinfoDPoP(authz string, proofs ...string) (*http.Response, map[string]any) {
	f.t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/oauth/v2/userinfo", nil)
	req.Header.Set("Authorization", authz)
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	return f.do(req)
}

// refused checks an OAuth error response and the reason counted for it.
func (f *flowEnv) refused(what string, resp *http.Response, m map[string]any, status int, code, reason string) {
	f.t.Helper()
	if resp.StatusCode != status || m["error"] != code {
		f.t.Errorf("%s: %d %v, want %d %s", what, resp.StatusCode, m, status, code)
		return
	}
	f.metrics.mu.Lock()
	defer f.metrics.mu.Unlock()
	if n := len(f.metrics.errors); n == 0 || !strings.HasSuffix(f.metrics.errors[n-1], "/"+code+"/"+reason) {
		f.t.Errorf("%s: reason %v, want %s", what, f.metrics.errors[max(0, n-1):], reason)
	}
}

// claimsOf reads a JWT's claims without verifying it (the test verifies
// keys elsewhere).
func claimsOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func cnfJKT(m map[string]any) string {
	cnf, _ := m["cnf"].(map[string]any)
	s, _ := cnf["jkt"].(string)
	return s
}

func newDPoPEnv(t *testing.T, nonce bool) *flowEnv {
	return newFlowEnvEdit(t, keySet(t), false, func(cp *config.Profile, cs map[string]*config.Client) {
		cp.DPoP.Nonce = nonce
		cc := []string{config.GrantClientCredentials}
		for name, mode := range map[string]string{"svc-required": config.DPoPRequired, "svc-off": config.DPoPOff} {
			cs[name] = &config.Client{Profile: "token", Secret: secret.New(svcSecret), TokenEndpointAuthMethod: config.AuthSecretBasic,
				GrantTypes: cc, Scopes: []string{"a:read"}, DPoP: mode}
		}
		cs["svc-opaque"] = &config.Client{Profile: "token", Secret: secret.New(svcSecret), TokenEndpointAuthMethod: config.AuthSecretBasic,
			GrantTypes: cc, Scopes: []string{"a:read"}, AccessTokens: config.AccessTokenPolicy{Format: config.FormatOpaque}}
	})
}

// TestDPoPTokenEndpoint is RFC 9449 §4.3 and §5 at the token endpoint,
// one refused proof per row, each of which changes nothing.
func TestDPoPTokenEndpoint(t *testing.T) {
	f := newDPoPEnv(t, false)
	k, other := newProofKey(t), newProofKey(t)
	htu := f.issuer + "/token"
	cc := "grant_type=client_credentials"
	svc := basicAuth("svc", svcSecret)

	// A valid proof: a DPoP token bound to the key, at introspection too.
	resp, m := f.postDPoP("/token", cc, svc, k.proof(t, "POST", htu, "", proofOpts{}))
	if resp.StatusCode != 200 || m["token_type"] != "DPoP" {
		t.Fatalf("valid proof: %d %v", resp.StatusCode, m)
	}
	at := m["access_token"].(string)
	if got := cnfJKT(claimsOf(t, at)); got != k.jkt {
		t.Errorf("cnf.jkt = %q, want %q", got, k.jkt)
	}
	if in := f.introspect(at); in["active"] != true || in["token_type"] != "DPoP" || cnfJKT(in) != k.jkt {
		t.Errorf("introspection of a bound token: %v", in)
	}
	// Opaque tokens store the binding.
	resp, m = f.postDPoP("/token", cc, basicAuth("svc-opaque", svcSecret), k.proof(t, "POST", htu, "", proofOpts{}))
	if resp.StatusCode != 200 || m["token_type"] != "DPoP" {
		t.Fatalf("opaque: %d %v", resp.StatusCode, m)
	}
	if in := f.introspect(m["access_token"].(string)); in["token_type"] != "DPoP" || cnfJKT(in) != k.jkt {
		t.Errorf("introspection of a bound opaque token: %v", in)
	}
	// Without a proof: a bearer token, as before.
	resp, m = f.postDPoP("/token", cc, svc)
	if resp.StatusCode != 200 || m["token_type"] != "Bearer" || claimsOf(t, m["access_token"].(string))["cnf"] != nil {
		t.Fatalf("no proof: %d %v", resp.StatusCode, m)
	}
	// The htu is compared normalised (RFC 9449 §4.3: RFC 3986 §6.2.2, §6.2.3).
	u, _ := url.Parse(htu)
	loud := "HTTP://" + strings.ToUpper(u.Hostname()) + ":" + u.Port() + u.Path + "?q=1#f"
	if resp, m := f.postDPoP("/token", cc, svc, k.proof(t, "POST", loud, "", proofOpts{})); resp.StatusCode != 200 {
		t.Errorf("normalised htu: %d %v", resp.StatusCode, m)
	}

	replayed := k.proof(t, "POST", htu, "", proofOpts{})
	if resp, m := f.postDPoP("/token", cc, svc, replayed); resp.StatusCode != 200 {
		t.Fatalf("first use: %d %v", resp.StatusCode, m)
	}
	privJWK := k.priv
	hsKey := []byte("0123456789abcdef0123456789abcdef")
	now := time.Now().Unix()
	cases := []struct {
		name   string
		authz  string
		proofs []string
		code   string
		reason string
	}{
		{"replayed jti", svc, []string{replayed}, "invalid_dpop_proof", "dpop_replayed"},
		{"wrong htu", svc, []string{k.proof(t, "POST", f.issuer+"/par", "", proofOpts{})}, "invalid_dpop_proof", "dpop_htu_mismatch"},
		{"other host htu", svc, []string{k.proof(t, "POST", "https://evil.example.com/oauth/v2/token", "", proofOpts{})}, "invalid_dpop_proof", "dpop_htu_mismatch"},
		{"wrong htm", svc, []string{k.proof(t, "GET", htu, "", proofOpts{})}, "invalid_dpop_proof", "dpop_htm_mismatch"},
		{"old iat", svc, []string{k.proof(t, "POST", htu, "", proofOpts{claims: map[string]any{"iat": now - 120}})}, "invalid_dpop_proof", "dpop_iat"},
		{"future iat", svc, []string{k.proof(t, "POST", htu, "", proofOpts{claims: map[string]any{"iat": now + 120}})}, "invalid_dpop_proof", "dpop_iat"},
		{"no iat", svc, []string{k.proof(t, "POST", htu, "", proofOpts{claims: map[string]any{"iat": nil}})}, "invalid_dpop_proof", "dpop_iat"},
		{"no jti", svc, []string{k.proof(t, "POST", htu, "", proofOpts{claims: map[string]any{"jti": nil}})}, "invalid_dpop_proof", "dpop_proof_invalid"},
		{"signed by another key", svc, []string{k.proof(t, "POST", htu, "", proofOpts{signKey: other.priv})}, "invalid_dpop_proof", "dpop_proof_invalid"},
		{"alg none", svc, []string{k.noneProof(t, htu)}, "invalid_dpop_proof", "dpop_proof_invalid"},
		{"alg HS256", svc, []string{k.proof(t, "POST", htu, "", proofOpts{alg: jwa.HS256, signKey: hsKey})}, "invalid_dpop_proof", "dpop_proof_invalid"},
		{"private key in jwk", svc, []string{k.proof(t, "POST", htu, "", proofOpts{jwk: privJWK})}, "invalid_dpop_proof", "dpop_proof_invalid"},
		{"typ JWT", svc, []string{k.proof(t, "POST", htu, "", proofOpts{typ: "JWT"})}, "invalid_dpop_proof", "dpop_proof_invalid"},
		{"two proofs", svc, []string{k.proof(t, "POST", htu, "", proofOpts{}), k.proof(t, "POST", htu, "", proofOpts{})}, "invalid_dpop_proof", "dpop_proof_invalid"},
		{"not a JWS", svc, []string{"a.b.c"}, "invalid_dpop_proof", "dpop_proof_invalid"},
		{"required client without proof", basicAuth("svc-required", svcSecret), nil, "invalid_dpop_proof", "dpop_required"},
		{"off client with proof", basicAuth("svc-off", svcSecret), []string{k.proof(t, "POST", htu, "", proofOpts{})}, "invalid_request", "dpop_off"},
	}
	for _, tc := range cases {
		before := f.count("dpop_proofs")
		resp, m := f.postDPoP("/token", cc, tc.authz, tc.proofs...)
		f.refused(tc.name, resp, m, 400, tc.code, tc.reason)
		if tc.code == "invalid_dpop_proof" && m["error_description"] == "" {
			t.Errorf("%s: no error_description", tc.name)
		}
		if after := f.count("dpop_proofs"); after != before {
			t.Errorf("%s: %d proof ids recorded by a refused proof", tc.name, after-before)
		}
	}
	// The size bound holds before any parsing (the listener's header
	// buffer is smaller still).
	if _, e := f.p.dpop.check(f.ctx, strings.Repeat("a", maxProofLen+1), "POST", f.p.htuToken, ""); e == nil ||
		e.Reason != "dpop_proof_invalid" || !strings.Contains(e.Description, "too large") {
		t.Errorf("oversized proof: %v", e)
	}
	// The required client gets its token with a proof.
	if resp, m := f.postDPoP("/token", cc, basicAuth("svc-required", svcSecret), k.proof(t, "POST", htu, "", proofOpts{})); resp.StatusCode != 200 || m["token_type"] != "DPoP" {
		t.Errorf("required client with proof: %d %v", resp.StatusCode, m)
	}
	// Discovery names the proof algorithms.
	md := discovery(t, f.app, "/oauth/v2")
	if algs, _ := md["dpop_signing_alg_values_supported"].([]any); len(algs) != 4 || slices.Contains(algs, any("none")) {
		t.Errorf("dpop_signing_alg_values_supported = %v", md["dpop_signing_alg_values_supported"])
	}
}

// TestDPoPUserFlow: dpop_jkt binds a code (RFC 9449 §10), a public
// client's tokens are bound with its refresh token (§5), userinfo takes
// the bound token only as DPoP with a proof of the key and the token's ath
// (§7), and unbound tokens keep working with Bearer.
func TestDPoPUserFlow(t *testing.T) {
	f := newDPoPEnv(t, false)
	k, other := newProofKey(t), newProofKey(t)
	htu, uiHTU := f.issuer+"/token", f.issuer+"/userinfo"
	cookie, _ := f.login()
	cfg := f.config("spa", "", spaRedirect)
	v := oauth2.GenerateVerifier()
	code := f.code(cookie, cfg, v, oauth2.SetAuthURLParam("dpop_jkt", k.jkt))
	exchange := "grant_type=authorization_code&client_id=spa&redirect_uri=" + url.QueryEscape(spaRedirect) +
		"&code_verifier=" + v + "&code=" + url.QueryEscape(code)

	resp, m := f.postDPoP("/token", exchange, "")
	f.refused("dpop_jkt code without proof", resp, m, 400, "invalid_dpop_proof", "dpop_required")
	resp, m = f.postDPoP("/token", exchange, "", other.proof(t, "POST", htu, "", proofOpts{}))
	f.refused("dpop_jkt code with another key", resp, m, 400, "invalid_dpop_proof", "dpop_key_mismatch")
	resp, m = f.postDPoP("/token", exchange, "", k.proof(t, "POST", htu, "", proofOpts{}))
	if resp.StatusCode != 200 || m["token_type"] != "DPoP" || m["refresh_token"] == nil {
		t.Fatalf("exchange with the dpop_jkt key: %d %v", resp.StatusCode, m)
	}
	at, rt := m["access_token"].(string), m["refresh_token"].(string)
	if cnfJKT(claimsOf(t, at)) != k.jkt {
		t.Errorf("access token not bound to the key")
	}

	// Userinfo.
	resp, m = f.userinfoDPoP("Bearer " + at)
	f.refused("bound token as Bearer", resp, m, 401, "invalid_token", "dpop_bound_token_as_bearer")
	if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, `DPoP algs="ES256 EdDSA RS256 PS256"`) || !strings.Contains(ch, `error="invalid_token"`) {
		t.Errorf("challenge %q", ch)
	}
	resp, m = f.userinfoDPoP("DPoP " + at)
	f.refused("DPoP without proof", resp, m, 401, "invalid_dpop_proof", "dpop_proof_missing")
	resp, m = f.userinfoDPoP("DPoP "+at, k.proof(t, "GET", uiHTU, "", proofOpts{}))
	f.refused("missing ath", resp, m, 401, "invalid_dpop_proof", "dpop_ath")
	resp, m = f.userinfoDPoP("DPoP "+at, k.proof(t, "GET", uiHTU, "another token", proofOpts{}))
	f.refused("wrong ath", resp, m, 401, "invalid_dpop_proof", "dpop_ath")
	if ch := resp.Header.Get("WWW-Authenticate"); ch != `DPoP algs="ES256 EdDSA RS256 PS256", error="invalid_dpop_proof"` {
		t.Errorf("challenge %q", ch)
	}
	resp, m = f.userinfoDPoP("DPoP "+at, other.proof(t, "GET", uiHTU, at, proofOpts{}))
	f.refused("proof of another key", resp, m, 401, "invalid_dpop_proof", "dpop_key_mismatch")
	resp, m = f.userinfoDPoP("DPoP "+at, k.proof(t, "POST", uiHTU, at, proofOpts{}))
	f.refused("wrong htm at userinfo", resp, m, 401, "invalid_dpop_proof", "dpop_htm_mismatch")
	good := k.proof(t, "GET", uiHTU, at, proofOpts{})
	resp, m = f.userinfoDPoP("DPoP "+at, good)
	if resp.StatusCode != 200 || m["sub"] != f.user.ID {
		t.Fatalf("userinfo with DPoP: %d %v", resp.StatusCode, m)
	}
	resp, m = f.userinfoDPoP("DPoP "+at, good)
	f.refused("replayed proof at userinfo", resp, m, 401, "invalid_dpop_proof", "dpop_replayed")

	// The public client's refresh token is bound to the key.
	refresh := "grant_type=refresh_token&client_id=spa&refresh_token=" + url.QueryEscape(rt)
	resp, m = f.postDPoP("/token", refresh, "")
	f.refused("bound refresh without proof", resp, m, 400, "invalid_dpop_proof", "dpop_required")
	resp, m = f.postDPoP("/token", refresh, "", other.proof(t, "POST", htu, "", proofOpts{}))
	f.refused("bound refresh with another key", resp, m, 400, "invalid_dpop_proof", "dpop_key_mismatch")
	resp, m = f.postDPoP("/token", refresh, "", k.proof(t, "POST", htu, "", proofOpts{}))
	if resp.StatusCode != 200 || m["token_type"] != "DPoP" {
		t.Fatalf("refresh with the key: %d %v", resp.StatusCode, m)
	}
	rt2 := m["refresh_token"].(string)
	resp, m = f.postDPoP("/token", "grant_type=refresh_token&client_id=spa&refresh_token="+url.QueryEscape(rt2), "",
		other.proof(t, "POST", htu, "", proofOpts{}))
	f.refused("rotated refresh stays bound", resp, m, 400, "invalid_dpop_proof", "dpop_key_mismatch")

	// A confidential client's refresh token is not bound (§5): its
	// access tokens are, while it sends proofs.
	wcfg := f.config("web", webSecret, webRedirect)
	wv := oauth2.GenerateVerifier()
	wcode := f.code(cookie, wcfg, wv)
	resp, m = f.postDPoP("/token", "grant_type=authorization_code&redirect_uri="+url.QueryEscape(webRedirect)+"&code_verifier="+wv+
		"&code="+url.QueryEscape(wcode), basicAuth("web", webSecret), k.proof(t, "POST", htu, "", proofOpts{}))
	if resp.StatusCode != 200 || m["token_type"] != "DPoP" {
		t.Fatalf("confidential exchange with proof: %d %v", resp.StatusCode, m)
	}
	resp, m = f.postDPoP("/token", "grant_type=refresh_token&refresh_token="+url.QueryEscape(m["refresh_token"].(string)), basicAuth("web", webSecret))
	if resp.StatusCode != 200 || m["token_type"] != "Bearer" {
		t.Fatalf("confidential refresh without proof: %d %v", resp.StatusCode, m)
	}
	// An unbound token keeps working with Bearer, and not with DPoP.
	bearer := m["access_token"].(string)
	if resp, m := f.userinfoDPoP("Bearer " + bearer); resp.StatusCode != 200 {
		t.Errorf("unbound token as Bearer: %d %v", resp.StatusCode, m)
	}
	resp, m = f.userinfoDPoP("DPoP "+bearer, k.proof(t, "GET", uiHTU, bearer, proofOpts{}))
	f.refused("unbound token as DPoP", resp, m, 401, "invalid_token", "dpop_unbound_token")
	// A bound token is no bearer token for other resources either.
	if _, ok, err := f.p.Authorize(f.ctx, at, nil); ok || err != nil {
		t.Errorf("Authorize of a bound token: %v %v", ok, err)
	}
}

// TestDPoPNonce: with dpop.nonce the server demands its nonce (RFC 9449
// §8, §9): use_dpop_nonce with a DPoP-Nonce header, then success with it,
// on any node holding the same key (no shared state); the previous
// window's nonce still works, an older one does not.
func TestDPoPNonce(t *testing.T) {
	f := newDPoPEnv(t, true)
	k := newProofKey(t)
	htu := f.issuer + "/token"
	cc := "grant_type=client_credentials"
	svc := basicAuth("svc", svcSecret)

	resp, m := f.postDPoP("/token", cc, svc, k.proof(t, "POST", htu, "", proofOpts{}))
	f.refused("no nonce", resp, m, 400, "use_dpop_nonce", "dpop_nonce")
	nonce := resp.Header.Get("DPoP-Nonce")
	if nonce == "" {
		t.Fatal("no DPoP-Nonce header with use_dpop_nonce")
	}
	resp, m = f.postDPoP("/token", cc, svc, k.proof(t, "POST", htu, "", proofOpts{claims: map[string]any{"nonce": "made-up"}}))
	f.refused("unknown nonce", resp, m, 400, "use_dpop_nonce", "dpop_nonce")
	resp, m = f.postDPoP("/token", cc, svc, k.proof(t, "POST", htu, "", proofOpts{claims: map[string]any{"nonce": nonce}}))
	if resp.StatusCode != 200 || m["token_type"] != "DPoP" || resp.Header.Get("DPoP-Nonce") == "" {
		t.Fatalf("with the nonce: %d %v %q", resp.StatusCode, m, resp.Header.Get("DPoP-Nonce"))
	}
	// Without a proof nothing changes for a client that uses none.
	if resp, _ := f.postDPoP("/token", cc, svc); resp.StatusCode != 200 || resp.Header.Get("DPoP-Nonce") != "" {
		t.Errorf("no proof: %d, DPoP-Nonce %q", resp.StatusCode, resp.Header.Get("DPoP-Nonce"))
	}
	// Userinfo demands it with 401 and a DPoP challenge.
	cookie, _ := f.login()
	cfg := f.config("spa", "", spaRedirect)
	v := oauth2.GenerateVerifier()
	code := f.code(cookie, cfg, v)
	resp, m = f.postDPoP("/token", "grant_type=authorization_code&client_id=spa&redirect_uri="+url.QueryEscape(spaRedirect)+
		"&code_verifier="+v+"&code="+url.QueryEscape(code), "", k.proof(t, "POST", htu, "", proofOpts{claims: map[string]any{"nonce": nonce}}))
	if resp.StatusCode != 200 {
		t.Fatalf("exchange: %d %v", resp.StatusCode, m)
	}
	at := m["access_token"].(string)
	uiHTU := f.issuer + "/userinfo"
	resp, m = f.userinfoDPoP("DPoP "+at, k.proof(t, "GET", uiHTU, at, proofOpts{}))
	f.refused("userinfo without nonce", resp, m, 401, "use_dpop_nonce", "dpop_nonce")
	if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="use_dpop_nonce"`) || !strings.HasPrefix(ch, "DPoP ") ||
		resp.Header.Get("DPoP-Nonce") == "" {
		t.Errorf("userinfo nonce challenge %q, nonce %q", ch, resp.Header.Get("DPoP-Nonce"))
	}
	resp, m = f.userinfoDPoP("DPoP "+at, k.proof(t, "GET", uiHTU, at, proofOpts{claims: map[string]any{"nonce": nonce}}))
	if resp.StatusCode != 200 {
		t.Fatalf("userinfo with the nonce: %d %v", resp.StatusCode, m)
	}
	// Windows: the next window accepts this nonce, the one after does not.
	for _, step := range []struct {
		ahead time.Duration
		ok    bool
	}{{nonceWindow, true}, {2*nonceWindow + time.Second, false}} {
		f.offset.Store(int64(step.ahead))
		iat := time.Now().Add(step.ahead).Unix()
		resp, m := f.postDPoP("/token", cc, svc, k.proof(t, "POST", htu, "", proofOpts{claims: map[string]any{"nonce": nonce, "iat": iat}}))
		if got := resp.StatusCode == 200; got != step.ok {
			t.Errorf("nonce %s later: %d %v", step.ahead, resp.StatusCode, m)
		}
	}
	f.offset.Store(0)
}

// TestDPoPPushed: a proof sent with a pushed request binds the code like
// dpop_jkt (RFC 9449 §10.1), and both must then agree.
func TestDPoPPushed(t *testing.T) {
	f := newDPoPEnv(t, false)
	k, other := newProofKey(t), newProofKey(t)
	parHTU := f.issuer + "/par"
	v := oauth2.GenerateVerifier()
	params := pushedParams("spa", spaRedirect, "st-1", v)
	params.Set("dpop_jkt", other.jkt)
	resp, m := f.postDPoP("/par", params.Encode(), "", k.proof(t, "POST", parHTU, "", proofOpts{}))
	f.refused("dpop_jkt of another key than the proof's", resp, m, 400, "invalid_dpop_proof", "dpop_key_mismatch")
	params.Del("dpop_jkt")
	resp, m = f.postDPoP("/par", params.Encode(), "", k.proof(t, "POST", f.issuer+"/token", "", proofOpts{}))
	f.refused("proof for the token endpoint at par", resp, m, 400, "invalid_dpop_proof", "dpop_htu_mismatch")
	resp, m = f.postDPoP("/par", params.Encode(), "", k.proof(t, "POST", parHTU, "", proofOpts{}))
	if resp.StatusCode != 201 {
		t.Fatalf("push with proof: %d %v", resp.StatusCode, m)
	}
	cookie, _ := f.login()
	ar, loc := f.authorize(cookie, url.Values{"client_id": {"spa"}, "request_uri": {m["request_uri"].(string)}}.Encode())
	if ar.StatusCode != http.StatusFound || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: %d %v", ar.StatusCode, loc)
	}
	exchange := "grant_type=authorization_code&client_id=spa&redirect_uri=" + url.QueryEscape(spaRedirect) +
		"&code_verifier=" + v + "&code=" + url.QueryEscape(loc.Query().Get("code"))
	resp, m = f.postDPoP("/token", exchange, "", other.proof(t, "POST", f.issuer+"/token", "", proofOpts{}))
	f.refused("pushed-bound code with another key", resp, m, 400, "invalid_dpop_proof", "dpop_key_mismatch")
	resp, m = f.postDPoP("/token", exchange, "", k.proof(t, "POST", f.issuer+"/token", "", proofOpts{}))
	if resp.StatusCode != 200 || m["token_type"] != "DPoP" {
		t.Fatalf("exchange: %d %v", resp.StatusCode, m)
	}
	// A malformed dpop_jkt is refused at the push.
	params.Set("dpop_jkt", "short")
	resp, m = f.postDPoP("/par", params.Encode(), "")
	f.refused("malformed dpop_jkt", resp, m, 400, "invalid_request", "dpop_jkt_malformed")
}
