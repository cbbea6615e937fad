package tests

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// testRP is a relying party as a real web application writes one, on
// golang.org/x/oauth2 and github.com/coreos/go-oidc/v3, listening on
// 127.0.0.1:0:
//
//   - GET /login: a fresh state, nonce and PKCE verifier (S256), then a
//     redirect to the issuer's authorize endpoint;
//   - GET /callback: checks state, exchanges the code with the verifier,
//     verifies the ID token (signature, iss, aud, exp, nonce, at_hash),
//     calls userinfo, refreshes (the token is marked expired, so the
//     TokenSource must use the refresh token), and shows "signed in as
//     <preferred_username>" with the claims; any failure shows an error
//     page (#rp-error) with the reason.
//
// The outcome of the last callback is kept for the test (result).
type testRP struct {
	t        *testing.T
	ln       net.Listener
	base     string // http://127.0.0.1:port
	clientID string
	secret   string

	// backend, when set, carries the token, userinfo and refresh requests
	// (the back channel); discovery and JWKS use the default client.
	backend *http.Client

	mu       sync.Mutex
	cfg      *oauth2.Config
	provider *oidc.Provider
	pending  map[string]pendingLogin // by state
	result   *rpResult
	done     chan struct{} // closed at the first completed callback (ok or not)
}

type pendingLogin struct{ verifier, nonce string }

// rpResult is what the RP saw in one callback.
type rpResult struct {
	Err              error
	IDTokenVerified  bool // signature, iss, aud, exp, nonce and at_hash
	Subject          string
	AuthTime         time.Time
	UserinfoSubject  string
	UserinfoEmail    string
	Username         string // userinfo preferred_username
	Claims           map[string]any
	AccessToken      string
	RefreshToken     string
	Refreshed        bool // a new access token from the refresh token
	RefreshedAccess  string
	RefreshedRefresh string
}

// newTestRP listens at once, so that RedirectURL (base + "/callback") is
// known before the identity server's configuration is written.
func newTestRP(t *testing.T, clientID, secret string) *testRP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rp := &testRP{t: t, ln: ln, base: "http://" + ln.Addr().String(), clientID: clientID, secret: secret,
		pending: map[string]pendingLogin{}, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", rp.login)
	mux.HandleFunc("GET /callback", rp.callback)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return rp
}

func (rp *testRP) RedirectURL() string { return rp.base + "/callback" }
func (rp *testRP) LoginURL() string    { return rp.base + "/login" }

// discover runs OpenID Connect discovery against issuer and builds the
// client configuration from it.
func (rp *testRP) discover(ctx context.Context, issuer string) error {
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, &http.Client{Timeout: 5 * time.Second}), issuer)
	if err != nil {
		return err
	}
	ep := provider.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.provider = provider
	rp.cfg = &oauth2.Config{ClientID: rp.clientID, ClientSecret: rp.secret, Endpoint: ep, RedirectURL: rp.RedirectURL(),
		Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}
	return nil
}

// backChannel returns ctx carrying the client for token and userinfo calls.
func (rp *testRP) backChannel(ctx context.Context) context.Context {
	c := rp.backend
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	return context.WithValue(ctx, oauth2.HTTPClient, c)
}

func (rp *testRP) login(w http.ResponseWriter, r *http.Request) {
	rp.mu.Lock()
	cfg := rp.cfg
	rp.mu.Unlock()
	if cfg == nil {
		http.Error(w, "relying party not configured", http.StatusServiceUnavailable)
		return
	}
	state, nonce, verifier := oauth2.GenerateVerifier(), oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
	rp.mu.Lock()
	rp.pending[state] = pendingLogin{verifier: verifier, nonce: nonce}
	rp.mu.Unlock()
	http.Redirect(w, r, cfg.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusFound)
}

var rpPage = template.Must(template.New("rp").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Test RP</title></head><body>
{{if .Err}}<h1 id="rp-error">sign-in failed</h1><pre id="reason">{{.Err}}</pre>
{{else}}<h1 id="signed-in">signed in as {{.Username}}</h1>
<dl id="claims">{{range .Claims}}<dt>{{.K}}</dt><dd>{{.V}}</dd>{{end}}</dl>
<p id="refreshed">refreshed: {{.Refreshed}}</p>{{end}}
</body></html>`))

func (rp *testRP) callback(w http.ResponseWriter, r *http.Request) {
	res := rp.complete(r)
	rp.mu.Lock()
	first := rp.result == nil
	rp.result = res
	rp.mu.Unlock()
	if first {
		close(rp.done)
	}
	type kv struct{ K, V string }
	var claims []kv
	for k, v := range res.Claims {
		claims = append(claims, kv{k, fmt.Sprint(v)})
	}
	sort.Slice(claims, func(i, j int) bool { return claims[i].K < claims[j].K })
	status := http.StatusOK
	if res.Err != nil {
		status = http.StatusBadGateway
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = rpPage.Execute(w, map[string]any{"Err": res.Err, "Username": res.Username, "Claims": claims, "Refreshed": res.Refreshed})
}

// complete is the RP's side of the callback, step by step.
func (rp *testRP) complete(r *http.Request) *rpResult {
	res := &rpResult{}
	fail := func(format string, args ...any) *rpResult {
		res.Err = fmt.Errorf(format, args...)
		return res
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		return fail("authorization error %s: %s", e, q.Get("error_description"))
	}
	rp.mu.Lock()
	pl, ok := rp.pending[q.Get("state")]
	delete(rp.pending, q.Get("state"))
	cfg, provider := rp.cfg, rp.provider
	rp.mu.Unlock()
	if !ok {
		return fail("unknown state %q", q.Get("state"))
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	back := rp.backChannel(ctx)

	tok, err := cfg.Exchange(back, q.Get("code"), oauth2.VerifierOption(pl.verifier))
	if err != nil {
		return fail("code exchange: %w", err)
	}
	res.AccessToken, res.RefreshToken = tok.AccessToken, tok.RefreshToken
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return fail("no id_token in the token response")
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: cfg.ClientID}).Verify(ctx, rawID)
	if err != nil {
		return fail("ID token: %w", err)
	}
	if idt.Nonce != pl.nonce {
		return fail("ID token nonce %q, want %q", idt.Nonce, pl.nonce)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		return fail("ID token at_hash: %w", err)
	}
	var idClaims struct {
		AuthTime int64 `json:"auth_time"`
	}
	if err := idt.Claims(&idClaims); err != nil {
		return fail("ID token claims: %w", err)
	}
	res.IDTokenVerified, res.Subject, res.AuthTime = true, idt.Subject, time.Unix(idClaims.AuthTime, 0)

	ui, err := provider.UserInfo(back, oauth2.StaticTokenSource(tok))
	if err != nil {
		return fail("userinfo: %w", err)
	}
	res.UserinfoSubject, res.UserinfoEmail = ui.Subject, ui.Email
	if err := ui.Claims(&res.Claims); err != nil {
		return fail("userinfo claims: %w", err)
	}
	res.Username, _ = res.Claims["preferred_username"].(string)
	if ui.Subject != idt.Subject {
		return fail("userinfo sub %q, ID token sub %q", ui.Subject, idt.Subject)
	}

	if tok.RefreshToken == "" {
		return fail("no refresh token")
	}
	expired := *tok
	expired.Expiry = time.Now().Add(-time.Minute)
	nt, err := cfg.TokenSource(back, &expired).Token()
	if err != nil {
		return fail("refresh: %w", err)
	}
	if nt.AccessToken == "" || nt.AccessToken == tok.AccessToken {
		return fail("refresh returned the same or no access token")
	}
	res.Refreshed, res.RefreshedAccess, res.RefreshedRefresh = true, nt.AccessToken, nt.RefreshToken
	return res
}

// waitResult waits for the first callback's outcome.
func (rp *testRP) waitResult(timeout time.Duration) (*rpResult, error) {
	select {
	case <-rp.done:
		rp.mu.Lock()
		defer rp.mu.Unlock()
		return rp.result, nil
	case <-time.After(timeout):
		return nil, errors.New("the relying party's callback was not reached")
	}
}

// dialOnly returns a client that connects to addr (host:port) whatever
// the URL's host: the requests keep the issuer's URLs (and Host header),
// but reach another node.
func dialOnly(addr string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}
