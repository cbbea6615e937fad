package tests

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keygate/keygate/internal/testkit"
)

// The device flow (RFC 8628) with the example configuration's cli client:
// the device asks for a code, the user opens verification_uri_complete in
// a real browser, signs in, confirms and allows, and the device's next
// poll gets its tokens (screenshot: artifacts/device.png).
func TestBrowserDeviceFlow(t *testing.T) {
	br := newBrowser(t, 60*time.Second)
	s := newSite(t, nil)
	s.userAdd("alice", alicePassword, "--name", "Alice Example")
	n := startNode(t, s.dir, s.env...)
	n.waitReady(t)
	issuer := s.setIssuer(n.Public(), n)

	post := func(path string, form url.Values) (int, map[string]any) {
		t.Helper()
		resp, err := http.PostForm(issuer+path, form)
		check(t, err)
		defer resp.Body.Close()
		var m map[string]any
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
		}
		return resp.StatusCode, m
	}
	st, da := post("/device_authorization", url.Values{"client_id": {"cli"}, "scope": {"openid profile"}})
	if st != 200 || da["verification_uri"] != issuer+"/device" {
		t.Fatalf("device authorization: %d %v", st, da)
	}
	userCode, deviceCode := da["user_code"].(string), da["device_code"].(string)
	poll := func() (int, map[string]any) {
		return post("/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
			"device_code": {deviceCode}, "client_id": {"cli"}})
	}
	if st, m := poll(); st != 400 || m["error"] != "authorization_pending" {
		t.Fatalf("poll before the user: %d %v", st, m)
	}

	body := func() string { s, _ := run(br, chromedp.Text(chromedp.CSS("body"))); return s }
	if err := br.do(
		chromedp.Navigate(da["verification_uri_complete"].(string)),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), alicePassword),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("user_code")),
	); err != nil {
		t.Fatalf("sign in from the verification link: %v\nthe browser shows:\n%s", err, body())
	}
	if v, _ := run(br, chromedp.Value(chromedp.ID("user_code"))); v != userCode {
		t.Errorf("the code field holds %q, want the link's %q", v, userCode)
	}
	if err := br.do(
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[value=approve]`)),
	); err != nil {
		t.Fatalf("enter the code: %v\nthe browser shows:\n%s", err, body())
	}
	if page := body(); !strings.Contains(page, "cli") || !strings.Contains(page, userCode) {
		t.Errorf("the confirmation does not name the application and the code:\n%s", page)
	}
	png, err := run(br, chromedp.FullScreenshot(100))
	check(t, err)
	check(t, os.MkdirAll("artifacts", 0o755))
	shot, _ := filepath.Abs(filepath.Join("artifacts", "device.png"))
	check(t, os.WriteFile(shot, png, 0o644))
	t.Logf("device confirmation screenshot: %s", shot)
	if err := br.do(chromedp.Click(chromedp.CSS(`button[value=approve]`))); err != nil {
		t.Fatal(err)
	}
	waitBody(t, br, "Return to your device")

	// The device waits its interval before polling again (RFC 8628 §3.5);
	// sooner is slow_down.
	time.Sleep(time.Duration(da["interval"].(float64)) * time.Second)
	st, tok := poll()
	if st != 200 || tok["access_token"] == nil || tok["id_token"] == nil || tok["refresh_token"] == nil {
		t.Fatalf("poll after approval: %d %v", st, tok)
	}
	if st, m := poll(); st != 400 || m["error"] != "invalid_grant" && m["error"] != "slow_down" {
		t.Fatalf("poll after the tokens: %d %v", st, m)
	}
	if n.Logs.Contains(alicePassword) || n.Logs.Contains(deviceCode) {
		t.Error("the node logged the password or the device code")
	}
}

// waitBody waits until the page's text contains want.
func waitBody(t *testing.T, b *browser, want string) {
	t.Helper()
	testkit.WaitEvery(t, 20*time.Second, 100*time.Millisecond, "the page to say "+want, func() bool {
		got, _ := run(b, chromedp.Text(chromedp.CSS("body")))
		return strings.Contains(got, want)
	})
}
