package token

import (
	"net/url"
	"testing"
)

// RFC 7662 §4: a client learns the claims of tokens issued to it or
// naming it in aud; any other token is {"active":false} to it, unless it
// is a resource server allowed to introspect every token.
func TestIntrospectionPolicy(t *testing.T) {
	e := newEnv(t, "https://id.example.com/oauth/v2")
	e.p.clients["svc"].audiences = append(e.p.clients["svc"].audiences, "code")
	own := e.issue("svc", svcSecret)
	r, m := e.post("/token", "grant_type=client_credentials&audience=code", basicAuth("svc", svcSecret))
	if r.StatusCode != 200 {
		t.Fatalf("token for aud code: %d %v", r.StatusCode, m)
	}
	forCode := m["access_token"].(string)
	for _, c := range []struct {
		name, token, client, sec string
		active                   bool
	}{
		{"issued to the caller", own, "svc", svcSecret, true},
		{"caller in aud", forCode, "code", codeSecret, true},
		{"resource server allowed every token", own, "rs", rsSecret, true},
		{"another client's token", own, "code", codeSecret, false},
		{"another client's token, client_secret_post", own, "opaque", opaqueSecret, false},
	} {
		var got map[string]any
		if c.client == "opaque" {
			_, got = e.post("/introspect", "token="+url.QueryEscape(c.token)+"&client_id=opaque&client_secret="+opaqueSecret, "")
		} else {
			got = e.introspectAs(c.token, c.client, c.sec)
		}
		if got["active"] != c.active {
			t.Errorf("%s: %v, want active %v", c.name, got, c.active)
		}
		if !c.active && len(got) != 1 {
			t.Errorf("%s: an inactive answer reveals %v", c.name, got)
		}
	}
}
