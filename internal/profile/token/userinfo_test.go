package token

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// RFC 9068 §4: userinfo accepts only access tokens whose aud names the
// issuer or one of the profile's userinfo-audiences.
func TestUserinfoAudience(t *testing.T) {
	f := newFlowEnv(t)
	cookie, _ := f.login()
	cfg := f.config("web", webSecret, webRedirect)
	userinfo := func(at string) *http.Response {
		req := httptest.NewRequest(http.MethodGet, "/oauth/v2/userinfo", nil)
		req.Header.Set("Authorization", "Bearer "+at)
		resp, _ := f.do(req)
		return resp
	}
	if r := userinfo(f.exchange(cookie, cfg, oauth2.GenerateVerifier()).AccessToken); r.StatusCode != 200 {
		t.Fatalf("token for the issuer: %d", r.StatusCode)
	}
	// The client's tokens are now for an API, not for userinfo.
	f.p.clients["web"].audiences = []string{apiAudience}
	forAPI := f.exchange(cookie, cfg, oauth2.GenerateVerifier()).AccessToken
	r := userinfo(forAPI)
	if r.StatusCode != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("token for another audience: %d %q", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
	// Unless the profile lists that audience for userinfo.
	f.p.userinfoAudiences = []string{"https://elsewhere.example.com", apiAudience}
	if r := userinfo(forAPI); r.StatusCode != 200 {
		t.Fatalf("token for a configured userinfo audience: %d", r.StatusCode)
	}
}
