package token

import (
	"net/http"
	"net/url"
	"testing"

	"golang.org/x/oauth2"
)

// RFC 8252 §7.3: a native client that opts in may use any port on a
// registered loopback IP redirect URI; host, path and query still match
// exactly, and nothing else loosens.
func TestLoopbackRedirectAnyPort(t *testing.T) {
	f := newFlowEnv(t)
	cookie, _ := f.login()
	spa := f.p.clients["spa"]
	spa.redirectURIs = append(spa.redirectURIs, "http://[::1]/cb?app=1")
	ask := func(redirect string) (*http.Response, *url.URL) {
		v := oauth2.GenerateVerifier()
		return f.authorize(cookie, "response_type=code&client_id=spa&scope=openid&state=s&code_challenge_method=S256&code_challenge="+
			oauth2.S256ChallengeFromVerifier(v)+"&redirect_uri="+url.QueryEscape(redirect))
	}
	other := "http://127.0.0.1:51234/cb"
	if resp, _ := ask(other); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("another port without the opt-in: %d", resp.StatusCode)
	}
	spa.loopbackAnyPort = true
	for _, ok := range []string{other, "http://127.0.0.1/cb", spaRedirect, "http://[::1]:8080/cb?app=1", "http://[::1]/cb?app=1"} {
		resp, loc := ask(ok)
		if resp.StatusCode != http.StatusFound || loc == nil || loc.Query().Get("code") == "" {
			t.Errorf("%s: %d %v, want a code", ok, resp.StatusCode, loc)
			continue
		}
		if got := loc.Scheme + "://" + loc.Host + loc.Path; got+"" != ok && got+"?app=1" != ok {
			t.Errorf("%s: redirected to %s", ok, loc)
		}
	}
	for _, bad := range []string{
		"http://127.0.0.1:51234/cb/", "http://127.0.0.1:51234/other", "http://127.0.0.1:51234/cb?x=1",
		"http://localhost:51234/cb", "http://127.0.0.2:51234/cb", "http://127.0.0.1.evil.example:51234/cb",
		"http://127.0.0.1@evil.example/cb", "https://127.0.0.1:51234/cb", "http://127.0.0.1:99999/cb",
		"http://127.0.0.1:/cb", "http://[::1]:8080/cb", "http://[::1]:8080/cb?app=1#x",
	} {
		if resp, loc := ask(bad); resp.StatusCode != http.StatusBadRequest || loc != nil {
			t.Errorf("%s: %d %v, want an error page", bad, resp.StatusCode, loc)
		}
	}
	// The code is bound to the URI the request used.
	cfg := f.config("spa", "", other)
	f.exchange(cookie, cfg, oauth2.GenerateVerifier())
}
