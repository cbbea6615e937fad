package authn

import (
	"encoding/json"
	"github.com/keygate/keygate/internal/storage/model"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/secret"
)

// fakePartner serves only discovery: enough for start.
func fakePartner(t *testing.T) string {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": srv.URL, "authorization_endpoint": srv.URL + "/authorize", "token_endpoint": srv.URL + "/token",
			"jwks_uri": srv.URL + "/jwks", "id_token_signing_alg_values_supported": []string{"ES256"},
		})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func oidcFixture(t *testing.T, issuer string) *fixture {
	return newFixture(t, func(ap *config.Profile) {
		ap.Authenticators["partner"] = &config.Authenticator{Name: "partner", Type: "oidc", Issuer: issuer,
			ClientID: "keygate-a", ClientSecret: secret.New("partner-secret-0123456789"), DisplayName: "Partner Corp",
			RedirectURI: "https://a.example.com/authn/oidc/partner/callback", Provisioning: config.ProvisioningJIT}
	})
}

func (f *fixture) start(rt string) response {
	return f.do(httptest.NewRequest("GET", "/authn/oidc/partner/start?return_to="+url.QueryEscape(rt), nil))
}

func (f *fixture) callback(cookie, query string) response {
	req := httptest.NewRequest("GET", "/authn/oidc/partner/callback?"+query, nil)
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: OIDCCookie, Value: cookie})
	}
	return f.do(req)
}

func TestOIDCLoginPageButton(t *testing.T) {
	f := oidcFixture(t, "http://127.0.0.1:1")
	r := f.do(httptest.NewRequest("GET", f.login, nil))
	want := `href="/authn/oidc/partner/start?return_to=` + strings.ReplaceAll(url.QueryEscape(returnTo), "&", "&amp;") + `">Sign in with Partner Corp</a>`
	if r.status != 200 || !strings.Contains(r.body, want) {
		t.Fatalf("login page %d lacks %s:\n%s", r.status, want, r.body)
	}
}

func TestOIDCStart(t *testing.T) {
	f := oidcFixture(t, fakePartner(t))
	for _, rt := range []string{"", "https://evil.example/oauth/v2/authorize", "//evil.example/oauth/v2/authorize", "/other/authorize", "/oauth/v2/token"} {
		if r := f.start(rt); r.status != 400 || r.cookies[OIDCCookie] != nil || !strings.Contains(r.body, msgBadLink) {
			t.Errorf("return_to %q: %d %v", rt, r.status, r.cookies[OIDCCookie])
		}
	}
	r := f.start(returnTo)
	if r.status != 303 {
		t.Fatalf("start: %d %s", r.status, r.body)
	}
	loc, _ := url.Parse(r.header.Get("Location"))
	q := loc.Query()
	if loc.Path != "/authorize" || q.Get("client_id") != "keygate-a" || q.Get("code_challenge_method") != "S256" ||
		q.Get("nonce") == "" || q.Get("state") == "" || q.Get("redirect_uri") != "https://a.example.com/authn/oidc/partner/callback" ||
		q.Get("scope") != "openid profile email" {
		t.Fatalf("authorize URL %s", loc)
	}
	ck := r.cookies[OIDCCookie]
	if ck == nil || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/authn/oidc/partner" {
		t.Fatalf("cookie %+v", ck)
	}
	st, err := f.prof.oidc["partner"].open(ck.Value, f.now)
	if err != nil || st.State != q.Get("state") || st.Nonce != q.Get("nonce") || st.ReturnTo != returnTo || st.Verifier == "" {
		t.Fatalf("sealed state %+v, %v", st, err)
	}
	if strings.Contains(ck.Value, st.Verifier) || strings.Contains(ck.Value, st.Nonce) {
		t.Fatal("the cookie shows its contents")
	}
}

func TestOIDCPartnerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	f := oidcFixture(t, down)
	r := f.start(returnTo)
	if r.status != http.StatusBadGateway || !strings.Contains(r.body, "Partner Corp cannot be reached") || r.cookies[OIDCCookie] != nil {
		t.Fatalf("partner down: %d %s", r.status, r.body)
	}
}

func TestOIDCStateCookie(t *testing.T) {
	f := oidcFixture(t, fakePartner(t))
	r := f.start(returnTo)
	ck := r.cookies[OIDCCookie].Value
	loc, _ := url.Parse(r.header.Get("Location"))
	state := loc.Query().Get("state")

	raw := []byte(ck)
	raw[len(raw)/2] ^= 1
	if raw[len(raw)/2] == '-' || raw[len(raw)/2] == '_' { // stay in the alphabet
		raw[len(raw)/2] = 'A'
	}
	cases := map[string]struct{ cookie, query string }{
		"missing cookie": {"", "state=" + state + "&code=c"},
		"tampered":       {string(raw), "state=" + state + "&code=c"},
		"garbage":        {"not-a-cookie!", "state=" + state + "&code=c"},
		"wrong state":    {ck, "state=" + state + "x&code=c"},
		"no state":       {ck, "code=c"},
	}
	for name, c := range cases {
		r := f.callback(c.cookie, c.query)
		if r.status != 400 || !strings.Contains(r.body, "took too long") {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
		if cl := r.cookies[OIDCCookie]; cl == nil || cl.MaxAge >= 0 && cl.Value != "" {
			t.Errorf("%s: the state cookie is not cleared: %+v", name, cl)
		}
	}
	// Another authenticator's (or secret's) cookie does not open.
	other, _ := newOIDC(&config.Authenticator{Name: "other", Type: "oidc", Issuer: "x", ClientID: "y",
		ClientSecret: secret.New("partner-secret-0123456789")}, "", nil)
	if _, err := other.open(ck, f.now); err == nil {
		t.Error("a cookie opened under another authenticator's name")
	}
	// The partner's error is shown as a failure, not trusted further.
	if r := f.callback(ck, "state="+state+"&error=access_denied"); r.status != 400 || !strings.Contains(r.body, "did not complete") {
		t.Errorf("partner error: %d %s", r.status, r.body)
	}
	// Expired: 10 minutes later the same cookie is refused.
	f.now = f.now.Add(oidcStateLifetime + time.Second)
	if r := f.callback(ck, "state="+state+"&code=c"); r.status != 400 || !strings.Contains(r.body, "took too long") {
		t.Errorf("expired: %d %s", r.status, r.body)
	}
	if n := len(f.events(AuditLoginFailure)); n != len(cases)+2 {
		t.Errorf("%d login_failure events, want %d", n, len(cases)+2)
	}
}

// allowed-domains admits only a verified email: a partner that omits
// email_verified (or sends false / a string) must not let a user claim an
// address in an allowed domain.
func TestOIDCDomainAllowedRequiresVerifiedEmail(t *testing.T) {
	o := &oidcAuth{domains: []string{"example.com"},
		claims: config.ClaimMapping{Name: "name", GivenName: "given_name", FamilyName: "family_name", Email: "email", EmailVerified: "email_verified"}}
	for _, tc := range []struct {
		in   map[string]any
		want bool
	}{
		{map[string]any{"email": "a@example.com", "email_verified": true}, true},
		{map[string]any{"email": "a@EXAMPLE.com", "email_verified": true}, true},
		{map[string]any{"email": "a@example.com"}, false},                           // absent
		{map[string]any{"email": "a@example.com", "email_verified": false}, false},  // unverified
		{map[string]any{"email": "a@example.com", "email_verified": "true"}, false}, // not a bool
		{map[string]any{"email": "a@other.com", "email_verified": true}, false},
		{map[string]any{"email_verified": true}, false},
	} {
		if got := o.domainAllowed(o.mapClaims(tc.in)); got != tc.want {
			t.Errorf("domainAllowed(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// A federated sign-in reaches only the account created for that partner
// identity, or (in `existing` mode) an unlinked local account: with `jit`,
// a partner user named "admin" cannot become the local admin.
func TestOIDCAccountLinking(t *testing.T) {
	linked := func(iss, sub string) model.User {
		return model.User{Claims: map[string]any{federatedLinkClaim: map[string]any{"iss": iss, "sub": sub}}}
	}
	local := model.User{Claims: map[string]any{"name": "Local Admin"}}
	for _, tc := range []struct {
		name string
		jit  bool
		user model.User
		sub  string
		want bool
	}{
		{"jit: the account it created", true, linked("https://b.example", "s1"), "s1", true},
		{"jit: another partner subject", true, linked("https://b.example", "s1"), "s2", false},
		{"jit: another partner's account", true, linked("https://c.example", "s1"), "s1", false},
		{"jit: a local account", true, local, "s1", false},
		{"existing: a local account", false, local, "s1", true},
		{"existing: an account linked to someone else", false, linked("https://b.example", "s1"), "s9", false},
	} {
		o := &oidcAuth{issuer: "https://b.example", jit: tc.jit}
		if got := o.mayUse(tc.user, tc.sub); got != tc.want {
			t.Errorf("%s: mayUse = %v, want %v", tc.name, got, tc.want)
		}
	}
}
