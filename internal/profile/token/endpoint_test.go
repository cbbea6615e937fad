package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/keygate/keygate/internal/clientauth"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/secret"
	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/testkit"
)

const (
	svcSecret    = "svc-secret-0123456789abcdef"
	opaqueSecret = "opaque-secret-0123456789abcdef"
	codeSecret   = "code-secret-0123456789abcdef"
	apiAudience  = "https://api.example.com"
	rsSecret     = "rs-secret-0123456789abcdef" // the resource server that may introspect every token
)

// recorder is a fake Metrics.
type recorder struct {
	mu     sync.Mutex
	issued []string
	errors []string
}

func (r *recorder) TokenIssued(profile, grant string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.issued = append(r.issued, profile+"/"+grant)
}

func (r *recorder) AuditEvent(string) {}

func (r *recorder) OAuthError(profile, endpoint, code, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, profile+"/"+endpoint+"/"+code+"/"+reason)
}

type env struct {
	t       *testing.T
	p       *Profile
	app     *fiber.App
	store   model.Store
	dbPath  string
	metrics *recorder
	offset  *atomic.Int64 // clock offset
	jwtKey  *ecdsa.PrivateKey
	issuer  string
	snap    *config.Snapshot
	cp      *config.Profile
	keys    *keys.Set
}

// setStore replaces the profile's store everywhere New handed it out, as
// a profile built with that store would have it.
func (p *Profile) setStore(s model.Store) {
	p.store, p.issue.store, p.families.store, p.dpop.store = s, s, s, s
	if g, ok := p.grants[config.GrantAuthorizationCode].(*authorizationCode); ok {
		g.store = s // shared with the refresh grant
	}
}

func newEnv(t testing.TB, issuer string) *env {
	t.Helper()
	return newEnvKeys(t, issuer, keySet(t))
}

// newEnvKeys is newEnv with the profile's key set (its first key signs).
func newEnvKeys(t testing.TB, issuer string, ks *keys.Set) *env {
	t.Helper()
	tt, _ := t.(*testing.T)
	dbPath := filepath.Join(t.TempDir(), "k.db")
	store := testkit.SQLiteAt(t, dbPath)
	jwtKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&jwtKey.PublicKey)
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))

	cp := tokenProfile("token", "/oauth/v2", issuer, "discovery", "jwks", "token", "introspect", "revoke")
	cp.AccessTokens = config.AccessTokenPolicy{Format: config.FormatJWT, Lifetime: config.Duration(5 * time.Minute)}
	snap := snapshot(cp)
	cc := []string{config.GrantClientCredentials}
	snap.Clients = map[string]*config.Client{
		"svc": {Profile: "token", Secret: secret.New(svcSecret), TokenEndpointAuthMethod: config.AuthSecretBasic,
			GrantTypes: cc, Scopes: []string{"a:read", "a:write"}, Audiences: []string{apiAudience, "https://other.example.com"}},
		"opaque": {Profile: "token", Secret: secret.New(opaqueSecret), TokenEndpointAuthMethod: config.AuthSecretPost,
			GrantTypes: cc, Scopes: []string{"b:read"},
			AccessTokens: config.AccessTokenPolicy{Format: config.FormatOpaque, Lifetime: config.Duration(time.Minute)}},
		"code": {Profile: "token", Secret: secret.New(codeSecret), TokenEndpointAuthMethod: config.AuthSecretBasic,
			GrantTypes: []string{config.GrantAuthorizationCode}, Scopes: []string{"openid"}},
		"jwtc": {Profile: "token", PublicKeys: []string{pub}, TokenEndpointAuthMethod: config.AuthPrivateKeyJWT,
			GrantTypes: cc, Scopes: []string{"c:read"}},
		"elsewhere": {Profile: "other", Secret: secret.New("elsewhere-0123456789abcdef"), GrantTypes: cc},
		"rs":        {Profile: "token", Secret: secret.New(rsSecret), IntrospectAllTokens: true},
	}
	for n, c := range snap.Clients {
		c.Name = n
	}
	offset := new(atomic.Int64)
	rec := &recorder{}
	p, err := New(snap, cp, ks, Deps{Store: store, Metrics: rec,
		Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true, BodyLimit: 64 << 10, CaseSensitive: true})
	p.Mount(app)
	return &env{t: tt, p: p, app: app, store: store, dbPath: dbPath, metrics: rec, offset: offset, jwtKey: jwtKey, issuer: issuer,
		snap: snap, cp: cp, keys: ks}
}

func basicAuth(id, sec string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(sec)))
}

// post sends a form to an endpoint in-process and decodes the JSON body.
func (e *env) post(path, body, authz string) (*http.Response, map[string]any) {
	e.t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/oauth/v2"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) (*http.Response, map[string]any) {
	e.t.Helper()
	resp, err := e.app.Test(req, -1)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			m = map[string]any{"_raw": string(b)}
		}
	}
	return resp, m
}

// count counts the rows of a table straight from the database file.
func (e *env) count(table string) int {
	e.t.Helper()
	db, err := sql.Open("sqlite", e.dbPath)
	if err != nil {
		e.t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) assertion(mod func(jwt.Token)) string {
	e.t.Helper()
	tok := jwt.New()
	now := time.Now()
	for k, v := range map[string]any{"iss": "jwtc", "sub": "jwtc", "aud": e.issuer + "/token",
		"exp": now.Add(time.Minute), "iat": now, "jti": model.NewID()} {
		_ = tok.Set(k, v)
	}
	if mod != nil {
		mod(tok)
	}
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, e.jwtKey))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// TestClientCredentialsRealClient: golang.org/x/oauth2 gets a token over
// HTTP; the token verifies with jwx against the JWKS found through
// discovery.
func TestClientCredentialsRealClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	e := newEnv(t, base+"/oauth/v2")
	go func() { _ = e.app.Listener(ln) }()
	// Closing the listener, not app.Shutdown: fasthttp 1.51 races between
	// Shutdown and RequestCtx.Done (the context of store calls).
	t.Cleanup(func() { _ = ln.Close() })
	ctx := context.Background()

	// Discovery.
	resp, err := http.Get(e.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		TokenEndpoint string   `json:"token_endpoint"`
		JWKSURI       string   `json:"jwks_uri"`
		Introspection string   `json:"introspection_endpoint"`
		Revocation    string   `json:"revocation_endpoint"`
		Grants        []string `json:"grant_types_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&meta); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if meta.TokenEndpoint != e.issuer+"/token" || meta.Introspection != e.issuer+"/introspect" || meta.Revocation != e.issuer+"/revoke" {
		t.Fatalf("discovery: %+v", meta)
	}

	cfg := clientcredentials.Config{ClientID: "svc", ClientSecret: svcSecret, TokenURL: meta.TokenEndpoint,
		Scopes: []string{"a:read"}, AuthStyle: oauth2.AuthStyleInHeader,
		EndpointParams: url.Values{"resource": {apiAudience}}}
	tok, err := cfg.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "Bearer" || tok.RefreshToken != "" || tok.Expiry.IsZero() || tok.Extra("scope") != "a:read" {
		t.Fatalf("token response: %+v scope=%v", tok, tok.Extra("scope"))
	}

	set, err := jwk.Fetch(ctx, meta.JWKSURI)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.Parse([]byte(tok.AccessToken), jwt.WithKeySet(set), jwt.WithValidate(true),
		jwt.WithIssuer(e.issuer), jwt.WithAudience(apiAudience), jwt.WithSubject("svc"))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := jws.Parse([]byte(tok.AccessToken))
	if err != nil {
		t.Fatal(err)
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if h.Type() != "at+jwt" || h.KeyID() != e.p.issue.signer.KID || h.Algorithm() != jwa.ES256 {
		t.Errorf("header typ=%q kid=%q alg=%q", h.Type(), h.KeyID(), h.Algorithm())
	}
	claims := parsed.PrivateClaims()
	if claims["client_id"] != "svc" || claims["scope"] != "a:read" || len(parsed.JwtID()) < 22 {
		t.Errorf("claims %v jti %q", claims, parsed.JwtID())
	}
	if d := parsed.Expiration().Sub(parsed.IssuedAt()); d != 5*time.Minute {
		t.Errorf("lifetime %s", d)
	}
	// Default scope: all of the client's; default audience: the first.
	cfg.Scopes, cfg.EndpointParams = nil, nil
	tok2, err := cfg.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tok2.Extra("scope") != "a:read a:write" {
		t.Errorf("default scope %v", tok2.Extra("scope"))
	}
	parsed2, err := jwt.Parse([]byte(tok2.AccessToken), jwt.WithKeySet(set), jwt.WithAudience(apiAudience))
	if err != nil || len(parsed2.Audience()) != 1 {
		t.Errorf("default audience: %v %v", err, parsed2)
	}
	// Client-secret-post through the real client too (opaque client).
	cfg2 := clientcredentials.Config{ClientID: "opaque", ClientSecret: opaqueSecret, TokenURL: meta.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams}
	tok3, err := cfg2.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tok3.AccessToken, ".") || len(tok3.AccessToken) != 43 {
		t.Errorf("opaque token %q", tok3.AccessToken)
	}
	if got := e.count("access_tokens"); got != 1 {
		t.Errorf("%d stored access tokens; JWTs must not be stored", got)
	}
	e.metrics.mu.Lock()
	defer e.metrics.mu.Unlock()
	if len(e.metrics.issued) != 3 || e.metrics.issued[0] != "token/client_credentials" {
		t.Errorf("metrics %v", e.metrics.issued)
	}
}

func (e *env) issue(client, sec string) string {
	e.t.Helper()
	var resp *http.Response
	var m map[string]any
	if client == "opaque" {
		resp, m = e.post("/token", "grant_type=client_credentials&client_id=opaque&client_secret="+url.QueryEscape(sec), "")
	} else {
		resp, m = e.post("/token", "grant_type=client_credentials", basicAuth(client, sec))
	}
	if resp.StatusCode != 200 {
		e.t.Fatalf("issue: %d %v", resp.StatusCode, m)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Pragma") != "no-cache" {
		e.t.Errorf("token response cache headers: %v", resp.Header)
	}
	return m["access_token"].(string)
}

// introspect asks as the resource server that may introspect every token.
func (e *env) introspect(token string) map[string]any {
	e.t.Helper()
	return e.introspectAs(token, "rs", rsSecret)
}

func (e *env) introspectAs(token, client, sec string) map[string]any {
	e.t.Helper()
	resp, m := e.post("/introspect", "token="+url.QueryEscape(token), basicAuth(client, sec))
	if resp.StatusCode != 200 {
		e.t.Fatalf("introspect: %d %v", resp.StatusCode, m)
	}
	return m
}

func (e *env) revoke(token, authz, extra string) {
	e.t.Helper()
	resp, m := e.post("/revoke", "token="+url.QueryEscape(token)+extra, authz)
	if resp.StatusCode != 200 {
		e.t.Fatalf("revoke: %d %v", resp.StatusCode, m)
	}
}

func TestIntrospectRevoke(t *testing.T) {
	for _, c := range []struct{ name, client, sec string }{
		{"jwt", "svc", svcSecret},
		{"opaque", "opaque", opaqueSecret},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, "https://id.example.com/oauth/v2")
			tok := e.issue(c.client, c.sec)
			m := e.introspect(tok)
			if m["active"] != true || m["client_id"] != c.client || m["sub"] != c.client || m["token_type"] != "Bearer" ||
				m["iss"] != e.issuer || m["jti"] == nil || m["exp"] == nil || m["iat"] == nil || m["scope"] == nil || m["aud"] == nil {
				t.Fatalf("introspection %v", m)
			}
			// Another client's revocation is ignored, with 200 (RFC 7009 §2.2).
			other := basicAuth("code", codeSecret)
			if c.client == "svc" {
				other = "" // the opaque client below, via post
			}
			if other != "" {
				e.revoke(tok, other, "")
			} else {
				e.revoke(tok, "", "&client_id=opaque&client_secret="+opaqueSecret)
			}
			if m := e.introspect(tok); m["active"] != true {
				t.Fatalf("revoked by another client: %v", m)
			}
			// The owner's revocation works; an unknown hint is ignored (§2.1).
			if c.client == "svc" {
				e.revoke(tok, basicAuth("svc", svcSecret), "&token_type_hint=whatever")
			} else {
				e.revoke(tok, "", "&client_id=opaque&client_secret="+opaqueSecret+"&token_type_hint=access_token")
			}
			if m := e.introspect(tok); len(m) != 1 || m["active"] != false {
				t.Fatalf("after revocation: %v", m)
			}
			// Unknown tokens: 200 on revoke, inactive on introspect.
			e.revoke("nonsense", basicAuth("svc", svcSecret), "")
			if m := e.introspect("nonsense"); m["active"] != false {
				t.Fatal(m)
			}
			// Expired: inactive.
			tok2 := e.issue(c.client, c.sec)
			e.offset.Store(int64(time.Hour))
			if m := e.introspect(tok2); m["active"] != false {
				t.Fatalf("expired: %v", m)
			}
		})
	}
}

func TestIntrospectForeignJWT(t *testing.T) {
	e := newEnv(t, "https://id.example.com/oauth/v2")
	other := newEnv(t, "https://id.example.com/oauth/v2") // same issuer, other keys
	if m := e.introspect(other.issue("svc", svcSecret)); m["active"] != false {
		t.Fatalf("token signed by a foreign key: %v", m)
	}
	// An unauthenticated caller gets invalid_client.
	resp, m := e.post("/introspect", "token=x", "")
	if resp.StatusCode != 401 || m["error"] != "invalid_client" {
		t.Fatalf("%d %v", resp.StatusCode, m)
	}
	resp, m = e.post("/revoke", "", basicAuth("svc", svcSecret))
	if resp.StatusCode != 400 || m["error"] != "invalid_request" {
		t.Fatalf("revoke without token: %d %v", resp.StatusCode, m)
	}
}

func TestTokenBadInput(t *testing.T) {
	e := newEnv(t, "https://id.example.com/oauth/v2")
	post := func(body string) string {
		return "grant_type=client_credentials&client_id=opaque&client_secret=" + opaqueSecret + body
	}
	form := "application/x-www-form-urlencoded"
	cases := []struct {
		name        string
		method      string
		contentType string
		body        string
		authz       string
		status      int
		code        string
	}{
		{"wrong secret basic", "POST", form, "grant_type=client_credentials", basicAuth("svc", "wrong-secret-0123456789"), 401, "invalid_client"},
		{"wrong secret post", "POST", form, "grant_type=client_credentials&client_id=opaque&client_secret=nope", "", 401, "invalid_client"},
		{"unknown client", "POST", form, "grant_type=client_credentials&client_id=ghost&client_secret=" + opaqueSecret, "", 401, "invalid_client"},
		{"client of another profile", "POST", form, "grant_type=client_credentials", basicAuth("elsewhere", "elsewhere-0123456789abcdef"), 401, "invalid_client"},
		{"no credentials", "POST", form, "grant_type=client_credentials&client_id=opaque", "", 401, "invalid_client"},
		{"wrong method for client", "POST", form, "grant_type=client_credentials", basicAuth("opaque", opaqueSecret), 401, "invalid_client"},
		{"disallowed grant", "POST", form, "grant_type=client_credentials", basicAuth("code", codeSecret), 400, "unauthorized_client"},
		{"unknown grant", "POST", form, "grant_type=urn:x:magic", basicAuth("svc", svcSecret), 400, "unsupported_grant_type"},
		{"missing grant", "POST", form, "client_id=opaque&client_secret=" + opaqueSecret, "", 400, "invalid_request"},
		{"disallowed scope", "POST", form, post("&scope=b:read%20admin"), "", 400, "invalid_scope"},
		{"disallowed audience", "POST", form, post("&audience=https://evil.example.com"), "", 400, "invalid_target"},
		{"disallowed resource", "POST", form, "grant_type=client_credentials&resource=" + apiAudience + "&resource=https://evil.example.com", basicAuth("svc", svcSecret), 400, "invalid_target"},
		{"malformed body (json)", "POST", "application/json", `{"grant_type":"client_credentials"}`, basicAuth("svc", svcSecret), 400, "invalid_request"},
		{"no content type", "POST", "", post(""), "", 400, "invalid_request"},
		{"duplicate grant_type", "POST", form, post("&grant_type=client_credentials"), "", 400, "invalid_request"},
		{"duplicate scope", "POST", form, post("&scope=b:read&scope=b:read"), "", 400, "invalid_request"},
		{"duplicate client_secret", "POST", form, post("&client_secret=" + opaqueSecret), "", 400, "invalid_request"},
		{"basic and post", "POST", form, post(""), basicAuth("opaque", opaqueSecret), 400, "invalid_request"},
		{"GET", "GET", "", "", "", 405, ""},
		{"PUT", "PUT", form, post(""), "", 405, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, "/oauth/v2/token", strings.NewReader(c.body))
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			}
			if c.authz != "" {
				req.Header.Set("Authorization", c.authz)
			}
			resp, m := e.do(req)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d (%v)", resp.StatusCode, c.status, m)
			}
			if c.code == "" {
				if resp.Header.Get("Allow") != "POST" {
					t.Errorf("Allow %q", resp.Header.Get("Allow"))
				}
				return
			}
			if m["error"] != c.code || m["error_description"] == nil || len(m) != 2 {
				t.Errorf("body %v, want error %s", m, c.code)
			}
			if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Pragma") != "no-cache" ||
				!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Errorf("headers %v", resp.Header)
			}
			// A Basic challenge answers Basic or no credentials, not a
			// secret sent in the body.
			wantBasic := resp.StatusCode == 401 && !strings.Contains(c.body, "client_secret=")
			if wantBasic != strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic realm=") {
				t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("oversized body", func(t *testing.T) {
		// Through a real listener: the server's body limit answers.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		app := fiber.New(fiber.Config{DisableStartupMessage: true, BodyLimit: 64 << 10})
		e.p.Mount(app)
		go func() { _ = app.Listener(ln) }()
		defer ln.Close() // not app.Shutdown: see TestClientCredentialsRealClient
		resp, err := http.Post("http://"+ln.Addr().String()+"/oauth/v2/token", form,
			strings.NewReader(post("&pad="+strings.Repeat("x", 70<<10))))
		if err != nil {
			// The server may answer 413 and close while the client is still
			// writing the body: the client then sees the reset, not the
			// status. Either way the request was refused (nothing is stored,
			// checked below).
			if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
				return
			}
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode > 499 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("oversized body, handler cap", func(t *testing.T) {
		// The profile caps bodies itself when the server allows more.
		app := fiber.New(fiber.Config{BodyLimit: 1 << 20})
		e.p.Mount(app)
		req := httptest.NewRequest("POST", "/oauth/v2/token", strings.NewReader(post("&pad="+strings.Repeat("x", 70<<10))))
		req.Header.Set("Content-Type", form)
		resp, err := app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 413 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	if n := e.count("access_tokens"); n != 0 {
		t.Errorf("%d access tokens stored after bad requests", n)
	}
	e.metrics.mu.Lock()
	if len(e.metrics.issued) != 0 || len(e.metrics.errors) < len(cases)-2 || e.metrics.errors[0] != "token/token/invalid_client/wrong_secret" {
		t.Errorf("metrics issued=%v errors=%v", e.metrics.issued, e.metrics.errors)
	}
	e.metrics.mu.Unlock()
}

func TestPrivateKeyJWT(t *testing.T) {
	e := newEnv(t, "https://id.example.com/oauth/v2")
	a := e.assertion(nil)
	body := "grant_type=client_credentials&client_assertion_type=" + url.QueryEscape(clientauth.AssertionType) + "&client_assertion=" + a
	resp, m := e.post("/token", body, "")
	if resp.StatusCode != 200 || m["scope"] != "c:read" {
		t.Fatalf("%d %v", resp.StatusCode, m)
	}
	// Replay: invalid_client, and only the first use is recorded.
	resp, m = e.post("/token", body, "")
	if resp.StatusCode != 401 || m["error"] != "invalid_client" {
		t.Fatalf("replay: %d %v", resp.StatusCode, m)
	}
	// The issuer is an accepted audience too; another is not.
	resp, _ = e.post("/token", "grant_type=client_credentials&client_assertion_type="+url.QueryEscape(clientauth.AssertionType)+
		"&client_assertion="+e.assertion(func(tok jwt.Token) { _ = tok.Set("aud", e.issuer) }), "")
	if resp.StatusCode != 200 {
		t.Fatalf("aud=issuer: %d", resp.StatusCode)
	}
	resp, m = e.post("/token", "grant_type=client_credentials&client_assertion_type="+url.QueryEscape(clientauth.AssertionType)+
		"&client_assertion="+e.assertion(func(tok jwt.Token) { _ = tok.Set("aud", "https://elsewhere") }), "")
	if resp.StatusCode != 401 || m["error"] != "invalid_client" {
		t.Fatalf("wrong aud: %d %v", resp.StatusCode, m)
	}
	if n := e.count("used_assertions"); n != 2 {
		t.Errorf("%d assertions recorded, want 2", n)
	}
	if n := e.count("access_tokens"); n != 0 {
		t.Errorf("%d access tokens stored", n)
	}
}

// TestNoStore: without a data source, JWT issuance still works and the
// endpoints that need the store fail closed with server_error.
func TestNoStore(t *testing.T) {
	e := newEnv(t, "https://id.example.com/oauth/v2")
	e.p.setStore(nil)
	tok := e.issue("svc", svcSecret)
	resp, m := e.post("/introspect", "token="+tok, basicAuth("svc", svcSecret))
	if resp.StatusCode != 500 || m["error"] != "server_error" {
		t.Fatalf("%d %v", resp.StatusCode, m)
	}
	resp, m = e.post("/token", "grant_type=client_credentials&client_id=opaque&client_secret="+opaqueSecret, "")
	if resp.StatusCode != 500 || m["error"] != "server_error" {
		t.Fatalf("%d %v", resp.StatusCode, m)
	}
}
