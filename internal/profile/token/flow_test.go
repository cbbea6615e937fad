package token

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/gofiber/fiber/v2"
	"golang.org/x/oauth2"

	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/password"
	"github.com/keygate/keygate/internal/profile/authn"
	"github.com/keygate/keygate/internal/secret"
	"github.com/keygate/keygate/internal/session"
	"github.com/keygate/keygate/internal/storage/model"
)

var cheapArgon2 = config.Argon2Params{MemoryKiB: 1024, Iterations: 1, Parallelism: 1}

const (
	alicePassword = "correct horse battery staple"
	webSecret     = "web-secret-0123456789abcdef"
	otherSecret   = "other-secret-0123456789abcdef"
	webRedirect   = "https://rp.example.com/cb"
	webLogout     = "https://rp.example.com/bye"
	spaRedirect   = "http://127.0.0.1:9999/cb"

	gatewaySecret      = "gateway-secret-0123456789abcdef"
	delegatorSecret    = "delegator-secret-0123456789abc"
	batchSecret        = "batch-secret-0123456789abcdef"
	impersonatorSecret = "impersonator-secret-0123456789"
	billingAPI         = "https://billing.example.com"
)

// flowEnv is a token profile serving every endpoint, on a real listener
// (for go-oidc discovery), with a user and helpers for the code flow.
type flowEnv struct {
	*env
	user     model.User
	provider *oidc.Provider
	ctx      context.Context
}

func newFlowEnv(t *testing.T) *flowEnv { return newFlowEnvKeys(t, keySet(t)) }

func newFlowEnvKeys(t *testing.T, ks *keys.Set) *flowEnv { return newFlowEnvWith(t, ks, false) }

// newFlowEnvWith builds the env; withAuthn mounts the real authentication
// profile (login page, password authenticator) on the same server.
func newFlowEnvWith(t *testing.T, ks *keys.Set, withAuthn bool) *flowEnv {
	t.Helper()
	return newFlowEnvEdit(t, ks, withAuthn, nil)
}

// newFlowEnvEdit is newFlowEnvWith with edit (may be nil) applied to the
// token profile and the clients before the profile is built.
func newFlowEnvEdit(t *testing.T, ks *keys.Set, withAuthn bool, edit func(cp *config.Profile, clients map[string]*config.Client)) *flowEnv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String() + "/oauth/v2"
	e := newEnv(t, issuer) // for its store; the profile is rebuilt below

	cp := tokenProfile("token", "/oauth/v2", issuer, config.TokenEndpoints...)
	cp.AuthenticationProfile = "authn"
	cp.DeviceCodes = config.DevicePolicy{Lifetime: config.Duration(10 * time.Minute), Interval: config.Duration(time.Second)}
	ap := &config.Profile{Type: config.ProfileAuthentication, Path: "/authn"}
	ap.Name = "authn"
	snap := snapshot(cp, ap)
	code := []string{config.GrantAuthorizationCode, config.GrantRefreshToken}
	snap.Clients = map[string]*config.Client{
		"web": {Profile: "token", Secret: secret.New(webSecret), TokenEndpointAuthMethod: config.AuthSecretBasic,
			GrantTypes: code, Scopes: []string{"openid", "profile", "email", model.ScopeOfflineAccess},
			RedirectURIs: []string{webRedirect, "https://rp.example.com/cb?tenant=1"}, PostLogoutRedirectURIs: []string{webLogout}},
		"spa": {Profile: "token", TokenEndpointAuthMethod: config.AuthNone, AllowedOrigins: []string{"http://127.0.0.1:9999"},
			GrantTypes: code, Scopes: []string{"openid", "profile"}, RedirectURIs: []string{spaRedirect}},
		"other": {Profile: "token", Secret: secret.New(otherSecret), TokenEndpointAuthMethod: config.AuthSecretBasic,
			GrantTypes: code, Scopes: []string{"openid"}, RedirectURIs: []string{"https://other.example.com/cb"}},
		"consent-app": {Profile: "token", TokenEndpointAuthMethod: config.AuthNone, Consent: true,
			GrantTypes: code, Scopes: []string{"openid", "email"}, RedirectURIs: []string{"https://consent.example.com/cb"}},
		"svc": {Profile: "token", Secret: secret.New(svcSecret), TokenEndpointAuthMethod: config.AuthSecretBasic,
			GrantTypes: []string{config.GrantClientCredentials}, Scopes: []string{"a:read"}},
		"rs": {Profile: "token", Secret: secret.New(rsSecret), IntrospectAllTokens: true},
		// A backend that signs its users in and calls other services for
		// them (token exchange, both uses); batch's tokens are for it.
		"gateway": {Profile: "token", Secret: secret.New(gatewaySecret), TokenEndpointAuthMethod: config.AuthSecretBasic,
			GrantTypes: append(slices.Clone(code), config.GrantClientCredentials, config.GrantTokenExchange),
			Scopes:     []string{"openid", "profile", "a:read", "a:write"}, RedirectURIs: []string{"https://gw.example.com/cb"},
			Audiences:     []string{issuer, billingAPI, "delegator", "impersonator"},
			TokenExchange: &config.TokenExchangePolicy{Delegation: true, Impersonation: true}},
		"delegator": {Profile: "token", Secret: secret.New(delegatorSecret), TokenEndpointAuthMethod: config.AuthSecretBasic,
			GrantTypes: []string{config.GrantTokenExchange, config.GrantClientCredentials}, Scopes: []string{"openid", "a:read"},
			TokenExchange: &config.TokenExchangePolicy{Delegation: true}},
		"impersonator": {Profile: "token", Secret: secret.New(impersonatorSecret), TokenEndpointAuthMethod: config.AuthSecretBasic,
			GrantTypes: []string{config.GrantTokenExchange}, Scopes: []string{"openid", "a:read"},
			TokenExchange: &config.TokenExchangePolicy{Impersonation: true}},
		"tv": {Profile: "token", TokenEndpointAuthMethod: config.AuthNone,
			GrantTypes: []string{config.GrantDeviceCode, config.GrantRefreshToken}, Scopes: []string{"openid", "profile", model.ScopeOfflineAccess}},
		"tv2": {Profile: "token", TokenEndpointAuthMethod: config.AuthNone, GrantTypes: []string{config.GrantDeviceCode}, Scopes: []string{"openid"}},
		"batch": {Profile: "token", Secret: secret.New(batchSecret), TokenEndpointAuthMethod: config.AuthSecretBasic,
			GrantTypes: []string{config.GrantClientCredentials}, Audiences: []string{"gateway"}},
	}
	if edit != nil {
		edit(cp, snap.Clients)
	}
	for n, c := range snap.Clients {
		c.Name = n
	}
	p, err := New(snap, cp, ks, Deps{Store: e.store, Zone: "local", Metrics: e.metrics,
		Now: func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true, BodyLimit: 64 << 10, CaseSensitive: true})
	p.Mount(app)
	if withAuthn {
		ap.Authenticators = map[string]*config.Authenticator{"password": {Name: "password", Type: "password", Argon2: cheapArgon2,
			Lockout: config.LockoutPolicy{MaxFailures: 5, MaxFailuresPerIP: 20, Window: config.Duration(15 * time.Minute)}}}
		ap.Sessions = config.SessionPolicy{IdleLifetime: config.Duration(time.Hour), AbsoluteLifetime: config.Duration(12 * time.Hour)}
		lp, err := authn.New(snap, ap, authn.Deps{Store: e.store, Zone: "local"})
		if err != nil {
			t.Fatal(err)
		}
		lp.Mount(app)
	}
	e.p, e.app, e.issuer = p, app, issuer
	go func() { _ = app.Listener(ln) }()
	// Closing the listener, not app.Shutdown: fasthttp 1.51 races between
	// Shutdown and RequestCtx.Done (the context of store calls).
	t.Cleanup(func() { _ = ln.Close() })

	u := model.User{ID: model.NewID(), Zone: "local", Username: "alice", Status: model.UserActive,
		PasswordHash: password.Hash(alicePassword, password.FromConfig(cheapArgon2)),
		Claims:       map[string]any{"name": "Alice Example", "given_name": "Alice", "email": "alice@example.com", "email_verified": true},
		CreatedAt:    time.Now(), UpdatedAt: time.Now()}
	if err := e.store.Users().Create(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	ctx := oidc.ClientContext(context.Background(), http.DefaultClient)
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatal(err)
	}
	return &flowEnv{env: e, user: u, provider: provider, ctx: ctx}
}

// login creates an SSO session for the user and returns its cookie.
func (f *flowEnv) login() (string, model.Session) {
	f.t.Helper()
	ck, s, err := session.Create(context.Background(), f.store, f.user, "urn:keygate:acr:password", []string{"pwd"},
		session.Policy{Idle: time.Hour, Absolute: 12 * time.Hour}, time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return ck, s
}

// authorize sends an authorization request in-process (method GET unless
// form is set) and returns the response and its Location.
func (f *flowEnv) authorize(cookie, query string) (*http.Response, *url.URL) {
	f.t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/oauth/v2/authorize?"+query, nil)
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: session.CookieName, Value: cookie})
	}
	resp, err := f.app.Test(req, -1)
	if err != nil {
		f.t.Fatal(err)
	}
	var loc *url.URL
	if l := resp.Header.Get("Location"); l != "" {
		if loc, err = url.Parse(l); err != nil {
			f.t.Fatal(err)
		}
	}
	return resp, loc
}

func (f *flowEnv) config(client, sec, redirect string) *oauth2.Config {
	ep := f.provider.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	if sec == "" {
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{ClientID: client, ClientSecret: sec, Endpoint: ep, RedirectURL: redirect,
		Scopes: []string{oidc.ScopeOpenID, "profile"}}
}

// code runs authorize with a session and returns the code.
// exchange gets a code with the session cookie and exchanges it with
// cfg's x/oauth2 client and PKCE verifier v; failures end the test.
func (f *flowEnv) exchange(cookie string, cfg *oauth2.Config, v string) *oauth2.Token {
	f.t.Helper()
	tok, err := cfg.Exchange(f.ctx, f.code(cookie, cfg, v), oauth2.VerifierOption(v))
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

func (f *flowEnv) code(cookie string, cfg *oauth2.Config, verifier string, opts ...oauth2.AuthCodeOption) string {
	f.t.Helper()
	u, _ := url.Parse(cfg.AuthCodeURL("st-1", append(opts, oauth2.S256ChallengeOption(verifier))...))
	resp, loc := f.authorize(cookie, u.RawQuery)
	if resp.StatusCode != http.StatusFound || loc == nil {
		f.t.Fatalf("authorize: %d", resp.StatusCode)
	}
	q := loc.Query()
	if q.Get("code") == "" || q.Get("state") != "st-1" || q.Get("iss") != f.issuer {
		f.t.Fatalf("authorize redirect %s", loc)
	}
	return q.Get("code")
}

func TestCodeFlowConfidential(t *testing.T) {
	f := newFlowEnv(t)
	cfg := f.config("web", webSecret, webRedirect)
	cfg.Scopes = append(cfg.Scopes, "email")
	verifier := oauth2.GenerateVerifier()

	// No session: the browser is sent to the login page with return_to.
	u, _ := url.Parse(cfg.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier), oidc.Nonce("n-0S6")))
	resp, loc := f.authorize("", u.RawQuery)
	if resp.StatusCode != http.StatusFound || loc.Path != "/authn/login" {
		t.Fatalf("no session: %d %v", resp.StatusCode, loc)
	}
	rt, err := url.Parse(loc.Query().Get("return_to"))
	if err != nil || rt.Path != "/oauth/v2/authorize" || rt.Query().Get("client_id") != "web" || rt.Query().Get(paramLoginAfter) == "" {
		t.Fatalf("return_to %q", loc.Query().Get("return_to"))
	}

	// Signed in: back at the same URL, a code.
	cookie, sess := f.login()
	code := f.code(cookie, cfg, verifier, oidc.Nonce("n-0S6"))
	tok, err := cfg.Exchange(f.ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" || tok.TokenType != "Bearer" {
		t.Fatalf("token %+v", tok)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := f.provider.Verifier(&oidc.Config{ClientID: "web"}).Verify(f.ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Fatalf("at_hash: %v", err)
	}
	var claims struct {
		AuthTime int64    `json:"auth_time"`
		SID      string   `json:"sid"`
		ACR      string   `json:"acr"`
		AMR      []string `json:"amr"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if idt.Nonce != "n-0S6" || idt.Subject != f.user.ID || claims.SID != sess.ID || claims.AuthTime != sess.AuthTime.Unix() ||
		claims.ACR != "urn:keygate:acr:password" || len(claims.AMR) != 1 || idt.AccessTokenHash == "" {
		t.Fatalf("id token claims %+v %+v", idt, claims)
	}

	// userinfo, claims by scope.
	ui, err := f.provider.UserInfo(f.ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatal(err)
	}
	var uc map[string]any
	_ = ui.Claims(&uc)
	if ui.Subject != f.user.ID || ui.Email != "alice@example.com" || !ui.EmailVerified || uc["name"] != "Alice Example" || uc["preferred_username"] != "alice" {
		t.Fatalf("userinfo %v", uc)
	}

	// Refresh through x/oauth2: a new access token, a rotated refresh
	// token and a new ID token without nonce.
	tok.Expiry = time.Now().Add(-time.Minute)
	tok2, err := cfg.TokenSource(f.ctx, tok).Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok2.AccessToken == tok.AccessToken || tok2.RefreshToken == tok.RefreshToken || tok2.RefreshToken == "" {
		t.Fatal("refresh did not rotate")
	}
	idt2, err := f.provider.Verifier(&oidc.Config{ClientID: "web"}).Verify(f.ctx, tok2.Extra("id_token").(string))
	if err != nil || idt2.Nonce != "" || idt2.Subject != f.user.ID {
		t.Fatalf("refreshed id token: %v %+v", err, idt2)
	}
	// Narrower scope is allowed, wider refused.
	r, m := f.post("/token", "grant_type=refresh_token&scope=openid&refresh_token="+tok2.RefreshToken, basicAuth("web", webSecret))
	if r.StatusCode != 200 || m["scope"] != "openid" {
		t.Fatalf("narrow refresh: %d %v", r.StatusCode, m)
	}
	r, m = f.post("/token", "grant_type=refresh_token&scope=openid+email&refresh_token="+m["refresh_token"].(string), basicAuth("web", webSecret))
	if r.StatusCode != 200 {
		t.Fatalf("refresh keeps the original scope: %d %v", r.StatusCode, m)
	}
}

// With an EdDSA signing key, at_hash is the left half of SHA-512, as
// go-oidc checks it.
func TestCodeFlowEdDSA(t *testing.T) {
	ks := keySet(t)
	ed, err := keys.NewSet([]*keys.Signer{ks.All[1], ks.All[0]})
	if err != nil {
		t.Fatal(err)
	}
	f := newFlowEnvKeys(t, ed)
	cookie, _ := f.login()
	cfg := f.config("spa", "", spaRedirect)
	v := oauth2.GenerateVerifier()
	tok := f.exchange(cookie, cfg, v)
	idt, err := f.provider.Verifier(&oidc.Config{ClientID: "spa", SupportedSigningAlgs: []string{"EdDSA"}}).Verify(f.ctx, tok.Extra("id_token").(string))
	if err != nil {
		t.Fatal(err)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Fatalf("at_hash: %v", err)
	}
}

func TestCodeFlowPublicClient(t *testing.T) {
	f := newFlowEnv(t)
	cookie, _ := f.login()
	cfg := f.config("spa", "", spaRedirect)
	verifier := oauth2.GenerateVerifier()
	code := f.code(cookie, cfg, verifier)
	tok, err := cfg.Exchange(f.ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	idt, err := f.provider.Verifier(&oidc.Config{ClientID: "spa"}).Verify(f.ctx, tok.Extra("id_token").(string))
	if err != nil || idt.VerifyAccessToken(tok.AccessToken) != nil {
		t.Fatalf("id token: %v", err)
	}
	// A public client without PKCE gets no code.
	_, loc := f.authorize(cookie, "response_type=code&client_id=spa&redirect_uri="+url.QueryEscape(spaRedirect)+"&scope=openid&state=s")
	if loc.Query().Get("error") != "invalid_request" || loc.Query().Get("state") != "s" {
		t.Fatalf("no PKCE: %v", loc)
	}
	// A public client cannot pretend to be a confidential one.
	r, m := f.post("/token", "grant_type=authorization_code&client_id=web&code=x&redirect_uri="+url.QueryEscape(webRedirect), "")
	if r.StatusCode != 401 || m["error"] != "invalid_client" {
		t.Fatalf("confidential client without secret: %d %v", r.StatusCode, m)
	}
}

// Errors about the client or the redirect URI are shown, never redirected.
func TestAuthorizeRedirectURIAttacks(t *testing.T) {
	f := newFlowEnv(t)
	cookie, _ := f.login()
	ch := "&code_challenge=" + oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()) + "&code_challenge_method=S256"
	for name, q := range map[string]string{
		"unregistered":   "client_id=web&redirect_uri=" + url.QueryEscape("https://evil.example.com/cb"),
		"trailing slash": "client_id=web&redirect_uri=" + url.QueryEscape(webRedirect+"/"),
		"other port":     "client_id=web&redirect_uri=" + url.QueryEscape("https://rp.example.com:8443/cb"),
		"extra query":    "client_id=web&redirect_uri=" + url.QueryEscape(webRedirect+"?x=1"),
		"case":           "client_id=web&redirect_uri=" + url.QueryEscape("https://RP.example.com/cb"),
		"other client's": "client_id=web&redirect_uri=" + url.QueryEscape("https://other.example.com/cb"),
		"missing":        "client_id=web",
		"unknown client": "client_id=nobody&redirect_uri=" + url.QueryEscape(webRedirect),
		"no client":      "redirect_uri=" + url.QueryEscape(webRedirect),
		"dup redirect":   "client_id=web&redirect_uri=" + url.QueryEscape(webRedirect) + "&redirect_uri=" + url.QueryEscape("https://evil.example.com/"),
		"dup client":     "client_id=web&client_id=other&redirect_uri=" + url.QueryEscape(webRedirect),
	} {
		resp, loc := f.authorize(cookie, "response_type=code&scope=openid&state=s"+ch+"&"+q)
		if resp.StatusCode != http.StatusBadRequest || loc != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s: %d %v, want an error page", name, resp.StatusCode, loc)
		}
	}
	// A registered URI with its own query keeps it.
	resp, loc := f.authorize(cookie, "response_type=code&scope=openid&state=s&client_id=web&redirect_uri="+url.QueryEscape("https://rp.example.com/cb?tenant=1")+ch)
	if resp.StatusCode != http.StatusFound || loc.Query().Get("tenant") != "1" || loc.Query().Get("code") == "" {
		t.Fatalf("registered query: %v", loc)
	}
}

// Other errors go back to the registered redirect URI with state and iss.
func TestAuthorizeRedirectedErrors(t *testing.T) {
	f := newFlowEnv(t)
	cookie, _ := f.login()
	base := "client_id=web&redirect_uri=" + url.QueryEscape(webRedirect) + "&state=xyz"
	ch := "&code_challenge=" + oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	for _, c := range []struct{ name, cookie, q, want string }{
		{"prompt=none without session", "", "&response_type=code&scope=openid&prompt=none&code_challenge_method=S256" + ch, "login_required"},
		{"response_type token", cookie, "&response_type=token&scope=openid&code_challenge_method=S256" + ch, "unsupported_response_type"},
		{"id_token", cookie, "&response_type=id_token&scope=openid&code_challenge_method=S256" + ch, "unsupported_response_type"},
		{"no response_type", cookie, "&scope=openid&code_challenge_method=S256" + ch, "invalid_request"},
		{"plain PKCE", cookie, "&response_type=code&scope=openid&code_challenge_method=plain" + ch, "invalid_request"},
		{"no method (plain)", cookie, "&response_type=code&scope=openid" + ch, "invalid_request"},
		{"no challenge", cookie, "&response_type=code&scope=openid&code_challenge_method=S256", "invalid_request"},
		{"scope beyond client", cookie, "&response_type=code&scope=openid+admin&code_challenge_method=S256" + ch, "invalid_scope"},
		{"dup state", cookie, "&state=abc&response_type=code&scope=openid&code_challenge_method=S256" + ch, "invalid_request"},
		{"prompt none+login", cookie, "&response_type=code&scope=openid&prompt=none+login&code_challenge_method=S256" + ch, "invalid_request"},
		{"bad max_age", cookie, "&response_type=code&scope=openid&max_age=-1&code_challenge_method=S256" + ch, "invalid_request"},
		{"request object", cookie, "&response_type=code&scope=openid&request=x&code_challenge_method=S256" + ch, "request_not_supported"},
	} {
		resp, loc := f.authorize(c.cookie, base+c.q)
		if resp.StatusCode != http.StatusFound || loc == nil {
			t.Errorf("%s: %d, want a redirect", c.name, resp.StatusCode)
			continue
		}
		q := loc.Query()
		if loc.Host != "rp.example.com" || q.Get("error") != c.want || q.Get("iss") != f.issuer || q.Get("code") != "" ||
			(c.name != "dup state" && q.Get("state") != "xyz") {
			t.Errorf("%s: redirected to %s, want error %s", c.name, loc, c.want)
		}
	}
	// A client without the authorization_code grant.
	f.p.clients["web"].grants[config.GrantAuthorizationCode] = false
	_, loc := f.authorize(cookie, base+"&response_type=code&scope=openid&code_challenge_method=S256"+ch)
	f.p.clients["web"].grants[config.GrantAuthorizationCode] = true
	if loc.Query().Get("error") != "unauthorized_client" {
		t.Errorf("no code grant: %v", loc)
	}
}

func TestPromptLoginAndMaxAge(t *testing.T) {
	f := newFlowEnv(t)
	cookie, _ := f.login()
	cfg := f.config("web", webSecret, webRedirect)
	verifier := oauth2.GenerateVerifier()
	for _, opt := range []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0")} {
		u, _ := url.Parse(cfg.AuthCodeURL("st-1", opt, oauth2.S256ChallengeOption(verifier)))
		// The session is older than this request: log in again.
		f.offset.Store(int64(2 * time.Second))
		resp, loc := f.authorize(cookie, u.RawQuery)
		if resp.StatusCode != http.StatusFound || loc.Path != "/authn/login" {
			t.Fatalf("%s: %v", u.RawQuery, loc)
		}
		rt, _ := url.Parse(loc.Query().Get("return_to"))
		ts, _, _ := strings.Cut(rt.Query().Get(paramLoginAfter), ".")
		after, _ := strconv.ParseInt(ts, 10, 64)
		if after <= time.Now().Unix() {
			t.Fatalf("%s after %d", paramLoginAfter, after)
		}
		// Still the old session on return: login again, not a code.
		if _, loc := f.authorize(cookie, rt.RawQuery); loc.Path != "/authn/login" {
			t.Fatalf("old session accepted for prompt=login: %v", loc)
		}
		// A fresh login (the session of the login page) satisfies it.
		f.offset.Store(0)
		time.Sleep(time.Until(time.Unix(after, 0)))
		fresh, _ := f.login()
		if _, loc := f.authorize(fresh, rt.RawQuery); loc.Query().Get("code") == "" {
			t.Fatalf("fresh login refused: %v", loc)
		}
		// A forged marker is ignored: login again. The client controls the
		// URL, so an unsigned time at or before the old session's login, a
		// bad MAC, or a real marker moved to another request (other state)
		// would otherwise skip the fresh login prompt=login asks for.
		f.offset.Store(int64(2 * time.Second))
		old := time.Now().Add(-time.Minute).Unix()
		moved, _ := url.Parse(cfg.AuthCodeURL("st-2", opt, oauth2.S256ChallengeOption(verifier)))
		movedQ := moved.Query()
		movedQ.Set(paramLoginAfter, rt.Query().Get(paramLoginAfter))
		for name, marker := range map[string]string{
			"ancient":       "1",
			"unsigned":      strconv.FormatInt(old, 10),
			"bad mac":       strconv.FormatInt(old, 10) + ".AAAAAAAAAAAAAAAAAAAAAA",
			"other request": "",
		} {
			q := rt.Query()
			q.Set(paramLoginAfter, marker)
			if marker == "" {
				q = movedQ
			}
			for _, c := range []string{cookie, fresh} {
				if _, loc := f.authorize(c, q.Encode()); loc.Path != "/authn/login" {
					t.Fatalf("%s: forged %s accepted: %v", name, paramLoginAfter, loc)
				}
			}
		}
		f.offset.Store(0)
	}
}

func TestCodeAttacks(t *testing.T) {
	f := newFlowEnv(t)
	cookie, _ := f.login()
	cfg := f.config("web", webSecret, webRedirect)
	exchange := func(client, sec, code, redirect, verifier string) (int, map[string]any) {
		body := "grant_type=authorization_code&code=" + url.QueryEscape(code) + "&redirect_uri=" + url.QueryEscape(redirect)
		if verifier != "" {
			body += "&code_verifier=" + verifier
		}
		authz := basicAuth(client, sec)
		if sec == "" {
			body += "&client_id=" + client
			authz = ""
		}
		r, m := f.post("/token", body, authz)
		return r.StatusCode, m
	}
	v := oauth2.GenerateVerifier()

	// Missing and wrong verifier.
	for name, ver := range map[string]string{"missing": "", "wrong": oauth2.GenerateVerifier(), "short": "abc"} {
		code := f.code(cookie, cfg, v)
		if st, m := exchange("web", webSecret, code, webRedirect, ver); st != 400 || m["error"] != "invalid_grant" {
			t.Errorf("%s verifier: %d %v", name, st, m)
		}
	}
	// Another client's code; a different redirect URI.
	code := f.code(cookie, cfg, v)
	if st, m := exchange("other", otherSecret, code, webRedirect, v); st != 400 || m["error"] != "invalid_grant" {
		t.Errorf("other client's code: %d %v", st, m)
	}
	code = f.code(cookie, cfg, v)
	if st, m := exchange("web", webSecret, code, "https://rp.example.com/cb?tenant=1", v); st != 400 || m["error"] != "invalid_grant" {
		t.Errorf("other redirect_uri: %d %v", st, m)
	}
	// Expired.
	code = f.code(cookie, cfg, v)
	f.offset.Store(int64(2 * time.Minute))
	if st, m := exchange("web", webSecret, code, webRedirect, v); st != 400 || m["error"] != "invalid_grant" {
		t.Errorf("expired code: %d %v", st, m)
	}
	f.offset.Store(0)

	// Reuse: the second exchange fails and revokes what the first issued.
	code = f.code(cookie, cfg, v)
	st, first := exchange("web", webSecret, code, webRedirect, v)
	if st != 200 {
		t.Fatalf("first exchange: %d %v", st, first)
	}
	if f.introspect(first["access_token"].(string))["active"] != true {
		t.Fatal("first access token inactive before reuse")
	}
	if st, m := exchange("web", webSecret, code, webRedirect, v); st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("reused code: %d %v", st, m)
	}
	if f.introspect(first["access_token"].(string))["active"] != false {
		t.Error("access token of a reused code still active")
	}
	r, m := f.post("/token", "grant_type=refresh_token&refresh_token="+first["refresh_token"].(string), basicAuth("web", webSecret))
	if r.StatusCode != 400 || m["error"] != "invalid_grant" {
		t.Errorf("refresh token of a reused code: %d %v", r.StatusCode, m)
	}
	if evs, _ := f.store.Audit().List(context.Background(), model.AuditQuery{Type: audit.CodeReuse}); len(evs) != 1 {
		t.Errorf("audit events %v", evs)
	}
	// A code is no client credential: a public client cannot redeem a
	// confidential client's code.
	code = f.code(cookie, cfg, v)
	if st, m := exchange("spa", "", code, webRedirect, v); st != 400 || m["error"] != "invalid_grant" {
		t.Errorf("spa with web's code: %d %v", st, m)
	}
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	f := newFlowEnv(t)
	cookie, _ := f.login()
	cfg := f.config("web", webSecret, webRedirect)
	v := oauth2.GenerateVerifier()
	tok := f.exchange(cookie, cfg, v)
	refresh := func(client, sec, rt string) (int, map[string]any) {
		r, m := f.post("/token", "grant_type=refresh_token&refresh_token="+url.QueryEscape(rt), basicAuth(client, sec))
		return r.StatusCode, m
	}
	st, m := refresh("web", webSecret, tok.RefreshToken)
	if st != 200 {
		t.Fatalf("refresh: %d %v", st, m)
	}
	rt2 := m["refresh_token"].(string)
	// Another client cannot use it.
	if st, m := refresh("other", otherSecret, rt2); st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("other client: %d %v", st, m)
	}
	// Reuse of the first token revokes the family: the newest fails too.
	if st, m := refresh("web", webSecret, tok.RefreshToken); st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", st, m)
	}
	if st, m := refresh("web", webSecret, rt2); st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("newest after reuse: %d %v", st, m)
	}
	// Wider scope than granted is refused.
	tok, _ = cfg.Exchange(f.ctx, f.code(cookie, cfg, v), oauth2.VerifierOption(v))
	r, m := f.post("/token", "grant_type=refresh_token&scope=openid+profile+email&refresh_token="+tok.RefreshToken, basicAuth("web", webSecret))
	if r.StatusCode != 400 || m["error"] != "invalid_scope" {
		t.Fatalf("wider scope: %d %v", r.StatusCode, m)
	}
	// Revocation (RFC 7009) of a refresh token ends its family.
	f.revoke(tok.RefreshToken, basicAuth("web", webSecret), "")
	if st, _ := refresh("web", webSecret, tok.RefreshToken); st != 400 {
		t.Fatal("revoked refresh token still works")
	}
}

func TestUserinfoErrors(t *testing.T) {
	f := newFlowEnv(t)
	get := func(authz string) *http.Response {
		req := httptest.NewRequest(http.MethodGet, "/oauth/v2/userinfo", nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, _ := f.do(req)
		return resp
	}
	if r := get(""); r.StatusCode != 401 || r.Header.Get("WWW-Authenticate") != `Bearer realm="`+f.issuer+`"` {
		t.Errorf("no token: %d %q", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
	if r := get("Bearer nonsense"); r.StatusCode != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("bad token: %d %q", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
	cc := f.issue("svc", svcSecret) // client_credentials: no openid
	if r := get("Bearer " + cc); r.StatusCode != 403 || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Errorf("client_credentials token: %d %q", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
	// A revoked user token.
	cookie, _ := f.login()
	cfg := f.config("web", webSecret, webRedirect)
	v := oauth2.GenerateVerifier()
	tok := f.exchange(cookie, cfg, v)
	if r := get("Bearer " + tok.AccessToken); r.StatusCode != 200 {
		t.Fatalf("userinfo: %d", r.StatusCode)
	}
	// POST with the token in the body (RFC 6750 §2.2).
	r, m := f.post("/userinfo", "access_token="+tok.AccessToken, "")
	if r.StatusCode != 200 || m["sub"] != f.user.ID || m["email"] != nil {
		t.Fatalf("POST userinfo: %d %v", r.StatusCode, m)
	}
	if r, _ := f.post("/userinfo", "access_token="+tok.AccessToken, "Bearer "+tok.AccessToken); r.StatusCode != 400 {
		t.Errorf("two methods: %d", r.StatusCode)
	}
	f.revoke(tok.AccessToken, basicAuth("web", webSecret), "")
	if r := get("Bearer " + tok.AccessToken); r.StatusCode != 401 {
		t.Errorf("revoked token: %d", r.StatusCode)
	}
}

func TestLogout(t *testing.T) {
	f := newFlowEnv(t)
	cfg := f.config("web", webSecret, webRedirect)
	v := oauth2.GenerateVerifier()
	logout := func(method, cookie, params string) (*http.Response, *url.URL) {
		var req *http.Request
		if method == http.MethodGet {
			req = httptest.NewRequest(method, "/oauth/v2/logout?"+params, nil)
		} else {
			req = httptest.NewRequest(method, "/oauth/v2/logout", strings.NewReader(params))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: session.CookieName, Value: cookie})
		}
		resp, err := f.app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		var loc *url.URL
		if l := resp.Header.Get("Location"); l != "" {
			loc, _ = url.Parse(l)
		}
		return resp, loc
	}
	alive := func(cookie string) bool {
		_, err := f.store.Sessions().Get(context.Background(), model.HashSecret(cookie))
		return err == nil
	}
	signIn := func() (string, string) {
		cookie, _ := f.login()
		tok := f.exchange(cookie, cfg, v)
		return cookie, tok.Extra("id_token").(string)
	}

	// id_token_hint naming the session and a registered URI: signed out
	// and redirected with state.
	cookie, idt := signIn()
	resp, loc := logout(http.MethodGet, cookie, "id_token_hint="+idt+"&post_logout_redirect_uri="+url.QueryEscape(webLogout)+"&state=bye1")
	if resp.StatusCode != http.StatusFound || loc.String() != webLogout+"?state=bye1" || alive(cookie) {
		t.Fatalf("logout: %d %v alive=%v", resp.StatusCode, loc, alive(cookie))
	}
	if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, session.CookieName+"=;") {
		t.Errorf("cookie not cleared: %q", sc)
	}

	// Open redirect attempts: never followed; a signed-out page instead.
	for _, attempt := range []string{
		"id_token_hint=" + idt + "&post_logout_redirect_uri=" + url.QueryEscape("https://evil.example.com/"),
		"id_token_hint=" + idt + "&post_logout_redirect_uri=" + url.QueryEscape(webLogout+"/../../evil"),
		"id_token_hint=" + idt + "&post_logout_redirect_uri=" + url.QueryEscape(webLogout+"?next=https://evil.example.com"),
		"id_token_hint=" + idt + "&post_logout_redirect_uri=" + url.QueryEscape("//evil.example.com"),
		"id_token_hint=" + idt + "&post_logout_redirect_uri=" + url.QueryEscape(webRedirect), // a redirect URI, not a logout one
		"post_logout_redirect_uri=" + url.QueryEscape(webLogout),                             // no client named
		"client_id=other&post_logout_redirect_uri=" + url.QueryEscape(webLogout),             // another client's URI
	} {
		resp, loc := logout(http.MethodGet, "", attempt)
		if loc != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s: %d %v, want the signed-out page", attempt, resp.StatusCode, loc)
		}
	}
	// A forged hint, and a hint for another client than client_id.
	if resp, _ := logout(http.MethodGet, "", "id_token_hint="+idt[:len(idt)-4]+"AAAA"); resp.StatusCode != 400 {
		t.Errorf("forged hint: %d", resp.StatusCode)
	}
	if resp, _ := logout(http.MethodGet, "", "client_id=spa&id_token_hint="+idt); resp.StatusCode != 400 {
		t.Errorf("hint for another client: %d", resp.StatusCode)
	}
	if resp, _ := logout(http.MethodGet, "", "id_token_hint="+f.issue("svc", svcSecret)); resp.StatusCode != 400 {
		t.Errorf("access token as hint: %d", resp.StatusCode)
	}

	// Without a hint naming the session, the user confirms (a GET alone,
	// e.g. an <img> on another site, does not sign out).
	cookie, _ = signIn()
	resp, _ = logout(http.MethodGet, cookie, "client_id=web&post_logout_redirect_uri="+url.QueryEscape(webLogout))
	if resp.StatusCode != 200 || !alive(cookie) {
		t.Fatalf("confirmation: %d alive=%v", resp.StatusCode, alive(cookie))
	}
	_, other := signIn() // a hint of another session is no confirmation
	if resp, _ := logout(http.MethodGet, cookie, "id_token_hint="+other); resp.StatusCode != 200 || !alive(cookie) {
		t.Fatalf("other session's hint: %d alive=%v", resp.StatusCode, alive(cookie))
	}
	resp, loc = logout(http.MethodPost, cookie, "client_id=web&confirm=yes&post_logout_redirect_uri="+url.QueryEscape(webLogout))
	if resp.StatusCode != http.StatusFound || loc.String() != webLogout || alive(cookie) {
		t.Fatalf("confirmed: %d %v alive=%v", resp.StatusCode, loc, alive(cookie))
	}
	// After logout, prompt=none gets login_required.
	u, _ := url.Parse(cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("prompt", "none")))
	if _, loc := f.authorize(cookie, u.RawQuery); loc.Query().Get("error") != "login_required" {
		t.Fatalf("after logout: %v", loc)
	}
}

func TestConsent(t *testing.T) {
	f := newFlowEnv(t)
	cookie, _ := f.login()
	cfg := f.config("consent-app", "", "https://consent.example.com/cb")
	cfg.Scopes = []string{"openid", "email"}
	v := oauth2.GenerateVerifier()
	u, _ := url.Parse(cfg.AuthCodeURL("st-c", oauth2.S256ChallengeOption(v)))
	resp, loc := f.authorize(cookie, u.RawQuery)
	if resp.StatusCode != 200 || loc != nil {
		t.Fatalf("consent page: %d %v", resp.StatusCode, loc)
	}
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`name="consent_csrf" value="([^"]+)"`).FindSubmatch(body)
	if m == nil || !strings.Contains(string(body), "Your email address") {
		t.Fatalf("consent page:\n%s", body)
	}
	token := string(m[1])
	post := func(cookie, extra string) (*http.Response, *url.URL) {
		req := httptest.NewRequest(http.MethodPost, "/oauth/v2/authorize", strings.NewReader(u.RawQuery+extra))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: session.CookieName, Value: cookie})
		resp, err := f.app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := url.Parse(resp.Header.Get("Location"))
		return resp, l
	}
	// No token, a wrong one, or another session's: the page again, 403.
	other, _ := f.login()
	for _, c := range []struct{ cookie, extra string }{
		{cookie, "&consent=approve"},
		{cookie, "&consent=approve&consent_csrf=AAAA"},
		{other, "&consent=approve&consent_csrf=" + token},
	} {
		if resp, _ := post(c.cookie, c.extra); resp.StatusCode != 403 {
			t.Errorf("%s: %d, want 403", c.extra, resp.StatusCode)
		}
	}
	// A GET cannot approve.
	if resp, _ := f.authorize(cookie, u.RawQuery+"&consent=approve&consent_csrf="+token); resp.StatusCode != 403 {
		t.Errorf("GET approve: %d", resp.StatusCode)
	}
	if _, loc := post(cookie, "&consent=deny&consent_csrf="+token); loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "st-c" {
		t.Errorf("deny: %v", loc)
	}
	_, loc = post(cookie, "&consent=approve&consent_csrf="+token)
	if loc.Query().Get("code") == "" {
		t.Fatalf("approve: %v", loc)
	}
	if _, err := cfg.Exchange(f.ctx, loc.Query().Get("code"), oauth2.VerifierOption(v)); err != nil {
		t.Fatal(err)
	}
	// prompt=none cannot show the page.
	u2, _ := url.Parse(cfg.AuthCodeURL("st-c", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("prompt", "none")))
	if _, loc := f.authorize(cookie, u2.RawQuery); loc.Query().Get("error") != "consent_required" {
		t.Errorf("prompt=none: %v", loc)
	}
}

// A public client's refresh tokens must rotate (RFC 9700 §4.14.2).
func TestPublicClientNeedsRotation(t *testing.T) {
	cp := tokenProfile("token", "/oauth/v2", "https://id.example.com/oauth/v2", config.TokenEndpoints...)
	cp.AuthenticationProfile = "authn"
	rotate := false
	cp.RefreshTokens.Rotate = &rotate
	ap := &config.Profile{Type: config.ProfileAuthentication, Path: "/authn"}
	ap.Name = "authn"
	snap := snapshot(cp, ap)
	snap.Clients["spa"] = &config.Client{Meta: config.Meta{Name: "spa"}, Profile: "token", TokenEndpointAuthMethod: config.AuthNone,
		GrantTypes: []string{config.GrantAuthorizationCode, config.GrantRefreshToken}, RedirectURIs: []string{spaRedirect}}
	if _, err := New(snap, cp, keySet(t), Deps{}); err == nil || !strings.Contains(err.Error(), `public client "spa"`) {
		t.Fatalf("err = %v", err)
	}
}

// TestLoginHandoff runs the handoff with the real authentication profile:
// authorize → login page → login POST → back to authorize → code → tokens.
func TestLoginHandoff(t *testing.T) {
	f := newFlowEnvWith(t, keySet(t), true)
	cfg := f.config("web", webSecret, webRedirect)
	v := oauth2.GenerateVerifier()
	u, _ := url.Parse(cfg.AuthCodeURL("st-h", oauth2.S256ChallengeOption(v), oidc.Nonce("n-h")))
	_, loc := f.authorize("", u.RawQuery)
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
	resp, err = f.app.Test(req, -1)
	if err != nil {
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
	if loc == nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != "st-h" {
		t.Fatalf("back at authorize: %v", loc)
	}
	tok, err := cfg.Exchange(f.ctx, loc.Query().Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	idt, err := f.provider.Verifier(&oidc.Config{ClientID: "web"}).Verify(f.ctx, tok.Extra("id_token").(string))
	if err != nil || idt.Nonce != "n-h" || idt.Subject != f.user.ID {
		t.Fatalf("id token: %v %+v", err, idt)
	}
}
