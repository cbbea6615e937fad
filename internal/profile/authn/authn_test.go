package authn

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/clientip"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/password"
	"github.com/keygate/keygate/internal/session"
	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/testkit"
)

var cheap = config.Argon2Params{MemoryKiB: 1024, Iterations: 1, Parallelism: 1}

const returnTo = "/oauth/v2/authorize?client_id=web&response_type=code&state=xyz"

type fixture struct {
	t     *testing.T
	st    model.Store
	app   *fiber.App
	prof  *Profile
	now   time.Time
	snap  *config.Snapshot
	login string             // GET URL of the login page with returnTo
	ips   *clientip.Resolver // Deps.ClientIP of the next build
}

func newFixture(t *testing.T, edit func(*config.Profile)) *fixture {
	t.Helper()
	st := testkit.SQLite(t)
	ap := &config.Profile{Meta: config.Meta{Name: "authn"}, Type: config.ProfileAuthentication, Path: "/authn",
		Authenticators: map[string]*config.Authenticator{"password": {Name: "password", Type: "password", Argon2: cheap,
			Lockout: config.LockoutPolicy{MaxFailures: 5, MaxFailuresPerIP: 20, Window: config.Duration(15 * time.Minute)}}},
		Sessions: config.SessionPolicy{IdleLifetime: config.Duration(time.Hour), AbsoluteLifetime: config.Duration(12 * time.Hour)},
	}
	if edit != nil {
		edit(ap)
	}
	snap := &config.Snapshot{Entries: config.Entries{Profiles: map[string]*config.Profile{
		"authn": ap,
		"token": {Meta: config.Meta{Name: "token"}, Type: config.ProfileToken, Path: "/oauth/v2", AuthenticationProfile: "authn"},
		"other": {Meta: config.Meta{Name: "other"}, Type: config.ProfileToken, Path: "/other"}, // signs in elsewhere
	}}}
	f := &fixture{t: t, st: st, snap: snap, now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	f.build()
	f.login = "/authn/login?return_to=" + url.QueryEscape(returnTo)
	return f
}

// build (re)builds the profile from f.snap, as a reload does.
func (f *fixture) build() {
	f.t.Helper()
	p, err := New(f.snap, f.snap.Profiles["authn"], Deps{Store: f.st, Zone: "local", Now: func() time.Time { return f.now }, ClientIP: f.ips})
	if err != nil {
		f.t.Fatal(err)
	}
	f.prof = p
	f.app = fiber.New()
	p.Mount(f.app)
}

func (f *fixture) addUser(username, pw string, params config.Argon2Params) model.User {
	f.t.Helper()
	u := model.User{ID: model.NewID(), Zone: "local", Username: username, PasswordHash: password.Hash(pw, password.FromConfig(params)),
		Status: model.UserActive, CreatedAt: f.now, UpdatedAt: f.now}
	if err := f.st.Users().Create(context.Background(), u); err != nil {
		f.t.Fatal(err)
	}
	return u
}

type response struct {
	status  int
	body    string
	header  http.Header
	cookies map[string]*http.Cookie
}

func (f *fixture) do(req *http.Request) response {
	f.t.Helper()
	resp, err := f.app.Test(req, -1)
	if err != nil {
		f.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, body: string(b), header: resp.Header, cookies: map[string]*http.Cookie{}}
	for _, c := range resp.Cookies() {
		r.cookies[c.Name] = c
	}
	return r
}

var csrfField = regexp.MustCompile(`name="csrf" value="([A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{22})"`)

// form GETs the login page and returns its CSRF token (field and cookie).
func (f *fixture) form() string {
	f.t.Helper()
	r := f.do(httptest.NewRequest("GET", f.login, nil))
	if r.status != 200 {
		f.t.Fatalf("GET login: %d %s", r.status, r.body)
	}
	m := csrfField.FindStringSubmatch(r.body)
	c := r.cookies[CSRFCookie]
	if m == nil || c == nil || c.Value != m[1] {
		f.t.Fatalf("csrf field %v, cookie %v", m, c)
	}
	return m[1]
}

func (f *fixture) post(cookieTok, formTok, username, pw, rt string) response {
	f.t.Helper()
	v := url.Values{"username": {username}, "password": {pw}, "return_to": {rt}}
	if formTok != "" {
		v.Set("csrf", formTok)
	}
	req := httptest.NewRequest("POST", "/authn/login", strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cookieTok != "" {
		req.AddCookie(&http.Cookie{Name: CSRFCookie, Value: cookieTok})
	}
	return f.do(req)
}

func (f *fixture) events(typ string) []model.AuditEvent {
	f.t.Helper()
	ev, err := f.st.Audit().List(context.Background(), model.AuditQuery{Type: typ, Limit: 1000})
	if err != nil {
		f.t.Fatal(err)
	}
	return ev
}

func TestLoginPage(t *testing.T) {
	f := newFixture(t, nil)
	r := f.do(httptest.NewRequest("GET", f.login, nil))
	for _, want := range []string{`<html lang="en">`, `<label for="username">Username</label>`, `<label for="password">Password</label>`,
		`autocomplete="username"`, `autocomplete="current-password"`, `name="csrf"`, `action="/authn/login"`,
		`name="return_to" value="/oauth/v2/authorize?client_id=web&amp;response_type=code&amp;state=xyz"`, `href="/authn/static/keygate.css"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("login page lacks %q:\n%s", want, r.body)
		}
	}
	if strings.Contains(r.body, "<script") || strings.Contains(r.body, "http://") || strings.Contains(r.body, "https://") {
		t.Error("login page has a script or an external asset")
	}
	c := r.cookies[CSRFCookie]
	if c == nil || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" ||
		!strings.HasPrefix(c.Name, "__Host-") {
		t.Errorf("csrf cookie %+v", c)
	}
	for h, want := range map[string]string{"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Content-Type": "text/html; charset=utf-8"} {
		if got := r.header.Get(h); got != want {
			t.Errorf("%s = %q", h, got)
		}
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	// An existing valid CSRF cookie is reused (several tabs); a made-up one is not.
	req := httptest.NewRequest("GET", f.login, nil)
	req.AddCookie(&http.Cookie{Name: CSRFCookie, Value: c.Value})
	if r := f.do(req); !strings.Contains(r.body, `value="`+c.Value+`"`) || r.cookies[CSRFCookie] != nil {
		t.Errorf("cookie not reused")
	}
	req = httptest.NewRequest("GET", f.login, nil)
	req.AddCookie(&http.Cookie{Name: CSRFCookie, Value: strings.Repeat("a", 43)})
	if r := f.do(req); strings.Contains(r.body, strings.Repeat("a", 43)) || r.cookies[CSRFCookie] == nil {
		t.Errorf("a made-up cookie was reused")
	}
	// Static files.
	r = f.do(httptest.NewRequest("GET", "/authn/static/keygate.css", nil))
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/css") {
		t.Errorf("css: %d %s", r.status, r.header.Get("Content-Type"))
	}
	if r := f.do(httptest.NewRequest("GET", "/authn/static/../authn.go", nil)); r.status != 404 {
		t.Errorf("traversal: %d", r.status)
	}
}

func TestLoginSuccess(t *testing.T) {
	f := newFixture(t, nil)
	u := f.addUser("alice", "correct horse battery", cheap)
	tok := f.form()
	r := f.post(tok, tok, "  Alice ", "correct horse battery", returnTo)
	if r.status != 303 || r.header.Get("Location") != returnTo {
		t.Fatalf("login: %d %q %s", r.status, r.header.Get("Location"), r.body)
	}
	c := r.cookies[session.CookieName]
	if c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.MaxAge != 12*3600 {
		t.Fatalf("session cookie %+v", c)
	}
	s, err := session.Lookup(context.Background(), f.st, c.Value, f.now.Add(time.Minute))
	if err != nil || s.UserID != u.ID || s.ACR != ACRPassword || len(s.AMR) != 1 || s.AMR[0] != "pwd" || !s.AuthTime.Equal(f.now) {
		t.Fatalf("session %+v %v", s, err)
	}
	ev := f.events(AuditLoginSuccess)
	if len(ev) != 1 || ev[0].Subject != "alice" || ev[0].Details["sid"] != s.ID || ev[0].Zone != "local" {
		t.Fatalf("audit %+v", ev)
	}
}

func TestReturnToRefused(t *testing.T) {
	f := newFixture(t, nil)
	f.addUser("alice", "pw-alice-1", cheap)
	for _, rt := range []string{
		"",
		"https://evil.example/oauth/v2/authorize",
		"//evil.example/oauth/v2/authorize",
		"/\\evil.example/oauth/v2/authorize",
		"/oauth/v2/token",
		"/other/authorize?x=1",     // a token profile that signs in elsewhere
		"/oauth/v2/authorize/../x", // not exactly the endpoint
		"/oauth/v2/%61uthorize",    // escaped
		"/oauth/v2/authorize#frag",
		"/oauth/v2/authorize\r\nSet-Cookie: x=y",
		"javascript:alert(1)",
		"/authn/login",
	} {
		r := f.do(httptest.NewRequest("GET", "/authn/login?return_to="+url.QueryEscape(rt), nil))
		if r.status != 400 || r.header.Get("Location") != "" || !strings.Contains(r.body, "sign-in link is not valid") {
			t.Errorf("GET %q: %d %q", rt, r.status, r.header.Get("Location"))
		}
		tok := f.form()
		r = f.post(tok, tok, "alice", "pw-alice-1", rt)
		if r.status != 400 || r.header.Get("Location") != "" || r.cookies[session.CookieName] != nil {
			t.Errorf("POST %q: %d %q", rt, r.status, r.header.Get("Location"))
		}
	}
}

func TestCSRF(t *testing.T) {
	f := newFixture(t, nil)
	f.addUser("alice", "pw-alice-1", cheap)
	tok := f.form()
	other := session.NewCookieValue()
	// A pair an attacker chose (the same value in cookie and field) is
	// refused: only tokens with Keygate's MAC count, so a planted cookie
	// cannot sign the victim in to the attacker's account.
	nonce, _, _ := strings.Cut(tok, ".")
	forged := session.NewCookieValue() + "." + strings.Repeat("A", 22)
	for name, c := range map[string][2]string{"missing both": {"", ""}, "missing cookie": {"", tok}, "missing field": {tok, ""}, "mismatch": {other, tok},
		"chosen pair": {other, other}, "forged MAC": {forged, forged}, "MAC of another nonce": {other + tok[len(nonce):], other + tok[len(nonce):]}} {
		r := f.post(c[0], c[1], "alice", "pw-alice-1", returnTo)
		if r.status != 403 || r.cookies[session.CookieName] != nil || !strings.Contains(r.body, "Your sign-in form expired; please try again") {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
		// A fresh form comes with it.
		if m := csrfField.FindStringSubmatch(r.body); m == nil || r.cookies[CSRFCookie] == nil || r.cookies[CSRFCookie].Value != m[1] {
			t.Errorf("%s: no fresh form", name)
		}
	}
	if ev := f.events(AuditLoginSuccess); len(ev) != 0 {
		t.Fatalf("logged in without CSRF: %+v", ev)
	}
}

func TestLockout(t *testing.T) {
	f := newFixture(t, nil)
	f.addUser("alice", "pw-alice-1", cheap)
	tok := f.form()
	for i := 1; i <= 4; i++ {
		r := f.post(tok, tok, "alice", "wrong", returnTo)
		if r.status != 400 || !strings.Contains(r.body, "Incorrect username or password.") {
			t.Fatalf("attempt %d: %d %s", i, r.status, r.body)
		}
		f.now = f.now.Add(time.Minute)
	}
	// Unknown users get the same answer.
	if r := f.post(tok, tok, "mallory", "wrong", returnTo); r.status != 400 || !strings.Contains(r.body, "Incorrect username or password.") {
		t.Fatalf("unknown user: %d", r.status)
	}
	// The fifth failure locks: the oldest failure leaves the window at 15m.
	r := f.post(tok, tok, "alice", "wrong", returnTo)
	if r.status != 429 || !strings.Contains(r.body, "Too many failed sign-in attempts. Try again in 11 minutes.") {
		t.Fatalf("5th: %d %s", r.status, r.body)
	}
	// Even the right password is refused now, and a node built from a new
	// snapshot (the count is in the database) agrees.
	f.build()
	if r := f.post(tok, tok, "alice", "pw-alice-1", returnTo); r.status != 429 || r.cookies[session.CookieName] != nil {
		t.Fatalf("locked, right password: %d", r.status)
	}
	if n := len(f.events(AuditLoginFailure)); n != 6 {
		t.Errorf("login_failure events: %d", n)
	}
	lock := f.events(AuditLockout)
	if len(lock) != 2 || lock[0].Subject != "alice" || lock[0].IP == "" {
		t.Errorf("lockout events: %+v", lock)
	}
	// After the window the right password works.
	f.now = f.now.Add(15 * time.Minute)
	if r := f.post(tok, tok, "alice", "pw-alice-1", returnTo); r.status != 303 {
		t.Fatalf("after window: %d %s", r.status, r.body)
	}
}

func TestIPLockout(t *testing.T) {
	f := newFixture(t, func(p *config.Profile) { p.Authenticators["password"].Lockout.MaxFailuresPerIP = 3 })
	tok := f.form()
	for i, u := range []string{"a", "b", "c"} {
		if r := f.post(tok, tok, u, "wrong", returnTo); r.status != 400 {
			t.Fatalf("attempt %d: %d", i, r.status)
		}
	}
	r := f.post(tok, tok, "d", "wrong", returnTo)
	if r.status != 429 || !strings.Contains(r.body, "Try again in 15 minutes.") {
		t.Fatalf("ip lockout: %d %s", r.status, r.body)
	}
}

// Parallel guesses from one IP cannot all slip past the per-IP limit
// before any failure is counted: each attempt is counted before the slow
// password check.
func TestIPLockoutUnderParallelGuesses(t *testing.T) {
	f := newFixture(t, func(p *config.Profile) { p.Authenticators["password"].Lockout.MaxFailuresPerIP = 3 })
	tok := f.form()
	statuses := make([]int, 12)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := url.Values{"username": {fmt.Sprintf("user%d", i)}, "password": {"wrong"}, "return_to": {returnTo}, "csrf": {tok}}
			req := httptest.NewRequest("POST", "/authn/login", strings.NewReader(v.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.AddCookie(&http.Cookie{Name: CSRFCookie, Value: tok})
			if resp, err := f.app.Test(req, -1); err == nil {
				statuses[i] = resp.StatusCode
			}
		}()
	}
	wg.Wait()
	checked := 0
	for _, s := range statuses {
		if s == 400 { // a password check that failed
			checked++
		} else if s != 429 {
			t.Errorf("status %d, want 400 or 429", s)
		}
	}
	if checked > 3 || len(f.events(AuditLoginFailure)) > 3 {
		t.Errorf("%d passwords checked (%d failures audited) from one IP, limit 3: %v", checked, len(f.events(AuditLoginFailure)), statuses)
	}
}

// postFrom posts the login form as fasthttp serves a connection from
// peer (app.Test always connects from 0.0.0.0), through h, the app's
// handler. Safe to call from several goroutines.
func postFrom(h fasthttp.RequestHandler, peer net.IP, tok, username, pw string, header ...string) *fasthttp.Response {
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI("/authn/login")
	req.Header.SetContentType("application/x-www-form-urlencoded")
	req.Header.SetCookie(CSRFCookie, tok)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	req.SetBodyString(url.Values{"username": {username}, "password": {pw}, "return_to": {returnTo}, "csrf": {tok}}.Encode())
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: peer, Port: 40000}, nil)
	h(&ctx)
	var resp fasthttp.Response
	ctx.Response.CopyTo(&resp)
	return &resp
}

// Parallel guesses at one account, from distinct IPs (so the per-IP limit
// does not stop them), cannot all pass the account check before any
// failure is in the audit log: each attempt is counted in memory before
// the slow password check, until its failure is written. At most
// max-failures passwords are checked.
func TestAccountLockoutUnderParallelGuesses(t *testing.T) {
	const maxFailures = 5
	f := newFixture(t, func(p *config.Profile) {
		p.Authenticators["password"].Lockout.MaxFailures = maxFailures
		p.Authenticators["password"].Lockout.MaxFailuresPerIP = 1000
	})
	f.addUser("alice", "pw-alice-1", cheap)
	tok := f.form()
	h := f.app.Handler()
	peer := func(i int) net.IP { return net.IPv4(198, 51, 100, byte(1+i)) }
	statuses := make([]int, 12)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			statuses[i] = postFrom(h, peer(i), tok, "alice", "wrong").StatusCode()
		}()
	}
	close(start)
	wg.Wait()

	var refused, checked400 int
	for _, s := range statuses {
		switch s {
		case 400: // a password check that failed and did not lock
			checked400++
		case 429: // refused before the check, or the check that locked
			refused++
		default:
			t.Errorf("status %d, want 400 or 429", s)
		}
	}
	failures := f.events(AuditLoginFailure) // one per password checked
	if len(failures) > maxFailures || checked400 > maxFailures || checked400 > len(failures) {
		t.Errorf("%d passwords checked (%d answered 400, %d 429) for one account, limit %d: %v",
			len(failures), checked400, refused, maxFailures, statuses)
	}
	if len(failures) == 0 {
		t.Errorf("no password was checked: %v", statuses)
	}
	ips := map[string]bool{}
	for i := range statuses {
		ips[peer(i).String()] = true
	}
	for _, e := range failures {
		if !ips[e.IP] || e.Subject != "alice" {
			t.Errorf("failure event from %q for %q, want one of the peers for alice", e.IP, e.Subject)
		}
	}
	// Nothing stays counted in flight, and later attempts fill the count
	// up to the limit exactly, never past it.
	accountsInFlight.mu.Lock()
	left := len(accountsInFlight.n)
	accountsInFlight.mu.Unlock()
	if left != 0 {
		t.Errorf("%d accounts still counted in flight", left)
	}
	for i := range maxFailures {
		postFrom(h, net.IPv4(203, 0, 113, byte(1+i)), tok, "alice", "wrong")
	}
	if n := len(f.events(AuditLoginFailure)); n != maxFailures {
		t.Errorf("login_failure events after the burst and %d more tries: %d, want %d", maxFailures, n, maxFailures)
	}
	if r := postFrom(h, net.IPv4(203, 0, 113, 99), tok, "alice", "pw-alice-1"); r.StatusCode() != 429 {
		t.Errorf("right password on a locked account: %d", r.StatusCode())
	}
}

// The client address (throttling, audit) is the peer unless the peer is
// a trusted proxy; then it comes from X-Forwarded-For (package clientip).
func TestClientIPBehindTrustedProxy(t *testing.T) {
	edit := func(p *config.Profile) { p.Authenticators["password"].Lockout.MaxFailuresPerIP = 2 }
	lb := net.IPv4(10, 0, 0, 2)
	xff := func(v string) []string { return []string{fasthttp.HeaderXForwardedFor, v} }

	// No trusted proxies: the header is ignored, the peer is the client.
	f := newFixture(t, edit)
	tok := f.form()
	h := f.app.Handler()
	for i := range 2 {
		if r := postFrom(h, lb, tok, fmt.Sprintf("u%d", i), "wrong", xff(fmt.Sprintf("203.0.113.%d", i+1))...); r.StatusCode() != 400 {
			t.Fatalf("attempt %d: %d", i, r.StatusCode())
		}
	}
	if r := postFrom(h, lb, tok, "u9", "wrong", xff("203.0.113.77")...); r.StatusCode() != 429 {
		t.Errorf("untrusted peer: X-Forwarded-For escaped the per-IP limit: %d", r.StatusCode())
	}
	for _, e := range f.events(AuditLoginFailure) {
		if e.IP != "10.0.0.2" {
			t.Errorf("untrusted peer: audit IP %q, want the peer", e.IP)
		}
	}

	// The load balancer is trusted: each client has its own budget, and a
	// spoofed leftmost entry changes nothing.
	f = newFixture(t, edit)
	var err error
	if f.ips, err = clientip.New([]string{"10.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
	f.build()
	h = f.app.Handler()
	for i, v := range []string{"203.0.113.9", "198.51.100.1, 203.0.113.9"} {
		if r := postFrom(h, lb, tok, fmt.Sprintf("u%d", i), "wrong", xff(v)...); r.StatusCode() != 400 {
			t.Fatalf("attempt %d: %d", i, r.StatusCode())
		}
	}
	if r := postFrom(h, lb, tok, "u9", "wrong", xff("192.0.2.1, 203.0.113.9")...); r.StatusCode() != 429 {
		t.Errorf("spoofed leftmost entry escaped the per-IP limit: %d", r.StatusCode())
	}
	if r := postFrom(h, lb, tok, "u9", "wrong", xff("203.0.113.10, 10.0.0.7")...); r.StatusCode() != 400 {
		t.Errorf("another client behind two proxies shares the first one's budget: %d", r.StatusCode())
	}
	var got []string
	for _, e := range f.events(AuditLoginFailure) {
		got = append(got, e.IP)
	}
	slices.Sort(got)
	if want := []string{"203.0.113.10", "203.0.113.9", "203.0.113.9"}; !slices.Equal(got, want) {
		t.Errorf("audit IPs %q, want %q", got, want)
	}
	lock := f.events(AuditLockout)
	if len(lock) != 1 || lock[0].IP != "203.0.113.9" {
		t.Errorf("lockout events %+v", lock)
	}
}

func TestRehashAndLockedUser(t *testing.T) {
	f := newFixture(t, nil)
	old := config.Argon2Params{MemoryKiB: 2048, Iterations: 1, Parallelism: 1}
	u := f.addUser("bob", "pw-bob-1", old)
	tok := f.form()
	if r := f.post(tok, tok, "bob", "pw-bob-1", returnTo); r.status != 303 {
		t.Fatalf("login: %d", r.status)
	}
	got, _ := f.st.Users().Get(context.Background(), u.ID)
	if !strings.HasPrefix(got.PasswordHash, "$argon2id$v=19$m=1024,t=1,p=1$") {
		t.Fatalf("not rehashed: %s", got.PasswordHash)
	}
	if ok, _, _ := password.Verify("pw-bob-1", got.PasswordHash, password.FromConfig(cheap)); !ok {
		t.Fatal("rehash lost the password")
	}
	// Locked accounts are refused even with the right password.
	if err := f.st.Users().Update(context.Background(), u.ID, func(o model.User) (model.User, error) { o.Status = model.UserLocked; return o, nil }); err != nil {
		t.Fatal(err)
	}
	if r := f.post(tok, tok, "bob", "pw-bob-1", returnTo); r.status != 403 || !strings.Contains(r.body, "This account is locked") || r.cookies[session.CookieName] != nil {
		t.Fatalf("locked user: %d %s", r.status, r.body)
	}
}

func TestTemplateOverride(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "login.html"), []byte(`<!doctype html><html lang="{{.Lang}}"><title>ACME</title><form method="post" action="{{.Action}}"><input type="hidden" name="csrf" value="{{.CSRF}}"><input type="hidden" name="return_to" value="{{.ReturnTo}}">ACME sign-in {{.Error}}</form></html>`), 0o644))
	must(os.MkdirAll(filepath.Join(dir, "static", "img"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "static", "img", "logo.svg"), []byte("<svg/>"), 0o644))
	f := newFixture(t, func(p *config.Profile) { p.Templates = dir })
	r := f.do(httptest.NewRequest("GET", f.login, nil))
	if !strings.Contains(r.body, "ACME sign-in") {
		t.Fatalf("override not used: %s", r.body)
	}
	if r := f.do(httptest.NewRequest("GET", "/authn/static/img/logo.svg", nil)); r.status != 200 || r.body != "<svg/>" || r.header.Get("Content-Type") != "image/svg+xml" {
		t.Errorf("override static: %d %q %q", r.status, r.body, r.header.Get("Content-Type"))
	}
	if r := f.do(httptest.NewRequest("GET", "/authn/static/keygate.css", nil)); r.status != 200 {
		t.Errorf("built-in static still served: %d", r.status)
	}
	// error.html was not overridden: the built-in one.
	if r := f.do(httptest.NewRequest("GET", "/authn/login", nil)); !strings.Contains(r.body, "sign-in link is not valid") {
		t.Errorf("error page: %s", r.body)
	}
	// A template naming an unknown field fails the build, not a login.
	must(os.WriteFile(filepath.Join(dir, "error.html"), []byte(`{{.Nope}}`), 0o644))
	if _, err := New(f.snap, f.snap.Profiles["authn"], Deps{}); err == nil || !strings.Contains(err.Error(), "error.html") {
		t.Errorf("bad template: %v", err)
	}
	f.snap.Profiles["authn"].Templates = filepath.Join(dir, "missing")
	if _, err := New(f.snap, f.snap.Profiles["authn"], Deps{}); err == nil || !strings.Contains(err.Error(), "templates") {
		t.Errorf("missing dir: %v", err)
	}
}

// A form rendered before a reload posts to the runtime built after it.
func TestFormAcrossReload(t *testing.T) {
	f := newFixture(t, nil)
	f.addUser("alice", "pw-alice-1", cheap)
	tok := f.form()
	f.snap.Profiles["authn"].Sessions.AbsoluteLifetime = config.Duration(2 * time.Hour)
	f.build()
	r := f.post(tok, tok, "alice", "pw-alice-1", returnTo)
	if r.status != 303 || r.cookies[session.CookieName] == nil || r.cookies[session.CookieName].MaxAge != 7200 {
		t.Fatalf("after reload: %d %+v", r.status, r.cookies[session.CookieName])
	}
	// The token profile no longer signs in here: a clear page, not a 500.
	f.snap.Profiles["token"].AuthenticationProfile = ""
	f.build()
	if r := f.post(tok, tok, "alice", "pw-alice-1", returnTo); r.status != 400 || !strings.Contains(r.body, "sign-in link is not valid") {
		t.Fatalf("after reload without the token profile: %d", r.status)
	}
}

// A busy account is never locked by its own successes: after more
// sign-ins in the window than one audit page holds, the next still works.
func TestManySuccessesDoNotLock(t *testing.T) {
	f := newFixture(t, nil)
	f.addUser("alice", "pw-alice-1", cheap)
	tok := f.form()
	for i := 1; i <= 60; i++ {
		if r := f.post(tok, tok, "alice", "pw-alice-1", returnTo); r.status != 303 {
			t.Fatalf("sign-in %d: %d %s", i, r.status, r.body)
		}
		f.now = f.now.Add(time.Second)
	}
}

// An override copied from a built-in page (which calls the layout's head
// and foot) loads and renders like the built-in one.
func TestTemplateCopiedFromBuiltin(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{loginTemplate, errorTemplate} {
		b, err := fs.ReadFile(builtin, "ui/"+name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u, err := loadUI(dir)
	if err != nil {
		t.Fatalf("a copy of the built-in pages: %v", err)
	}
	if u.login == nil || u.errPage == nil {
		t.Fatal("pages missing")
	}
}
