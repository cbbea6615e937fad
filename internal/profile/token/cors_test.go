package token

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// A browser app on a configured origin can call the token, revocation and
// userinfo endpoints cross-origin, preflight included; other origins get
// no CORS headers; credentials are never allowed; caches vary by Origin.
func TestCORS(t *testing.T) {
	f := newFlowEnv(t)
	const origin = "http://127.0.0.1:9999" // spa's allowed-origins
	send := func(method, path, origin, body string, hdr map[string]string) *http.Response {
		req := httptest.NewRequest(method, "/oauth/v2"+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, _ := f.do(req)
		return resp
	}
	check := func(what string, resp *http.Response, allowed bool) {
		t.Helper()
		got := resp.Header.Get("Access-Control-Allow-Origin")
		if (allowed && got != origin) || (!allowed && got != "") {
			t.Errorf("%s: Access-Control-Allow-Origin %q (allowed %v)", what, got, allowed)
		}
		if resp.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%s: credentials allowed", what)
		}
		if !strings.Contains(resp.Header.Get("Vary"), "Origin") {
			t.Errorf("%s: Vary %q", what, resp.Header.Get("Vary"))
		}
	}
	for _, path := range []string{"/token", "/revoke", "/userinfo"} {
		pre := map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type, authorization"}
		resp := send(http.MethodOptions, path, origin, "", pre)
		if resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") ||
			!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "authorization") {
			t.Errorf("%s preflight: %d %v", path, resp.StatusCode, resp.Header)
		}
		check(path+" preflight", resp, true)
		check(path+" preflight from another origin", send(http.MethodOptions, path, "https://evil.example", "", pre), false)
		if resp := send(http.MethodOptions, path, "", "", nil); resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: OPTIONS without CORS: %d", path, resp.StatusCode)
		}
	}
	// The SPA's code exchange, and an error, are readable by its origin.
	cookie, _ := f.login()
	cfg := f.config("spa", "", spaRedirect)
	v := oauth2.GenerateVerifier()
	code := f.code(cookie, cfg, v)
	body := "grant_type=authorization_code&client_id=spa&code=" + code + "&redirect_uri=" + spaRedirect + "&code_verifier=" + v
	resp := send(http.MethodPost, "/token", origin, body, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("exchange: %d", resp.StatusCode)
	}
	check("token", resp, true)
	check("token error", send(http.MethodPost, "/token", origin, "grant_type=nope&client_id=spa", nil), true)
	check("token from another origin", send(http.MethodPost, "/token", "https://evil.example", "grant_type=nope&client_id=spa", nil), false)
	check("userinfo", send(http.MethodGet, "/userinfo", origin, "", map[string]string{"Authorization": "Bearer x"}), true)
	check("revoke", send(http.MethodPost, "/revoke", origin, "token=x&client_id=spa", nil), true)
}
