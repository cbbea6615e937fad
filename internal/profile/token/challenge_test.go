package token

import (
	"net/url"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/keygate/keygate/internal/clientauth"
)

// A 401 invalid_client challenges with Basic only when the client used the
// Authorization header (RFC 6749 §5.2) or sent no credentials at all; a
// client that authenticated in the body gets no challenge.
func TestInvalidClientChallenge(t *testing.T) {
	e := newEnv(t, "https://id.example.com/oauth/v2")
	badAssertion := e.assertion(func(tok jwt.Token) { _ = tok.Set("aud", "https://elsewhere.example") })
	for _, c := range []struct {
		name, body, authz, want string
	}{
		{"basic, wrong secret", "", basicAuth("svc", "wrong-secret-0123456789"), `Basic realm="` + e.issuer + `"`},
		{"no credentials", "", "", `Basic realm="` + e.issuer + `"`},
		{"client_secret_post, wrong secret", "&client_id=opaque&client_secret=wrong-secret-0123456789", "", ""},
		{"client_secret_post, unknown client", "&client_id=ghost&client_secret=wrong-secret-0123456789", "", ""},
		{"private_key_jwt, refused", "&client_assertion_type=" + url.QueryEscape(clientauth.AssertionType) + "&client_assertion=" + badAssertion, "", ""},
	} {
		for _, ep := range []string{"/token", "/introspect", "/revoke"} {
			resp, m := e.post(ep, "grant_type=client_credentials&token=x"+c.body, c.authz)
			if resp.StatusCode != 401 || m["error"] != "invalid_client" {
				t.Errorf("%s at %s: %d %v", c.name, ep, resp.StatusCode, m)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != c.want {
				t.Errorf("%s at %s: WWW-Authenticate %q, want %q", c.name, ep, got, c.want)
			}
		}
	}
}
