package tests

import (
	"context"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/keygate/keygate/internal/testkit"
)

// Federation: Keygate A signs users in through Keygate B, a partner
// OpenID Connect IdP. A is a confidential client of B (client keygate-a);
// a relying party "rp" of A runs the code flow at A.
const (
	fedPartnerSecret = "keygate-a-at-b-secret-0123456789"
	fedRPSecret      = "rp-at-a-secret-0123456789abcdef"
	fedRPRedirect    = "http://127.0.0.1:1/rp/callback" // never reached: the jar client stops there
	fedBobPassword   = "bob-correct-horse-battery"
)

// fedPort picks a free loopback port (the node binds it right after).
func fedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// fedNodeConfig is a node with a token profile at /oauth/v2 signing in at
// the authn profile /authn (password, plus extra authenticators), on an
// sqlite file db, and clients.
func fedNodeConfig(t *testing.T, addr, db, authenticators, clients string) string {
	t.Helper()
	dir := t.TempDir()
	k := testkit.KeyFile(t, t.TempDir(), "k1")
	testkit.WriteFiles(t, dir, map[string]string{
		"00.yaml": fmt.Sprintf(`schema: 1
service-roles:
  default: {zone: local, profiles: [token, authn]}
zones:
  local: {data-source: db}
data-sources:
  db: {type: sqlite, path: %s}
`, db),
		"10.yaml": testkit.KeysConfig(map[string]string{"k1": k}),
		"20.yaml": fmt.Sprintf(`profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: http://%s/oauth/v2
    signing-keys: [k1]
    endpoints: [discovery, jwks, authorize, token, userinfo, logout]
    authentication-profile: authn
  authn:
    type: authentication
    path: /authn
    authenticators:
      password: {type: password, argon2: {memory-kib: 1024, iterations: 1, parallelism: 1}}
%s`, addr, authenticators),
		"30.yaml": "clients:\n" + clients,
	})
	return dir
}

// fedBrowser is a cookie-keeping HTTP client that follows redirects until
// one leaves for the RP's redirect URI. Go's cookie jar keeps Secure
// cookies away from http://, as no browser does for loopback addresses;
// this jar sends them (a browser treats 127.0.0.1 as a secure context).
type fedBrowser struct {
	c    *http.Client
	jars map[string]map[string]*http.Cookie // host → name → cookie (path ignored)
}

func newFedBrowser() *fedBrowser {
	b := &fedBrowser{jars: map[string]map[string]*http.Cookie{}}
	b.c = &http.Client{Timeout: 15 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	return b
}

// do sends req with the jar's cookies, then follows redirects (GET) while
// they stay on a Keygate node; it returns the last response and its body.
func (b *fedBrowser) do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	for i := 0; i < 20; i++ {
		for _, c := range b.jars[req.URL.Host] {
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", req.Method, req.URL, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if b.jars[req.URL.Host] == nil {
				b.jars[req.URL.Host] = map[string]*http.Cookie{}
			}
			if c.MaxAge < 0 || c.Value == "" {
				delete(b.jars[req.URL.Host], c.Name)
			} else {
				b.jars[req.URL.Host][c.Name] = c
			}
		}
		loc := resp.Header.Get("Location")
		if resp.StatusCode/100 != 3 || loc == "" {
			return resp, string(body)
		}
		next, err := req.URL.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(next.String(), fedRPRedirect) {
			return resp, string(body)
		}
		req, _ = http.NewRequest(http.MethodGet, next.String(), nil)
	}
	t.Fatal("too many redirects")
	return nil, ""
}

func (b *fedBrowser) get(t *testing.T, u string) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.do(t, req)
}

var fedCSRF = regexp.MustCompile(`name="csrf" value="([A-Za-z0-9_.-]+)"`)
var fedReturnTo = regexp.MustCompile(`name="return_to" value="([^"]+)"`)

// login fills in the login page (body, served at pageURL) as username.
func (b *fedBrowser) login(t *testing.T, pageURL, body, username, pw string) (*http.Response, string) {
	t.Helper()
	csrf, rt := fedCSRF.FindStringSubmatch(body), fedReturnTo.FindStringSubmatch(body)
	if csrf == nil || rt == nil {
		t.Fatalf("no login form at %s:\n%s", pageURL, body)
	}
	u, _ := url.Parse(pageURL)
	form := url.Values{"csrf": {csrf[1]}, "return_to": {html.UnescapeString(rt[1])}, "username": {username}, "password": {pw}}
	req, _ := http.NewRequest(http.MethodPost, u.Scheme+"://"+u.Host+"/authn/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(t, req)
}

func TestFederationThroughPartnerKeygate(t *testing.T) {
	addrA, addrB := fedPort(t), fedPort(t)
	issuerA, issuerB := "http://"+addrA+"/oauth/v2", "http://"+addrB+"/oauth/v2"
	callbackA := "http://" + addrA + "/authn/oidc/b/callback"
	dbB := filepath.Join(t.TempDir(), "b.db")

	// B: the partner, with bob and a client for A.
	dirB := fedNodeConfig(t, addrB, dbB, "", fmt.Sprintf(`  keygate-a:
    profile: token
    secret: %s
    redirect-uris: [%s]
    grant-types: [authorization_code]
    scopes: [openid, profile, email]
`, fedPartnerSecret, callbackA))
	add := exec.Command(binary, "user", "add", "--create-db", "--dir", dirB, "--zone", "local", "--username", "bob",
		"--name", "Bob Partner", "--email", "bob@partner.example", "--email-verified")
	add.Env = []string{"PATH=" + os.Getenv("PATH")}
	add.Stdin = strings.NewReader(fedBobPassword)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("keygate user add: %v\n%s", err, out)
	}
	startNode(t, dirB, "KEYGATE_LISTEN_ADDR="+addrB)

	// A: signs in with its own users or through B.
	rp := fmt.Sprintf(`  rp:
    profile: token
    secret: %s
    redirect-uris: [%s]
    grant-types: [authorization_code]
    scopes: [openid, profile, email]
`, fedRPSecret, fedRPRedirect)
	oidcAuth := func(provisioning string) string {
		return fmt.Sprintf(`      b:
        type: oidc
        display-name: Partner B
        issuer: %s
        client-id: keygate-a
        client-secret: %s
        provisioning: %s
        claims: {username: preferred_username}
`, issuerB, fedPartnerSecret, provisioning)
	}
	dirA := fedNodeConfig(t, addrA, filepath.Join(t.TempDir(), "a.db"), oidcAuth("existing"), rp)
	a := startNode(t, dirA, "KEYGATE_LISTEN_ADDR="+addrA)

	cfg := &oauth2.Config{ClientID: "rp", ClientSecret: fedRPSecret, RedirectURL: fedRPRedirect,
		Scopes:   []string{"openid", "profile", "email"},
		Endpoint: oauth2.Endpoint{AuthURL: issuerA + "/authorize", TokenURL: issuerA + "/token", AuthStyle: oauth2.AuthStyleInHeader}}
	authorize := func() (url string, verifier, nonce string) {
		verifier, nonce = oauth2.GenerateVerifier(), "n-"+oauth2.GenerateVerifier()[:12]
		return cfg.AuthCodeURL("rp-state", oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), verifier, nonce
	}

	// provisioning: existing, and A has no bob: a clear error page at A.
	br := newFedBrowser()
	authURL, _, _ := authorize()
	resp, body := br.get(t, authURL)
	if resp.StatusCode != 200 || !strings.Contains(body, `>Sign in with Partner B</a>`) {
		t.Fatalf("A's login page: %d\n%s", resp.StatusCode, body)
	}
	start := regexp.MustCompile(`href="(/authn/oidc/b/start\?return_to=[^"]+)"`).FindStringSubmatch(body)
	if start == nil {
		t.Fatalf("no federation link:\n%s", body)
	}
	startURL := "http://" + addrA + html.UnescapeString(start[1])
	resp, body = br.get(t, startURL) // → B's authorize → B's login page
	if resp.StatusCode != 200 || resp.Request.URL.Host != addrB || !strings.Contains(body, `name="password"`) {
		t.Fatalf("B's login page: %d %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	resp, body = br.login(t, resp.Request.URL.String(), body, "bob", fedBobPassword)
	if resp.StatusCode != http.StatusForbidden || resp.Request.URL.Host != addrA ||
		!strings.Contains(body, "There is no account here for the user you signed in as") {
		t.Fatalf("existing-only, unknown bob: %d %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}

	before := a.Status()
	// provisioning: jit. The browser still has its session at B: no second
	// password; bob is created at A and signed in.
	testkit.WriteAtomic(t, filepath.Join(dirA, "20.yaml"), fedReplace(t, filepath.Join(dirA, "20.yaml"), "provisioning: existing", "provisioning: jit"))
	testkit.WaitFor(t, 10*time.Second, "A reloads with provisioning jit", func() bool {
		s := a.Status()
		return s.ConfigHash != before.ConfigHash && s.LoadedSince(before)
	})
	authURL, verifier, nonce := authorize()
	resp, body = br.get(t, authURL)
	start = regexp.MustCompile(`href="(/authn/oidc/b/start\?return_to=[^"]+)"`).FindStringSubmatch(body)
	if start == nil {
		t.Fatalf("no federation link:\n%s", body)
	}
	resp, body = br.get(t, "http://"+addrA+html.UnescapeString(start[1]))
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc.String(), fedRPRedirect) {
		t.Fatalf("jit sign-in did not end at the RP: %d %s %s\n%s", resp.StatusCode, resp.Request.URL, loc, body)
	}
	if loc.Query().Get("state") != "rp-state" || loc.Query().Get("code") == "" {
		t.Fatalf("RP callback %s", loc)
	}

	// The RP exchanges the code at A and verifies A's ID token.
	ctx := oidc.ClientContext(context.Background(), &http.Client{Timeout: 10 * time.Second})
	provider, err := oidc.NewProvider(ctx, issuerA)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange at A: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: "rp"}).Verify(ctx, raw)
	if err != nil || idt.Nonce != nonce {
		t.Fatalf("A's ID token: %v (nonce %q)", err, idt.Nonce)
	}
	var claims struct {
		ACR string   `json:"acr"`
		AMR []string `json:"amr"`
	}
	_ = idt.Claims(&claims)
	if claims.ACR != "urn:keygate:acr:federated:b" || len(claims.AMR) != 1 || claims.AMR[0] != "fed" {
		t.Errorf("acr %q amr %v", claims.ACR, claims.AMR)
	}
	ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		PreferredUsername string `json:"preferred_username"`
		Name              string `json:"name"`
		Email             string `json:"email"`
		EmailVerified     bool   `json:"email_verified"`
	}
	_ = ui.Claims(&info)
	if ui.Subject != idt.Subject || info.PreferredUsername != "bob" || info.Name != "Bob Partner" ||
		info.Email != "bob@partner.example" || !info.EmailVerified {
		t.Errorf("A's userinfo for the provisioned bob: sub %s/%s %+v", ui.Subject, idt.Subject, info)
	}
	if !strings.Contains(a.Logs.String(), "oidc: user provisioned") {
		t.Error("A did not log the provisioning")
	}
}

func fedReplace(t *testing.T, path, old, new string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), old) {
		t.Fatalf("%s: %v, or no %q", path, err, old)
	}
	return strings.Replace(string(b), old, new, 1)
}
