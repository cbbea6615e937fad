package console

import (
	"crypto/ed25519"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/memfs"
	git "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/gitback"
	"github.com/keygate/keygate/internal/publish"
)

const adminToken = "console-test-admin-token-0123"

var files = map[string]string{
	"00-service.yaml": `schema: 1
service-roles:
  default: {zone: z, profiles: [token, authn]}
zones:
  z: {data-source: d}
data-sources:
  d: {type: sqlite, path: /tmp/console-test.db}
keys:
  k: {algorithm: ES256, private-key: $SIGNING_KEY}
profiles:
  token: {type: token, path: /oauth/v2, issuer: "https://id.example.com/oauth/v2", signing-keys: [k], endpoints: [discovery, token, authorize], authentication-profile: authn}
  authn:
    type: authentication
    path: /authn
    authenticators:
      password: {type: password}
      # The partner's IdP.
      partner: {type: oidc, issuer: "https://partner.example.com", client-id: keygate, client-secret: $PARTNER_SECRET}
`,
	"40-clients.yaml": `# Clients of the test.
clients:
  # The browser app.
  web:
    profile: token
    secret: $WEB_SECRET
    redirect-uris: [https://app.example.com/cb]   # production
    grant-types: [authorization_code]
    scopes: [openid]
`,
}

func bare(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	b, err := git.PlainInit(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, plumbing.NewBranchReferenceName("main")))
	seed, _ := git.InitWithOptions(memory.NewStorage(), memfs.New(), git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")})
	wt, _ := seed.Worktree()
	for name, body := range files {
		f, _ := wt.Filesystem.Create("config.d/" + name)
		f.Write([]byte(body))
		f.Close()
		wt.Add("config.d/" + name)
	}
	sig := &object.Signature{Name: "Seed", Email: "seed@example.com", When: time.Now()}
	if _, err := wt.Commit("seed", &git.CommitOptions{Author: sig}); err != nil {
		t.Fatal(err)
	}
	seed.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{"file://" + dir}})
	if err := seed.Push(&git.PushOptions{RemoteName: "origin", RefSpecs: []gitconfig.RefSpec{"refs/heads/main:refs/heads/main"}}); err != nil {
		t.Fatal(err)
	}
	return dir
}

type fixture struct {
	srv    *httptest.Server
	client *http.Client
	repo   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	p, err := publish.New(t.TempDir(), 5)
	if err != nil {
		t.Fatal(err)
	}
	api := admin.New(admin.Config{Publisher: p, SigningKey: ed25519.NewKeyFromSeed(make([]byte, 32)), Token: []byte(adminToken), ConfigDir: t.TempDir()})
	// Publish v1 through the API, as CI would.
	apiSrv := httptest.NewServer(api.Handler())
	defer apiSrv.Close()
	for i := 0; i < 2; i++ {
		body := `{"files":{"00-service.yaml":` + quote(files["00-service.yaml"]) + `,"40-clients.yaml":` + quote(files["40-clients.yaml"]) + `},"message":"v` + string(rune('1'+i)) + `"}`
		req, _ := http.NewRequest("POST", apiSrv.URL+"/admin/v1/bundles", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("publish: %v %s", err, b)
		}
		resp.Body.Close()
	}
	repo := bare(t)
	w, err := gitback.New(gitback.Config{URL: "file://" + repo, CompareURL: "https://git.example.com/compare/{base}...{branch}"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Admin: api, BaseURL: "http://console.test", AdminToken: []byte(adminToken), Git: w})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	return &fixture{srv: srv, client: &http.Client{Jar: jar}, repo: repo}
}

func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func (f *fixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := f.client.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (f *fixture) post(t *testing.T, path string, form url.Values) (int, string) {
	t.Helper()
	resp, err := f.client.PostForm(f.srv.URL+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var (
	csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	baseRe = regexp.MustCompile(`name="base" value="([^"]+)"`)
)

func baseOf(t *testing.T, page string) string {
	t.Helper()
	m := baseRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no base commit in the form:\n%s", page)
	}
	return m[1]
}

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

func TestSignInAndPages(t *testing.T) {
	f := newFixture(t)
	if code, body := f.get(t, "/admin/ui/fleet"); code != 200 || !strings.Contains(body, "Break-glass sign-in") {
		t.Fatalf("unsigned: %d %s", code, body)
	}
	if code, body := f.post(t, "/admin/ui/break-glass", url.Values{"token": {"wrong-token"}}); code != 401 || !strings.Contains(body, "not the admin token") {
		t.Fatalf("wrong token: %d", code)
	}
	code, body := f.post(t, "/admin/ui/break-glass", url.Values{"token": {adminToken}})
	if code != 200 || !strings.Contains(body, "break-glass (admin token) (editor)") || !strings.Contains(body, `id="active-version">v2`) {
		t.Fatalf("break-glass: %d %s", code, body)
	}
	for path, want := range map[string]string{
		"/admin/ui/bundles":                    `id="bundle-v1"`,
		"/admin/ui/bundles/diff?from=v1&to=v2": "Service role default: 0 change(s)",
		"/admin/ui/config":                     "<code>40-clients.yaml:4</code>",
		"/admin/ui/drift":                      `id="in-sync"`,
		"/admin/ui/clients/web/edit":           "https://app.example.com/cb",
		"/admin/ui/bundles/v1/activate":        "Activate v1",
	} {
		code, body := f.get(t, path)
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("%s: %d, want %q in:\n%s", path, code, want, body)
		}
	}
	resp, _ := f.client.Get(f.srv.URL + "/admin/ui/fleet")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers: %v", resp.Header)
	}
	resp.Body.Close()
}

func TestEditCommitsOnlyTheChangedLine(t *testing.T) {
	f := newFixture(t)
	f.post(t, "/admin/ui/break-glass", url.Values{"token": {adminToken}})
	_, page := f.get(t, "/admin/ui/clients/web/edit")
	csrf := csrfOf(t, page)
	form := url.Values{"csrf": {csrf}, "base": {baseOf(t, page)}, "redirect-uris": {"https://app.example.com/cb\nhttps://staging.example.com/cb"},
		"grant-types": {"authorization_code"}, "scopes": {"openid"}, "enabled": {"on"}}

	// Without the token: refused, nothing committed.
	noCSRF := url.Values{}
	for k, v := range form {
		if k != "csrf" {
			noCSRF[k] = v
		}
	}
	if code, _ := f.post(t, "/admin/ui/clients/web/edit", noCSRF); code != 403 {
		t.Errorf("a form without its CSRF token: %d", code)
	}
	// An invalid redirect URI: the loader's message at the field, no commit.
	bad := url.Values{}
	for k, v := range form {
		bad[k] = v
	}
	bad.Set("redirect-uris", "https://app.example.com/cb\nnot a url")
	code, body := f.post(t, "/admin/ui/clients/web/edit", bad)
	if code != 422 || !strings.Contains(body, `class="field-error" role="alert">40-clients.yaml`) || !strings.Contains(body, "clients.web.redirect-uris[1]") {
		t.Errorf("invalid redirect URI: %d\n%s", code, body)
	}
	if branches(t, f.repo) != 1 {
		t.Fatal("an invalid edit was committed")
	}
	code, body = f.post(t, "/admin/ui/clients/web/edit", form)
	if code != 200 || !strings.Contains(body, `id="branch">keygate/break-glass-admin-token`) ||
		!strings.Contains(body, "+     redirect-uris: [https://app.example.com/cb, https://staging.example.com/cb]   # production") {
		t.Fatalf("commit: %d\n%s", code, body)
	}
	if branches(t, f.repo) != 2 {
		t.Error("no branch pushed")
	}
	// A form read at an older commit is refused: the repository moved.
	stale := url.Values{}
	for k, v := range form {
		stale[k] = v
	}
	stale.Set("base", "0123456789abcdef0123456789abcdef01234567")
	if code, body := f.post(t, "/admin/ui/clients/web/edit", stale); code != 409 || !strings.Contains(body, "repository changed") {
		t.Errorf("a stale form: %d", code)
	}
}

func TestNewClientGetsASecretPlaceholder(t *testing.T) {
	f := newFixture(t)
	f.post(t, "/admin/ui/break-glass", url.Values{"token": {adminToken}})
	_, page := f.get(t, "/admin/ui/clients/new")
	code, body := f.post(t, "/admin/ui/clients/new", url.Values{"csrf": {csrfOf(t, page)}, "name": {"reports-api"}, "profile": {"token"},
		"grant-types": {"client_credentials"}, "scopes": {"reports:read"}, "enabled": {"on"}})
	if code != 200 || !strings.Contains(body, "the variable <strong>REPORTS_API_SECRET</strong>") || !strings.Contains(body, "+   reports-api:") {
		t.Fatalf("new client: %d\n%s", code, body)
	}
	if strings.Contains(body, "secret: \"") {
		t.Error("a literal secret was written")
	}
}

func TestRoleOf(t *testing.T) {
	c := &Server{c: Config{RoleClaim: "email", Editors: []string{"ada@example.com"}, Viewers: []string{"*"}}}
	for claims, want := range map[string]string{"ada@example.com": RoleEditor, "ADA@example.com": RoleEditor, "bob@example.com": RoleViewer, "": ""} {
		m := map[string]any{"email_verified": true}
		if claims != "" {
			m["email"] = claims
		}
		if got := c.roleOf(m); got != want {
			t.Errorf("%q: %q, want %q", claims, got, want)
		}
	}
	// An unverified e-mail gives no role (a provisioning client may set it).
	if got := c.roleOf(map[string]any{"email": "ada@example.com", "email_verified": false}); got != "" {
		t.Errorf("unverified e-mail: %q", got)
	}
	c.c.Viewers = nil
	if got := c.roleOf(map[string]any{"email": "bob@example.com", "email_verified": true}); got != "" {
		t.Errorf("unlisted: %q", got)
	}
	c.c.RoleClaim, c.c.Editors = "groups", []string{"iam-admins"}
	if got := c.roleOf(map[string]any{"groups": []any{"staff", "iam-admins"}}); got != RoleEditor {
		t.Errorf("groups: %q", got)
	}
}

func branches(t *testing.T, dir string) int {
	t.Helper()
	r, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	it, _ := r.Branches()
	n := 0
	it.ForEach(func(*plumbing.Reference) error { n++; return nil })
	return n
}

func TestIdPEditor(t *testing.T) {
	f := newFixture(t)
	f.post(t, "/admin/ui/break-glass", url.Values{"token": {adminToken}})
	code, page := f.get(t, "/admin/ui/idps/authn/partner/edit")
	if code != 200 || !strings.Contains(page, `value="https://partner.example.com"`) {
		t.Fatalf("edit page: %d\n%s", code, page)
	}
	csrf, base := csrfOf(t, page), baseOf(t, page)
	code, body := f.post(t, "/admin/ui/idps/authn/partner/edit", url.Values{"csrf": {csrf}, "base": {base}, "issuer": {"http://partner.example.com"}, "client-id": {"keygate"}})
	if code != 422 || !strings.Contains(body, "profiles.authn.authenticators.partner.issuer") || branches(t, f.repo) != 1 {
		t.Errorf("an http issuer: %d\n%s", code, body)
	}
	code, body = f.post(t, "/admin/ui/idps/authn/partner/edit", url.Values{"csrf": {csrf}, "base": {base}, "issuer": {"https://login.partner.example.com"}, "client-id": {"keygate"}, "display-name": {"Partner"}})
	if code != 200 || !strings.Contains(body, `+       partner: {type: oidc, issuer: &#34;https://login.partner.example.com&#34;, client-id: keygate, client-secret: $PARTNER_SECRET, display-name: Partner}`) {
		t.Errorf("edit: %d\n%s", code, body)
	}
	_, page = f.get(t, "/admin/ui/idps/new")
	code, body = f.post(t, "/admin/ui/idps/new", url.Values{"csrf": {csrfOf(t, page)}, "profile": {"authn"}, "name": {"acme"},
		"issuer": {"https://acme.example.com"}, "client-id": {"keygate-at-acme"}, "scopes": {"openid email"}})
	if code != 200 || !strings.Contains(body, "the variable <strong>AUTHN_ACME_CLIENT_SECRET</strong>") {
		t.Errorf("new IdP: %d\n%s", code, body)
	}
}

// A branding directory's static files replace the built-in ones; the rest
// stay.
func TestBranding(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "static"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "static", "console.css"), []byte("body{color:rebeccapurple}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "static", "logo.svg"), []byte("<svg/>"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, _ := publish.New(t.TempDir(), 2)
	api := admin.New(admin.Config{Publisher: p, SigningKey: ed25519.NewKeyFromSeed(make([]byte, 32)), Token: []byte(adminToken), ConfigDir: t.TempDir()})
	c, err := New(Config{Admin: api, BaseURL: "http://console.test", Title: "Acme IAM", BrandingDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	for path, want := range map[string]string{"/admin/ui/static/console.css": "rebeccapurple", "/admin/ui/static/logo.svg": "<svg/>", "/admin/ui/login": "Acme IAM admin"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d %.100s", path, resp.StatusCode, b)
		}
	}
}
