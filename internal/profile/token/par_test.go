package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/gofiber/fiber/v2"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"golang.org/x/oauth2"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/profile/authn"
	"github.com/keygate/keygate/internal/secret"
	"github.com/keygate/keygate/internal/session"
)

const pushySecret = "pushy-secret-0123456789abcdef"

// newPAREnv is the code-flow env with the par endpoint (every endpoint is
// served), plus pushy, a confidential client that must push its requests,
// and jwtc, a private_key_jwt client of the code flow whose key is the
// env's jwtKey. required makes the profile require pushed requests of
// every client.
func newPAREnv(t *testing.T, required, withAuthn bool) *flowEnv {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	f := newFlowEnvEdit(t, keySet(t), withAuthn, func(cp *config.Profile, clients map[string]*config.Client) {
		cp.PushedAuthorizationRequests.Required = required
		code := []string{config.GrantAuthorizationCode}
		clients["pushy"] = &config.Client{Profile: "token", Secret: secret.New(pushySecret), TokenEndpointAuthMethod: config.AuthSecretBasic,
			GrantTypes: code, Scopes: []string{"openid"}, RedirectURIs: []string{"https://pushy.example.com/cb"},
			RequirePushedAuthorizationRequests: true}
		clients["jwtc"] = &config.Client{Profile: "token", TokenEndpointAuthMethod: config.AuthPrivateKeyJWT,
			PublicKeys: []string{string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))},
			GrantTypes: code, Scopes: []string{"openid"}, RedirectURIs: []string{"https://jwtc.example.com/cb"}}
	})
	f.jwtKey = key
	return f
}

// pushedParams are the parameters of a valid authorization request of
// client for redirect, with state and the PKCE challenge of verifier.
func pushedParams(client, redirect, state, verifier string) url.Values {
	return url.Values{
		"client_id": {client}, "response_type": {"code"}, "redirect_uri": {redirect}, "scope": {"openid"},
		"state": {state}, "nonce": {"n-" + state},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
	}
}

// push posts form to the par endpoint with authz (an Authorization header
// value, or "").
func (f *flowEnv) push(authz string, form url.Values) (*http.Response, map[string]any) {
	f.t.Helper()
	return f.post(PathPAR, form.Encode(), authz)
}

// requestURI pushes web's request with state and verifier and returns
// its request_uri.
func (f *flowEnv) requestURI(state, verifier string) string {
	f.t.Helper()
	resp, m := f.push(basicAuth("web", webSecret), pushedParams("web", webRedirect, state, verifier))
	uri, _ := m["request_uri"].(string)
	if resp.StatusCode != http.StatusCreated || uri == "" {
		f.t.Fatalf("push: %d %v", resp.StatusCode, m)
	}
	return uri
}

// pageBody is the body of a response that must be a page, not a redirect.
func pageBody(t *testing.T, resp *http.Response, loc *url.URL) string {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	if loc != nil {
		t.Fatalf("redirected to %s; want an error page", loc)
	}
	return string(b)
}

// recorded reports whether the metrics recorder saw profile/endpoint/code/reason.
func (f *flowEnv) recorded(s string) bool {
	f.metrics.mu.Lock()
	defer f.metrics.mu.Unlock()
	return slices.Contains(f.metrics.errors, s)
}

// TestPARConformance: RFC 9126 at the par and authorization endpoints,
// and RFC 9207's iss on every authorization response.
func TestPARConformance(t *testing.T) {
	par := newPAREnv(t, false, false)
	required := newPAREnv(t, true, false)
	verifier := oauth2.GenerateVerifier()
	webAuth := basicAuth("web", webSecret)

	pushCases := []struct {
		name   string
		env    *flowEnv
		authz  string
		form   url.Values
		status int
		err    string // the error code, or "" for 201
		reason string // the metric's reason word, with err
	}{
		{name: "confidential client", env: par, authz: webAuth, form: pushedParams("web", webRedirect, "s", verifier), status: 201},
		{name: "a redirect URI with a query", env: par, authz: webAuth, form: pushedParams("web", "https://rp.example.com/cb?tenant=1", "s", verifier),
			status: 201},
		{name: "another method than the client's", env: par,
			form: func() url.Values {
				v := pushedParams("web", webRedirect, "s", verifier)
				v.Set("client_secret", webSecret)
				return v
			}(), status: 401, err: "invalid_client", reason: "wrong_auth_method"},
		{name: "public client identifies with client_id", env: par, form: pushedParams("spa", spaRedirect, "s", verifier), status: 201},
		{name: "a required profile takes pushes", env: required, authz: webAuth, form: pushedParams("web", webRedirect, "s", verifier), status: 201},
		{name: "no client authentication", env: par, form: pushedParams("web", webRedirect, "s", verifier),
			status: 401, err: "invalid_client", reason: "no_credentials"},
		{name: "wrong secret", env: par, authz: basicAuth("web", "wrong-secret-0123456789"), form: pushedParams("web", webRedirect, "s", verifier),
			status: 401, err: "invalid_client", reason: "wrong_secret"},
		{name: "unknown client", env: par, form: pushedParams("nobody", webRedirect, "s", verifier),
			status: 401, err: "invalid_client", reason: "no_credentials"},
		{name: "request_uri inside", env: par, authz: webAuth,
			form: func() url.Values {
				v := pushedParams("web", webRedirect, "s", verifier)
				v.Set("request_uri", requestURIPrefix+"x")
				return v
			}(), status: 400, err: "invalid_request", reason: "request_uri_pushed"},
		{name: "unregistered redirect_uri", env: par, authz: webAuth, form: pushedParams("web", "https://evil.example.com/cb", "s", verifier),
			status: 400, err: "invalid_request", reason: "redirect_uri_not_registered"},
		{name: "another client's redirect_uri", env: par, authz: webAuth, form: pushedParams("web", spaRedirect, "s", verifier),
			status: 400, err: "invalid_request", reason: "redirect_uri_not_registered"},
		{name: "no redirect_uri", env: par, authz: webAuth,
			form: func() url.Values {
				v := pushedParams("web", webRedirect, "s", verifier)
				v.Del("redirect_uri")
				return v
			}(),
			status: 400, err: "invalid_request", reason: "redirect_uri_missing"},
		{name: "no client_id", env: par, authz: webAuth,
			form:   func() url.Values { v := pushedParams("web", webRedirect, "s", verifier); v.Del("client_id"); return v }(),
			status: 400, err: "invalid_request", reason: "client_id_missing"},
		{name: "client_id of another client", env: par, authz: webAuth, form: pushedParams("other", webRedirect, "s", verifier),
			status: 400, err: "invalid_request", reason: "client_id_mismatch"},
		{name: "no PKCE", env: par, authz: webAuth,
			form: func() url.Values {
				v := pushedParams("web", webRedirect, "s", verifier)
				v.Del("code_challenge")
				return v
			}(),
			status: 400, err: "invalid_request", reason: "pkce_challenge_missing"},
		{name: "plain PKCE", env: par, authz: webAuth,
			form: func() url.Values {
				v := pushedParams("web", webRedirect, "s", verifier)
				v.Set("code_challenge_method", "plain")
				return v
			}(), status: 400, err: "invalid_request", reason: "pkce_method_unsupported"},
		{name: "response_type token", env: par, authz: webAuth,
			form: func() url.Values {
				v := pushedParams("web", webRedirect, "s", verifier)
				v.Set("response_type", "token")
				return v
			}(), status: 400, err: "unsupported_response_type", reason: "response_type_unsupported"},
		{name: "scope not allowed", env: par, authz: webAuth,
			form: func() url.Values {
				v := pushedParams("web", webRedirect, "s", verifier)
				v.Set("scope", "openid admin")
				return v
			}(), status: 400, err: "invalid_scope", reason: "scope_not_allowed"},
		{name: "state too long", env: par, authz: webAuth, form: pushedParams("web", webRedirect, strings.Repeat("s", maxParamLen+1), verifier),
			status: 400, err: "invalid_request", reason: "parameter_too_long"},
		{name: "bad prompt", env: par, authz: webAuth,
			form: func() url.Values {
				v := pushedParams("web", webRedirect, "s", verifier)
				v.Set("prompt", "none login")
				return v
			}(), status: 400, err: "invalid_request", reason: "prompt_invalid"},
		{name: "request object", env: par, authz: webAuth,
			form: func() url.Values {
				v := pushedParams("web", webRedirect, "s", verifier)
				v.Set("request", "eyJhbGciOiJub25lIn0.e30.")
				return v
			}(), status: 400, err: "request_not_supported", reason: "unspecified"},
		{name: "client without the code grant (nor a redirect URI)", env: par, authz: basicAuth("svc", svcSecret), form: pushedParams("svc", webRedirect, "s", verifier),
			status: 400, err: "invalid_request", reason: "redirect_uri_not_registered"},
		{name: "repeated parameter", env: par, authz: webAuth,
			form: func() url.Values {
				v := pushedParams("web", webRedirect, "s", verifier)
				v.Add("scope", "profile")
				return v
			}(), status: 400, err: "invalid_request", reason: "parameter_repeated"},
	}
	for _, c := range pushCases {
		t.Run("push/"+c.name, func(t *testing.T) {
			c.env.t = t
			resp, m := c.env.push(c.authz, c.form)
			if resp.StatusCode != c.status || (c.err != "" && m["error"] != c.err) {
				t.Fatalf("%d %v; want %d %s", resp.StatusCode, m, c.status, c.err)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if c.err != "" {
				if want := "token/par/" + c.err + "/" + c.reason; !c.env.recorded(want) {
					t.Errorf("metric %s not recorded", want)
				}
				if resp.Header.Get(HeaderRequestID) == "" && resp.StatusCode < 500 {
					t.Error("a refusal without X-Request-Id")
				}
				return
			}
			uri, _ := m["request_uri"].(string)
			random, ok := strings.CutPrefix(uri, requestURIPrefix)
			// At least 128 random bits: 22 base64url characters.
			if !ok || len(random) < 22 || m["expires_in"] != float64(60) || len(m) != 2 {
				t.Errorf("response %v", m)
			}
		})
	}

	t.Run("push/private_key_jwt with the par endpoint as audience", func(t *testing.T) {
		par.t = t
		form := pushedParams("jwtc", "https://jwtc.example.com/cb", "s", verifier)
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", par.assertion(func(tok jwt.Token) { _ = tok.Set("aud", par.issuer+PathPAR) }))
		if resp, m := par.push("", form); resp.StatusCode != 201 {
			t.Fatalf("%d %v", resp.StatusCode, m)
		}
	})
	t.Run("push/body too large", func(t *testing.T) {
		// The profile caps bodies itself when the server allows more.
		par.t = t
		app := fiber.New(fiber.Config{BodyLimit: 1 << 20})
		par.p.Mount(app)
		form := pushedParams("web", webRedirect, "s", verifier)
		form.Set("login_hint", strings.Repeat("x", MaxFormBytes))
		req := httptest.NewRequest(http.MethodPost, "/oauth/v2/par", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", fiber.MIMEApplicationForm)
		req.Header.Set("Authorization", webAuth)
		resp, err := app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), `"invalid_request"`) {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	})
	t.Run("push/a refused push stores nothing", func(t *testing.T) {
		par.t = t
		stored := 0
		for _, c := range pushCases {
			if c.env == par && c.status == http.StatusCreated {
				stored++
			}
		}
		if n := par.count("pushed_requests"); n != stored+1 { // and the private_key_jwt one
			t.Errorf("%d pushed requests stored, want %d", n, stored+1)
		}
	})
	t.Run("push/GET is not allowed", func(t *testing.T) {
		resp, _ := do(t, par.app, http.MethodGet, "/oauth/v2/par")
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
			t.Fatalf("%d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})

	t.Run("authorize/no session: login, and the parameters stay out of the browser", func(t *testing.T) {
		par.t = t
		v := oauth2.GenerateVerifier()
		uri := par.requestURI("st-login", v)
		resp, loc := par.authorize("", url.Values{"client_id": {"web"}, "request_uri": {uri}}.Encode())
		if resp.StatusCode != http.StatusFound || loc == nil || loc.Path != "/authn/login" {
			t.Fatalf("%d %v", resp.StatusCode, loc)
		}
		rt, _ := url.Parse(loc.Query().Get("return_to"))
		q := rt.Query()
		next := q.Get("request_uri")
		if rt.Path != "/oauth/v2/authorize" || len(q) != 2 || q.Get("client_id") != "web" || !strings.HasPrefix(next, requestURIPrefix) || next == uri {
			t.Fatalf("return_to %s; want client_id and a new request_uri only", rt)
		}
		if strings.Contains(loc.String(), "st-login") || strings.Contains(loc.String(), oauth2.S256ChallengeFromVerifier(v)) {
			t.Errorf("the pushed parameters reached the browser: %s", loc)
		}
		// Signed in, the continuation ends in a code, once.
		cookie, _ := par.login()
		_, loc = par.authorize(cookie, rt.RawQuery)
		if loc == nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != "st-login" || loc.Query().Get("iss") != par.issuer {
			t.Fatalf("continuation: %v", loc)
		}
		resp, loc = par.authorize(cookie, rt.RawQuery)
		if body := pageBody(t, resp, loc); resp.StatusCode != 400 || !strings.Contains(body, "unknown or was already used") {
			t.Errorf("continuation used twice: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("authorize/code, then refused on second use", func(t *testing.T) {
		par.t = t
		v := oauth2.GenerateVerifier()
		uri := par.requestURI("st-1", v)
		cookie, _ := par.login()
		q := url.Values{"client_id": {"web"}, "request_uri": {uri}}.Encode()
		_, loc := par.authorize(cookie, q)
		if loc == nil || loc.Host != "rp.example.com" || loc.Query().Get("code") == "" || loc.Query().Get("state") != "st-1" ||
			loc.Query().Get("iss") != par.issuer {
			t.Fatalf("authorize: %v", loc)
		}
		// x/oauth2 has no PAR, but the exchange is the usual one.
		tok, err := par.config("web", webSecret, webRedirect).Exchange(par.ctx, loc.Query().Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		idt, err := par.provider.Verifier(&oidc.Config{ClientID: "web"}).Verify(par.ctx, tok.Extra("id_token").(string))
		if err != nil || idt.Nonce != "n-st-1" {
			t.Fatalf("id token: %v %+v", err, idt)
		}
		resp, loc := par.authorize(cookie, q)
		if body := pageBody(t, resp, loc); resp.StatusCode != 400 || !strings.Contains(body, "unknown or was already used") {
			t.Fatalf("second use: %d %s", resp.StatusCode, body)
		}
		if !par.recorded("token/authorize/invalid_request/request_uri_unknown") {
			t.Error("second use not counted as request_uri_unknown")
		}
	})

	t.Run("authorize/the URL's other parameters are ignored", func(t *testing.T) {
		par.t = t
		uri := par.requestURI("st-pushed", verifier)
		cookie, _ := par.login()
		_, loc := par.authorize(cookie, url.Values{"client_id": {"web"}, "request_uri": {uri}, "state": {"st-url"},
			"redirect_uri": {"https://evil.example.com/cb"}, "scope": {"openid admin"}, "response_type": {"token"}}.Encode())
		if loc == nil || loc.Host != "rp.example.com" || loc.Query().Get("state") != "st-pushed" || loc.Query().Get("code") == "" {
			t.Fatalf("authorize: %v", loc)
		}
	})

	t.Run("authorize/expired", func(t *testing.T) {
		par.t = t
		uri := par.requestURI("st-exp", verifier)
		cookie, _ := par.login()
		par.offset.Store(int64(61 * time.Second))
		defer par.offset.Store(0)
		resp, loc := par.authorize(cookie, url.Values{"client_id": {"web"}, "request_uri": {uri}}.Encode())
		if body := pageBody(t, resp, loc); resp.StatusCode != 400 || !strings.Contains(body, "has expired") {
			t.Fatalf("expired: %d %s", resp.StatusCode, body)
		}
		if !par.recorded("token/authorize/invalid_request/request_uri_expired") {
			t.Error("not counted as request_uri_expired")
		}
	})

	t.Run("authorize/another client's request_uri", func(t *testing.T) {
		par.t = t
		uri := par.requestURI("st-other", verifier)
		cookie, _ := par.login()
		resp, loc := par.authorize(cookie, url.Values{"client_id": {"other"}, "request_uri": {uri}}.Encode())
		if body := pageBody(t, resp, loc); resp.StatusCode != 400 || !strings.Contains(body, "not issued to this application") {
			t.Fatalf("client_id mismatch: %d %s", resp.StatusCode, body)
		}
		if !par.recorded("token/authorize/invalid_request/request_uri_other_client") {
			t.Error("not counted as request_uri_other_client")
		}
	})

	t.Run("authorize/unknown and malformed request_uri", func(t *testing.T) {
		par.t = t
		for _, uri := range []string{requestURIPrefix + newSecret(), "https://rp.example.com/request.jwt", requestURIPrefix + strings.Repeat("a", 200)} {
			resp, loc := par.authorize("", url.Values{"client_id": {"web"}, "request_uri": {uri}}.Encode())
			if body := pageBody(t, resp, loc); resp.StatusCode != 400 || !strings.Contains(body, "unknown or was already used") || strings.Contains(body, uri) {
				t.Errorf("%s: %d %s", uri, resp.StatusCode, body)
			}
		}
		// client_id is still required, and checked first.
		resp, loc := par.authorize("", url.Values{"request_uri": {requestURIPrefix + "x"}}.Encode())
		if body := pageBody(t, resp, loc); resp.StatusCode != 400 || !strings.Contains(body, "no client_id") {
			t.Errorf("no client_id: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("authorize/an error after the push goes to the pushed redirect URI with iss", func(t *testing.T) {
		par.t = t
		form := pushedParams("web", webRedirect, "st-none", verifier)
		form.Set("prompt", "none")
		_, m := par.push(webAuth, form)
		uri, _ := m["request_uri"].(string)
		_, loc := par.authorize("", url.Values{"client_id": {"web"}, "request_uri": {uri}}.Encode())
		if loc == nil || loc.Host != "rp.example.com" || loc.Query().Get("error") != "login_required" ||
			loc.Query().Get("state") != "st-none" || loc.Query().Get("iss") != par.issuer {
			t.Fatalf("prompt=none: %v", loc)
		}
	})

	t.Run("authorize/not pushed, required by the profile", func(t *testing.T) {
		required.t = t
		cookie, _ := required.login()
		cfg := required.config("web", webSecret, webRedirect)
		u, _ := url.Parse(cfg.AuthCodeURL("st-req", oauth2.S256ChallengeOption(verifier)))
		_, loc := required.authorize(cookie, u.RawQuery)
		if loc == nil || loc.Host != "rp.example.com" || loc.Query().Get("error") != "invalid_request" ||
			loc.Query().Get("error_description") != "pushed authorization request required" ||
			loc.Query().Get("state") != "st-req" || loc.Query().Get("iss") != required.issuer || loc.Query().Get("code") != "" {
			t.Fatalf("not pushed: %v", loc)
		}
		if !required.recorded("token/authorize/invalid_request/par_required") {
			t.Error("not counted as par_required")
		}
		// Pushed, the same request gets its code.
		_, m := required.push(webAuth, pushedParams("web", webRedirect, "st-req", verifier))
		uri, _ := m["request_uri"].(string)
		if _, loc := required.authorize(cookie, url.Values{"client_id": {"web"}, "request_uri": {uri}}.Encode()); loc == nil || loc.Query().Get("code") == "" {
			t.Fatalf("pushed: %v", loc)
		}
	})

	t.Run("authorize/not pushed, required by the client only", func(t *testing.T) {
		par.t = t
		cookie, _ := par.login()
		u, _ := url.Parse(par.config("pushy", pushySecret, "https://pushy.example.com/cb").AuthCodeURL("st-p", oauth2.S256ChallengeOption(verifier)))
		_, loc := par.authorize(cookie, u.RawQuery)
		if loc == nil || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("error_description") != "pushed authorization request required" ||
			loc.Query().Get("iss") != par.issuer {
			t.Fatalf("pushy not pushed: %v", loc)
		}
		// Other clients of the profile need not push.
		if code := par.code(cookie, par.config("web", webSecret, webRedirect), verifier); code == "" {
			t.Fatal("web without PAR")
		}
		_, m := par.push(basicAuth("pushy", pushySecret), pushedParams("pushy", "https://pushy.example.com/cb", "st-p", verifier))
		uri, _ := m["request_uri"].(string)
		if _, loc := par.authorize(cookie, url.Values{"client_id": {"pushy"}, "request_uri": {uri}}.Encode()); loc == nil || loc.Query().Get("code") == "" {
			t.Fatalf("pushy pushed: %v", loc)
		}
	})

	t.Run("authorize/iss on success and error redirects without PAR", func(t *testing.T) {
		par.t = t
		cookie, _ := par.login()
		cfg := par.config("web", webSecret, webRedirect)
		u, _ := url.Parse(cfg.AuthCodeURL("st-i", oauth2.S256ChallengeOption(verifier)))
		if _, loc := par.authorize(cookie, u.RawQuery); loc == nil || loc.Query().Get("code") == "" || loc.Query().Get("iss") != par.issuer {
			t.Errorf("success: %v", loc)
		}
		q := u.Query()
		q.Set("response_type", "token")
		if _, loc := par.authorize(cookie, q.Encode()); loc == nil || loc.Query().Get("error") != "unsupported_response_type" || loc.Query().Get("iss") != par.issuer {
			t.Errorf("error: %v", loc)
		}
	})

	t.Run("discovery", func(t *testing.T) {
		m := discovery(t, par.app, "/oauth/v2")
		if m["pushed_authorization_request_endpoint"] != par.issuer+"/par" || m["require_pushed_authorization_requests"] != nil ||
			m["authorization_response_iss_parameter_supported"] != true {
			t.Errorf("par: %v", m)
		}
		m = discovery(t, required.app, "/oauth/v2")
		if m["pushed_authorization_request_endpoint"] != required.issuer+"/par" || m["require_pushed_authorization_requests"] != true {
			t.Errorf("required: %v", m)
		}
		ks := keySet(t)
		cp := tokenProfile("token", "/oauth/v2", "https://id.example.com/oauth/v2", "discovery", "authorize", "token")
		cp.AuthenticationProfile = "authn"
		ap := &config.Profile{Type: config.ProfileAuthentication, Path: "/authn"}
		ap.Name = "authn"
		_, app := mount(t, snapshot(cp, ap), cp, ks)
		m = discovery(t, app, "/oauth/v2")
		if _, ok := m["pushed_authorization_request_endpoint"]; ok || m["require_pushed_authorization_requests"] != nil {
			t.Errorf("without par: %v", m)
		}
		if resp, _ := do(t, app, http.MethodPost, "/oauth/v2/par"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("par not served, POST /par: %d", resp.StatusCode)
		}
	})
}

// TestPARNotServed: a profile without par answers a request_uri as
// before (request_uri_not_supported at the redirect URI, with iss).
func TestPARNotServed(t *testing.T) {
	f := newFlowEnvEdit(t, keySet(t), false, func(cp *config.Profile, _ map[string]*config.Client) {
		cp.Endpoints = slices.DeleteFunc(slices.Clone(cp.Endpoints), func(e string) bool { return e == config.EndpointPAR })
	})
	cookie, _ := f.login()
	u, _ := url.Parse(f.config("web", webSecret, webRedirect).AuthCodeURL("st-n", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
		oauth2.SetAuthURLParam("request_uri", requestURIPrefix+"x")))
	_, loc := f.authorize(cookie, u.RawQuery)
	if loc == nil || loc.Query().Get("error") != "request_uri_not_supported" || loc.Query().Get("iss") != f.issuer {
		t.Fatalf("%v", loc)
	}
}

// TestPARLoginHandoff: a pushed request through the real login page:
// authorize → login → back to authorize by the continuation → code.
func TestPARLoginHandoff(t *testing.T) {
	f := newPAREnv(t, true, true)
	v := oauth2.GenerateVerifier()
	uri := f.requestURI("st-h", v)
	_, loc := f.authorize("", url.Values{"client_id": {"web"}, "request_uri": {uri}}.Encode())
	if loc == nil || loc.Path != "/authn/login" {
		t.Fatalf("authorize: %v", loc)
	}
	resp, err := f.app.Test(httptest.NewRequest(http.MethodGet, loc.String(), nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`name="csrf" value="([A-Za-z0-9_.-]+)"`).FindSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("login page: %d\n%s", resp.StatusCode, body)
	}
	var csrf *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == authn.CSRFCookie {
			csrf = c
		}
	}
	form := url.Values{"username": {"alice"}, "password": {alicePassword}, "csrf": {string(m[1])}, "return_to": {loc.Query().Get("return_to")}}
	req := httptest.NewRequest(http.MethodPost, "/authn/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: csrf.Name, Value: csrf.Value})
	if resp, err = f.app.Test(req, -1); err != nil {
		t.Fatal(err)
	}
	var sess string
	for _, c := range resp.Cookies() {
		if c.Name == session.CookieName {
			sess = c.Value
		}
	}
	back, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || sess == "" || back.Path != "/oauth/v2/authorize" {
		t.Fatalf("login: %d %v", resp.StatusCode, back)
	}
	_, loc = f.authorize(sess, back.RawQuery)
	if loc == nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != "st-h" || loc.Query().Get("iss") != f.issuer {
		t.Fatalf("back at authorize: %v", loc)
	}
	if _, err := f.config("web", webSecret, webRedirect).Exchange(f.ctx, loc.Query().Get("code"), oauth2.VerifierOption(v)); err != nil {
		t.Fatal(err)
	}
}

// TestPARConsent: the consent form of a pushed request posts back a
// continuation, not the parameters, and a forged decision is refused.
func TestPARConsent(t *testing.T) {
	f := newPAREnv(t, true, false)
	v := oauth2.GenerateVerifier()
	form := pushedParams("consent-app", "https://consent.example.com/cb", "st-c", v)
	form.Set("consent", "approve") // a client cannot push the user's decision
	resp, m := f.push("", form)
	uri, _ := m["request_uri"].(string)
	if resp.StatusCode != 201 {
		t.Fatalf("push: %d %v", resp.StatusCode, m)
	}
	cookie, _ := f.login()
	resp, loc := f.authorize(cookie, url.Values{"client_id": {"consent-app"}, "request_uri": {uri}}.Encode())
	body := pageBody(t, resp, loc)
	if resp.StatusCode != 200 || !strings.Contains(body, "Allow access?") {
		t.Fatalf("consent page: %d %s", resp.StatusCode, body)
	}
	hidden := map[string]string{}
	for _, h := range regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`).FindAllStringSubmatch(body, -1) {
		hidden[h[1]] = h[2]
	}
	if len(hidden) != 3 || hidden["client_id"] != "consent-app" || !strings.HasPrefix(hidden["request_uri"], requestURIPrefix) ||
		hidden["request_uri"] == uri || hidden["consent_csrf"] == "" || strings.Contains(body, "st-c") {
		t.Fatalf("hidden fields %v", hidden)
	}
	post := func(decision string) (*http.Response, *url.URL) {
		v := url.Values{"consent": {decision}}
		for k, val := range hidden {
			v.Set(k, val)
		}
		req := httptest.NewRequest(http.MethodPost, "/oauth/v2/authorize", strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", fiber.MIMEApplicationForm)
		req.AddCookie(&http.Cookie{Name: session.CookieName, Value: cookie})
		resp, err := f.app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		loc, _ := url.Parse(resp.Header.Get("Location"))
		return resp, loc
	}
	_, loc = post("approve")
	if loc.Query().Get("code") == "" || loc.Query().Get("state") != "st-c" || loc.Query().Get("iss") != f.issuer {
		t.Fatalf("approved: %v", loc)
	}
	// The continuation is used up with the decision.
	if resp, _ := post("approve"); resp.StatusCode != 400 {
		t.Errorf("the same form again: %d", resp.StatusCode)
	}
}
