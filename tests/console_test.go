package tests

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/go-git/go-billy/v5/memfs"
	git "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/keygate/keygate/internal/testkit"
)

// configRepo makes a bare repository whose main branch holds dir's YAML
// files under config.d/.
func configRepo(t *testing.T, dir string) string {
	t.Helper()
	repo := t.TempDir()
	bare, err := git.PlainInit(repo, true)
	check(t, err)
	check(t, bare.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, plumbing.NewBranchReferenceName("main"))))
	seed, err := git.InitWithOptions(memory.NewStorage(), memfs.New(), git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")})
	check(t, err)
	wt, err := seed.Worktree()
	check(t, err)
	entries, err := os.ReadDir(dir)
	check(t, err)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		check(t, err)
		f, err := wt.Filesystem.Create("config.d/" + e.Name())
		check(t, err)
		_, err = f.Write(data)
		check(t, err)
		check(t, f.Close())
		_, err = wt.Add("config.d/" + e.Name())
		check(t, err)
	}
	_, err = wt.Commit("the configuration", &git.CommitOptions{Author: &object.Signature{Name: "CI", Email: "ci@example.com", When: time.Now()}})
	check(t, err)
	_, err = seed.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{"file://" + repo}})
	check(t, err)
	check(t, seed.Push(&git.PushOptions{RemoteName: "origin", RefSpecs: []gitconfig.RefSpec{"refs/heads/main:refs/heads/main"}}))
	return repo
}

// branchDiff returns the -/+ lines of the newest commit of every branch
// but main.
func branchDiff(t *testing.T, repo string) (branches []string, minus, plus []string) {
	t.Helper()
	r, err := git.PlainOpen(repo)
	check(t, err)
	it, err := r.Branches()
	check(t, err)
	check(t, it.ForEach(func(ref *plumbing.Reference) error {
		if ref.Name().Short() == "main" {
			return nil
		}
		branches = append(branches, ref.Name().Short())
		c, err := r.CommitObject(ref.Hash())
		check(t, err)
		parent, err := c.Parent(0)
		check(t, err)
		patch, err := parent.Patch(c)
		check(t, err)
		for _, line := range strings.Split(patch.String(), "\n") {
			switch {
			case strings.HasPrefix(line, "---"), strings.HasPrefix(line, "+++"):
			case strings.HasPrefix(line, "-"):
				minus = append(minus, line)
			case strings.HasPrefix(line, "+"):
				plus = append(plus, line)
			}
		}
		return nil
	}))
	return branches, minus, plus
}

func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	png, err := run(b, chromedp.FullScreenshot(100))
	check(t, err)
	check(t, os.MkdirAll("artifacts", 0o755))
	path, _ := filepath.Abs(filepath.Join("artifacts", name))
	check(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot %s (%d bytes)", path, len(png))
}

func (b *browser) text(t *testing.T) string {
	t.Helper()
	s, err := run(b, chromedp.Text(chromedp.CSS("body")))
	check(t, err)
	return s
}

// The console in a real browser: an editor signs in through a Keygate
// token profile, adds a redirect URI to a client and gets a commit on a
// new branch whose diff is that line alone; an invalid URI gets the
// loader's message at the field and no commit; a rollback shows the node
// converge on the fleet page; a viewer cannot reach an editor form, and a
// form post without its CSRF token is refused.
func TestBrowserConsole(t *testing.T) {
	br := newBrowser(t, 60*time.Second)
	nodeAddr, adminAddr := fedPort(t), fedPort(t)
	consoleURL := "http://" + adminAddr
	s := newSite(t, map[string]string{"PUBLIC_BASE_URL": "http://" + nodeAddr, "CONSOLE_SECRET": "console-test-secret-0123456789"})
	s.edit("40-clients.yaml", func(y string) string {
		return strings.Replace(y, "clients:\n", `clients:
  # The admin console signs people in here.
  console:
    profile: token
    secret: $CONSOLE_SECRET
    redirect-uris: [`+consoleURL+`/admin/ui/callback]
    grant-types: [authorization_code]
    scopes: [openid, profile, email]
`, 1)
	})
	s.userAdd("ada", "ada-password-0123", "--email", "ada@example.com", "--email-verified", "--name", "Ada Lovelace")
	s.userAdd("bob", "bob-password-0123", "--email", "bob@example.com", "--email-verified", "--name", "Bob Viewer")
	repo := configRepo(t, s.dir)

	secrets := t.TempDir()
	tokenFile, secretFile := filepath.Join(secrets, "token"), filepath.Join(secrets, "console-secret")
	signFile, _, _ := testkit.BundleKeys(t, secrets)
	check(t, os.WriteFile(tokenFile, []byte(clusterToken+"\n"), 0o600))
	check(t, os.WriteFile(secretFile, []byte("console-test-secret-0123456789\n"), 0o600))
	pubDir := t.TempDir()
	adm := startAdmin(t, append([]string{"KEYGATE_ADMIN_LISTEN_ADDR=" + adminAddr, "KEYGATE_PUBLISH_DIR=" + pubDir, "KEYGATE_BUNDLE_SIGNING_KEY_FILE=" + signFile,
		"KEYGATE_ADMIN_TOKEN_FILE=" + tokenFile, "KEYGATE_CONFIG_DIR=" + s.dir,
		"KEYGATE_CONSOLE_URL=" + consoleURL, "KEYGATE_CONSOLE_ISSUER=http://" + nodeAddr + "/oauth/v2", "KEYGATE_CONSOLE_CLIENT_ID=console",
		"KEYGATE_CONSOLE_CLIENT_SECRET_FILE=" + secretFile, "KEYGATE_CONSOLE_EDITORS=ada@example.com", "KEYGATE_CONSOLE_VIEWERS=*",
		"KEYGATE_GIT_URL=file://" + repo, "KEYGATE_GIT_COMPARE_URL=https://git.example.com/iam/compare/{base}...{branch}"}, s.env...)...)
	if code, v, stderr := publishCLI(t, adm.url, s.dir, tokenFile); code != 0 || v != "v1" {
		t.Fatalf("publish v1: %d %s %s", code, v, stderr)
	}
	s.edit("40-clients.yaml", func(y string) string {
		return strings.Replace(y, "tags: [under-test]", "tags: [under-test, billing]", 1)
	})
	if code, v, stderr := publishCLI(t, adm.url, s.dir, tokenFile); code != 0 || v != "v2" {
		t.Fatalf("publish v2: %d %s %s", code, v, stderr)
	}
	n := startNode(t, pubDir, append([]string{"KEYGATE_LISTEN_ADDR=" + nodeAddr, "KEYGATE_HEARTBEAT_INTERVAL=300ms"}, s.env...)...)
	n.waitReady(t)

	signInAs := func(user, pw string) {
		t.Helper()
		check(t, br.do(chromedp.Navigate(consoleURL+"/admin/ui/"), chromedp.WaitVisible(chromedp.ID("sso")), chromedp.Click(chromedp.ID("sso")),
			chromedp.WaitVisible(chromedp.ID("username")),
			chromedp.SendKeys(chromedp.ID("username"), user), chromedp.SendKeys(chromedp.ID("password"), pw),
			chromedp.Click(chromedp.CSS(`button[type=submit]`)), chromedp.WaitVisible(chromedp.ID("who"))))
	}

	// The editor signs in through the token profile.
	signInAs("ada", "ada-password-0123")
	if text := br.text(t); !strings.Contains(text, "ada@example.com (editor)") || !strings.Contains(text, "Service role default") {
		t.Fatalf("fleet after sign-in:\n%s", text)
	}
	br.screenshot(t, "console-fleet.png")
	check(t, br.do(chromedp.Navigate(consoleURL+"/admin/ui/bundles"), chromedp.WaitVisible(chromedp.ID("bundle-v1"))))
	br.screenshot(t, "console-bundles.png")
	check(t, br.do(chromedp.Navigate(consoleURL+"/admin/ui/config"), chromedp.WaitVisible(chromedp.ID("section-clients"))))
	br.screenshot(t, "console-config.png")

	// An invalid redirect URI: the loader's message at the field, no commit.
	edit := consoleURL + "/admin/ui/clients/web-app/edit"
	check(t, br.do(chromedp.Navigate(edit), chromedp.WaitVisible(chromedp.ID("redirect-uris")),
		chromedp.SetValue(chromedp.ID("redirect-uris"), "$WEB_APP_REDIRECT_URI\nnot a url"),
		chromedp.Click(chromedp.ID("save")), chromedp.WaitVisible(chromedp.CSS(".field-error"))))
	if text := br.text(t); !strings.Contains(text, "clients.web-app.redirect-uris[1]") {
		t.Errorf("the field's message:\n%s", text)
	}
	br.screenshot(t, "console-invalid-edit.png")
	if branches, _, _ := branchDiff(t, repo); len(branches) != 0 {
		t.Fatalf("an invalid edit was committed: %v", branches)
	}

	// A redirect URI added: one commit on a new branch, that line alone.
	check(t, br.do(chromedp.Navigate(edit), chromedp.WaitVisible(chromedp.ID("redirect-uris")),
		chromedp.SetValue(chromedp.ID("redirect-uris"), "$WEB_APP_REDIRECT_URI\nhttps://staging.example.com/callback"),
		chromedp.Click(chromedp.ID("save")), chromedp.WaitVisible(chromedp.ID("branch"))))
	br.screenshot(t, "console-proposed.png")
	branches, minus, plus := branchDiff(t, repo)
	if len(branches) != 1 || !strings.HasPrefix(branches[0], "keygate/ada-lovelace-") {
		t.Fatalf("branches %v", branches)
	}
	if len(minus) != 1 || len(plus) != 1 || plus[0] != "+    redirect-uris: [$WEB_APP_REDIRECT_URI, https://staging.example.com/callback]" {
		t.Errorf("the commit's diff: -%q +%q", minus, plus)
	}

	// Roll back to v1 and watch the fleet converge.
	check(t, br.do(chromedp.Navigate(consoleURL+"/admin/ui/bundles/v1/activate"), chromedp.WaitVisible(chromedp.ID("confirm-activate")),
		chromedp.Click(chromedp.ID("confirm-activate")), chromedp.WaitVisible(chromedp.ID("active-version"))))
	testkit.WaitFor(t, 20*time.Second, "the fleet page shows the node converged on v1", func() bool {
		if br.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("active-version"))) != nil {
			return false
		}
		text := br.text(t)
		return strings.Contains(text, "converged on v1")
	})
	br.screenshot(t, "console-rolled-back.png")

	// A form post without its CSRF token is refused (the page's token
	// removed before the submit).
	check(t, br.do(chromedp.Navigate(consoleURL+"/admin/ui/bundles/v2/activate"), chromedp.WaitVisible(chromedp.ID("confirm-activate"))))
	_, err := run(br, chromedp.Evaluate[bool](`document.querySelectorAll("input[name=csrf]").forEach(e => e.remove()), true`))
	check(t, err)
	if err := br.do(chromedp.Click(chromedp.ID("confirm-activate")), chromedp.WaitVisible(chromedp.ID("page-error"))); err != nil {
		br.screenshot(t, "console-csrf.png")
		t.Fatalf("submit without the CSRF token: %v\n%s", err, br.text(t))
	}
	if text := br.text(t); !strings.Contains(text, "missing its security token") {
		t.Errorf("a post without the CSRF token:\n%s", text)
	}
	if adm.Logs.Contains(`"event":"console_activate","actor":"ada@example.com","version":"v2"`) {
		t.Error("v2 was activated by a post without the CSRF token")
	}

	// A viewer: the fleet, but no editor form (403).
	if err := br.do(chromedp.Click(chromedp.CSS(`form.who button`)), chromedp.WaitVisible(chromedp.ID("sso"))); err != nil {
		t.Fatalf("sign out: %v\n%s", err, br.text(t))
	}
	// Bob signs in on this browser: Ada's SSO session at the issuer goes.
	br.clearCookies(t)
	signInAs("bob", "bob-password-0123")
	check(t, br.do(chromedp.Navigate(edit), chromedp.WaitVisible(chromedp.ID("page-error"))))
	if text := br.text(t); !strings.Contains(text, "needs the editor role") {
		t.Errorf("a viewer opening an editor form:\n%s", text)
	}
	cookies, err := chromedp.Call(br.tab, network.GetCookies, network.GetCookiesParams{URLs: []string{consoleURL + "/admin/ui/"}})
	check(t, err)
	req, _ := http.NewRequest("GET", edit, nil)
	for _, c := range cookies.Cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	resp, err := client.Do(req)
	check(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a viewer's GET of an editor form: %d, want 403", resp.StatusCode)
	}
	for _, ev := range []string{`"event":"console_sign_in","actor":"ada@example.com"`, `"event":"console_commit","actor":"ada@example.com"`,
		`"event":"console_activate","actor":"ada@example.com"`, `"event":"console_forbidden","actor":"bob@example.com"`} {
		if !adm.Logs.Contains(ev) {
			t.Errorf("audit event %s not logged", ev)
		}
	}
	for _, secret := range []string{"console-test-secret-0123456789", clusterToken, "ada-password-0123"} {
		if adm.Logs.Contains(secret) || n.Logs.Contains(secret) {
			t.Error("a secret was logged")
		}
	}
}
