package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keygate/keygate/internal/dotenv"
	"github.com/keygate/keygate/internal/testkit"
)

// The README's five minutes, run as the README says: the example
// configuration with env/local.env, then the demo page in a real browser,
// signed in as the demo user the node created at start; the page shows
// the decoded tokens and userinfo (a screenshot: artifacts/demo.png),
// refreshes, and signs out.
func TestBrowserFiveMinutes(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	check(t, err)
	_, recipe, ok := strings.Cut(string(readme), "\n## Five minutes\n")
	recipe, _, _ = strings.Cut(recipe, "\n## ")
	data, err := os.ReadFile("../env/local.env")
	check(t, err)
	vars, err := dotenv.Parse("env/local.env", data)
	check(t, err)
	local := map[string]string{}
	for _, v := range vars {
		local[v.Name] = v.Value
	}
	user, pw := local["DEMO_USERNAME"], local["DEMO_PASSWORD"]
	for _, want := range []string{"go tool task run", "http://localhost:8080/demo/", "`" + user + "`", "`" + pw + "`"} {
		if !ok || user == "" || !strings.Contains(recipe, want) {
			t.Fatalf("the README's five-minute section does not say %q (demo user %q from env/local.env):\n%s", want, user, recipe)
		}
	}

	br := newBrowser(t, 60*time.Second)
	addr := fedPort(t)
	base := "http://" + addr
	s := newSite(t, map[string]string{"PUBLIC_BASE_URL": base})
	n := startNode(t, s.dir, append(s.env, "KEYGATE_LISTEN_ADDR="+addr)...)
	n.waitReady(t)
	if !n.Logs.Contains(`"demo":"` + base + `/demo/"`) {
		t.Errorf("the start-up line does not name the demo page:\n%s", n.Logs.Tail(5))
	}

	text := func(sel string) string {
		t.Helper()
		s, err := run(br, chromedp.Text(chromedp.ID(sel)))
		if err != nil {
			t.Fatalf("read #%s: %v", sel, err)
		}
		return s
	}
	if err := br.do(
		chromedp.Navigate(base+"/demo/"),
		chromedp.WaitVisible(chromedp.ID("signin")),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), pw),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("signout")),
		chromedp.WaitVisible(chromedp.ID("result")),
	); err != nil {
		page, _ := run(br, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("sign in on the demo page: %v\nthe browser shows:\n%s", err, page)
	}
	waitText(t, br, "userinfo", `"sub"`)
	png, err := run(br, chromedp.FullScreenshot(100))
	check(t, err)
	check(t, os.MkdirAll("artifacts", 0o755))
	shot, _ := filepath.Abs(filepath.Join("artifacts", "demo.png"))
	check(t, os.WriteFile(shot, png, 0o644))
	t.Logf("demo page screenshot: %s (%d bytes)", shot, len(png))

	var id, access, info map[string]any
	for sel, dst := range map[string]*map[string]any{"id-token": &id, "access-token": &access, "userinfo": &info} {
		if err := json.Unmarshal([]byte(text(sel)), dst); err != nil {
			t.Fatalf("#%s is not the decoded JSON: %v\n%s", sel, err, text(sel))
		}
	}
	issuer := base + "/oauth/v2"
	if id["iss"] != issuer || id["aud"] != "demo-app" || id["sub"] == nil || id["nonce"] == nil {
		t.Errorf("the ID token shown: %v", id)
	}
	if access["iss"] != issuer || access["client_id"] != "demo-app" || access["sub"] != id["sub"] {
		t.Errorf("the access token shown: %v", access)
	}
	if info["sub"] != id["sub"] || info["name"] != "Demo User" {
		t.Errorf("the userinfo shown: %v", info)
	}

	if err := br.do(chromedp.Click(chromedp.ID("refresh"))); err != nil {
		t.Fatal(err)
	}
	waitText(t, br, "status", "Refreshed")
	if err := br.do(
		chromedp.Click(chromedp.ID("signout")),
		chromedp.WaitVisible(chromedp.ID("signin")),
	); err != nil {
		page, _ := run(br, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("sign out: %v\nthe browser shows:\n%s", err, page)
	}
	if st := text("status"); st != "Not signed in." {
		t.Errorf("after sign-out the page says %q", st)
	}
	if n.Logs.Contains(pw) {
		t.Error("the node logged the demo password")
	}
}

// waitText waits until the element's text contains want.
func waitText(t *testing.T, b *browser, id, want string) {
	t.Helper()
	got := ""
	testkit.WaitEvery(t, 20*time.Second, 100*time.Millisecond, "#"+id+" to say "+want, func() bool {
		got, _ = run(b, chromedp.Text(chromedp.ID(id)))
		return strings.Contains(got, want)
	})
}
