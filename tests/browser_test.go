package tests

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keygate/keygate/internal/storage/postgres/pgtest"
	"github.com/keygate/keygate/internal/testkit"
)

// The browser tests run the code flow as a user sees it: the repository's
// own config.d (copied, so a test may edit it) served by the built binary,
// a user created with `keygate user add`, a relying party on x/oauth2 and
// go-oidc (rp_test.go), and Debian's Chromium driven headless by chromedp.

const (
	alicePassword = "correct horse battery staple"
	webAppSecret  = "local-web-app-secret-change-me" // env/local.env
)

// chromiumPath finds Chromium. Absent: the test fails under CI=true (.ci/run
// installs it) and is skipped loudly otherwise.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	msg := "Chromium not found (apt-get install chromium; .ci/run installs it): browser test NOT RUN"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED: " + msg)
	return ""
}

// browser is a headless Chromium with a fresh profile; step bounds each
// group of actions with its own deadline (the browser itself lives until
// the test's cleanup: chromedp stops it when the first Run's context ends).
type browser struct {
	tab  context.Context
	step time.Duration
}

func newBrowser(t *testing.T, step time.Duration) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox, // root in CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1024, 768),
		chromedp.WSURLReadTimeout(30 * time.Second), // bounds the start
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab() // closes the browser and waits for it
		cancelAlloc()
	})
	// Start the browser now (no deadline on this first Run, see chromedp.Run),
	// so that a start-up failure is reported as such.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return &browser{tab: tab, step: step}
}

// do runs the actions with the step deadline.
func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.tab, b.step)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// run runs one action that returns a value with the step deadline.
func run[T any](b *browser, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(b.tab, b.step)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// site is the repository's configuration, copied to a temporary directory,
// with env/local.env and a test env file (the later one wins) that holds
// the values only known at run time.
type site struct {
	t       *testing.T
	dir     string // config.d copy
	envFile string // the test's env file
	vars    map[string]string
	env     []string // for keygate processes
}

func newSite(t *testing.T, vars map[string]string) *site {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	entries, err := os.ReadDir(filepath.Join(root, "config.d"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, "config.d", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		testkit.WriteAtomic(t, filepath.Join(dir, e.Name()), string(b))
	}
	s := &site{t: t, dir: dir, envFile: filepath.Join(t.TempDir(), "test.env"), vars: map[string]string{
		"DATA_DIR":    t.TempDir(),
		"SECRETS_DIR": filepath.Join(root, "env", "local-secrets"),
		// A placeholder until the node's address is known (setIssuer).
		"PUBLIC_BASE_URL": "http://127.0.0.1:1",
	}}
	for k, v := range vars {
		s.vars[k] = v
	}
	s.writeEnv()
	s.env = []string{"KEYGATE_ENV_FILE=" + filepath.Join(root, "env", "local.env") + "," + s.envFile}
	return s
}

func (s *site) writeEnv() {
	var b strings.Builder
	for k, v := range s.vars {
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	testkit.WriteAtomic(s.t, s.envFile, b.String())
}

// edit rewrites one config file with f applied to its text.
func (s *site) edit(name string, f func(string) string) {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		s.t.Fatal(err)
	}
	out := f(string(b))
	if out == string(b) {
		s.t.Fatalf("edit of %s changed nothing", name)
	}
	testkit.WriteAtomic(s.t, filepath.Join(s.dir, name), out)
}

// userAdd runs `keygate user add` with the password on stdin, as the
// README says.
func (s *site) userAdd(username, pw string, extra ...string) {
	s.t.Helper()
	cmd := exec.Command(binary, append([]string{"user", "add", "--create-db", "--zone", "local", "--username", username}, extra...)...)
	cmd.Dir = s.t.TempDir()
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "KEYGATE_CONFIG_DIR=" + s.dir}, s.env...)
	cmd.Stdin = strings.NewReader(pw)
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("keygate user add: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "created user "+username) {
		s.t.Fatalf("keygate user add said: %s", out)
	}
}

// setIssuer points PUBLIC_BASE_URL at base and waits until every node
// reloaded and publishes the issuer.
func (s *site) setIssuer(base string, nodes ...*node) string {
	s.t.Helper()
	issuer := base + "/oauth/v2"
	before := make([]testkit.Status, len(nodes))
	for i, n := range nodes {
		before[i] = n.Status()
	}
	s.vars["PUBLIC_BASE_URL"] = base
	s.writeEnv()
	for i, n := range nodes {
		if st := n.WaitLoaded(before[i]); !st.LoadedSince(before[i]) {
			s.t.Fatalf("node %s: reload with issuer %s: %+v", n.Public(), issuer, st)
		}
		testkit.WaitFor(s.t, 30*time.Second, "the new issuer in discovery", func() bool { return n.Issuer("/oauth/v2") == issuer })
	}
	return issuer
}

// signIn drives the browser: the RP's login link, the login page (a
// screenshot saved as artifacts/<shot>), username and password, submit,
// and the RP's page. It returns the login page's URL and the final page's
// text.
func signIn(t *testing.T, b *browser, rp *testRP, username, pw, shot string, beforeSubmit func()) (*url.URL, string) {
	t.Helper()
	if err := b.do(
		chromedp.Navigate(rp.LoginURL()),
		chromedp.WaitVisible(chromedp.ID("username")),
	); err != nil {
		t.Fatalf("open the login page through the RP: %v", err)
	}
	loginLoc, err := run(b, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	loginURL, err := url.Parse(loginLoc)
	if err != nil {
		t.Fatal(err)
	}
	if shot != "" {
		png, err := run(b, chromedp.FullScreenshot(100)) // 100: PNG
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.MkdirAll("artifacts", 0o755); err != nil {
			t.Fatal(err)
		}
		path, _ := filepath.Abs(filepath.Join("artifacts", shot))
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("login page screenshot: %s (%d bytes)", path, len(png))
	}
	if beforeSubmit != nil {
		beforeSubmit()
	}
	if err := b.do(
		chromedp.SendKeys(chromedp.ID("username"), username),
		chromedp.SendKeys(chromedp.ID("password"), pw),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		// The RP's page, or the login page again with an error, or an
		// error page: whichever comes, its text says what happened.
		chromedp.WaitVisible(chromedp.CSS(`#signed-in, #rp-error, #form-error, main.card p`)),
	); err != nil {
		page, _ := run(b, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("sign in: %v\nthe browser shows:\n%s", err, page)
	}
	text, err := run(b, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		t.Fatal(err)
	}
	return loginURL, text
}

// checkSignedIn asserts what the RP saw: a verified ID token, userinfo
// with the user's email, and a refresh.
func checkSignedIn(t *testing.T, rp *testRP, text, username, email string) *rpResult {
	t.Helper()
	res, err := rp.waitResult(30 * time.Second)
	if err != nil {
		t.Fatalf("%v; the browser shows:\n%s", err, text)
	}
	if res.Err != nil {
		t.Fatalf("the RP failed: %v\npage:\n%s", res.Err, text)
	}
	if !strings.Contains(text, "signed in as "+username) {
		t.Fatalf("the browser shows %q, want \"signed in as %s\"", text, username)
	}
	if !res.IDTokenVerified || res.Subject == "" || res.AuthTime.IsZero() || time.Since(res.AuthTime) > 5*time.Minute {
		t.Errorf("ID token: verified=%v sub=%q auth_time=%v", res.IDTokenVerified, res.Subject, res.AuthTime)
	}
	if res.UserinfoEmail != email || res.UserinfoSubject != res.Subject {
		t.Errorf("userinfo: email %q sub %q; want %q, %q", res.UserinfoEmail, res.UserinfoSubject, email, res.Subject)
	}
	if !res.Refreshed || res.RefreshedAccess == res.AccessToken {
		t.Errorf("refresh: refreshed=%v", res.Refreshed)
	}
	if res.RefreshedRefresh == "" || res.RefreshedRefresh == res.RefreshToken {
		t.Errorf("refresh token not rotated (old %d chars, new %d chars)", len(res.RefreshToken), len(res.RefreshedRefresh))
	}
	return res
}

func (n *node) hostPort() string { return strings.TrimPrefix(n.Public(), "http://") }

// count reads keygate_http_requests_total for a profile, endpoint and code.
func (n *node) count(profile, endpoint, code string) float64 {
	v, _ := metricValue(n.Metrics(), "keygate_http_requests_total",
		map[string]string{"profile": profile, "endpoint": endpoint, "code": code})
	return v
}

// TestBrowserCodeFlow: a user created with `keygate user add` signs in to
// a relying party through the login page in headless Chromium, on one node
// serving the repository's config.d on SQLite.
func TestBrowserCodeFlow(t *testing.T) {
	br := newBrowser(t, 60*time.Second)
	rp := newTestRP(t, "web-app", webAppSecret)
	s := newSite(t, map[string]string{"WEB_APP_REDIRECT_URI": rp.RedirectURL()})
	s.userAdd("alice", alicePassword, "--email", "alice@example.com", "--email-verified", "--name", "Alice Example")

	n := startNode(t, s.dir, s.env...)
	n.waitReady(t)
	issuer := s.setIssuer(n.Public(), n)
	if err := rp.discover(context.Background(), issuer); err != nil {
		t.Fatalf("RP discovery: %v", err)
	}

	loginURL, text := signIn(t, br, rp, "alice", alicePassword, "login.png", nil)
	if loginURL.Host != n.hostPort() || loginURL.Path != "/authn/login" {
		t.Errorf("login page at %s, want %s/authn/login", loginURL, n.Public())
	}
	res := checkSignedIn(t, rp, text, "alice", "alice@example.com")
	if res.Claims["name"] != "Alice Example" || res.Claims["email_verified"] != true {
		t.Errorf("userinfo claims %v", res.Claims)
	}
	for _, c := range []struct{ profile, endpoint string }{{"token", "token"}, {"token", "userinfo"}} {
		if n.count(c.profile, c.endpoint, "500") != 0 {
			t.Errorf("%s answered 500", c.endpoint)
		}
	}
	if n.Logs.Contains(alicePassword) {
		t.Error("the node logged the password")
	}
}

// TestBrowserCodeFlowAcrossNodes: two processes on one PostgreSQL with one
// issuer (A's address). The browser talks to A only (authorize, login);
// the RP's back channel (code exchange, userinfo, refresh) reaches B.
func TestBrowserCodeFlowAcrossNodes(t *testing.T) {
	pgURL := pgtest.SchemaURL(t, pgtest.Schema(t)) // skips loudly, or fails with CI=true, when unreachable
	br := newBrowser(t, 60*time.Second)
	rp := newTestRP(t, "web-app", webAppSecret)
	s := newSite(t, map[string]string{"WEB_APP_REDIRECT_URI": rp.RedirectURL(), "PG_URL": pgURL})
	s.edit("10-data-sources.yaml", func(y string) string {
		return strings.Replace(y, "type: sqlite\n    path: ${DATA_DIR:-./data}/keygate.db", "type: postgres\n    url: $PG_URL\n    max-connections: 4", 1)
	})
	s.userAdd("alice", alicePassword, "--email", "alice@example.com", "--email-verified")

	a := launch(t, s.dir, append(s.env, "KEYGATE_NODE_ID=node-a")...)
	b := launch(t, s.dir, append(s.env, "KEYGATE_NODE_ID=node-b")...)
	a.AwaitServing(30 * time.Second)
	b.AwaitServing(30 * time.Second)
	a.waitReady(t)
	b.waitReady(t)
	issuer := s.setIssuer(a.Public(), a, b)
	if got := b.Issuer("/oauth/v2"); got != issuer {
		t.Fatalf("B's issuer %q, want A's %q", got, issuer)
	}
	if err := rp.discover(context.Background(), issuer); err != nil {
		t.Fatalf("RP discovery: %v", err)
	}
	rp.backend = dialOnly(b.hostPort())

	loginURL, text := signIn(t, br, rp, "alice", alicePassword, "login-node-a.png", nil)
	if loginURL.Host != a.hostPort() {
		t.Errorf("login page on %s, want node A %s", loginURL.Host, a.hostPort())
	}
	checkSignedIn(t, rp, text, "alice", "alice@example.com")

	// Who served what: the login and authorize on A, the back channel on B.
	if got := a.count("authn", "login", "303"); got != 1 {
		t.Errorf("A: successful login POSTs = %v, want 1", got)
	}
	if got := b.count("authn", "login", "303"); got != 0 {
		t.Errorf("B: successful login POSTs = %v, want 0", got)
	}
	if got := b.count("token", "token", "200"); got != 2 {
		t.Errorf("B: token 200s = %v, want 2 (code exchange, refresh)", got)
	}
	if got := b.count("token", "userinfo", "200"); got != 1 {
		t.Errorf("B: userinfo 200s = %v, want 1", got)
	}
	if got := a.count("token", "token", "200") + a.count("token", "userinfo", "200"); got != 0 {
		t.Errorf("A served %v token/userinfo requests, want 0", got)
	}
	if t.Failed() {
		t.Logf("A metrics:\n%s\nB metrics:\n%s", grep(a.Metrics(), "keygate_http_requests_total"), grep(b.Metrics(), "keygate_http_requests_total"))
	}
}

// TestBrowserLoginAcrossReload: the login form is rendered by one
// configuration and posted after the node reloaded another (an unrelated
// client changed, and the authentication profile's session policy): the
// sign-in completes, and the node never answers 500.
func TestBrowserLoginAcrossReload(t *testing.T) {
	br := newBrowser(t, 60*time.Second)
	rp := newTestRP(t, "web-app", webAppSecret)
	s := newSite(t, map[string]string{"WEB_APP_REDIRECT_URI": rp.RedirectURL()})
	s.userAdd("alice", alicePassword, "--email", "alice@example.com")

	n := startNode(t, s.dir, s.env...)
	n.waitReady(t)
	issuer := s.setIssuer(n.Public(), n)
	if err := rp.discover(context.Background(), issuer); err != nil {
		t.Fatalf("RP discovery: %v", err)
	}

	_, text := signIn(t, br, rp, "alice", alicePassword, "", func() {
		before := n.Status()
		s.edit("40-clients.yaml", func(y string) string {
			return strings.Replace(y, `scopes: ["invoices:read"]`, `scopes: ["invoices:read", "invoices:write"]`, 1)
		})
		s.edit("30-profiles.yaml", func(y string) string {
			return strings.Replace(y, "sessions: {idle-lifetime: 1h, absolute-lifetime: 12h}", "sessions: {idle-lifetime: 2h, absolute-lifetime: 12h}", 1)
		})
		after := n.WaitLoaded(before)
		if !after.LoadedSince(before) || after.ConfigHash == before.ConfigHash {
			t.Fatalf("reload between GET and POST of the login form: %+v (before %+v)", after, before)
		}
	})
	checkSignedIn(t, rp, text, "alice", "alice@example.com")
	for _, ep := range []struct{ profile, endpoint string }{{"authn", "login"}, {"token", "authorize"}, {"token", "token"}} {
		if got := n.count(ep.profile, ep.endpoint, "500"); got != 0 {
			t.Errorf("%s/%s answered 500 %v times", ep.profile, ep.endpoint, got)
		}
	}
}
