package token

import (
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"
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

// RFC 7662 §2.1: a refresh token is introspected for the client that owns
// it, with its metadata; to every other client, and once rotated, revoked
// or expired, it is inactive.
func TestIntrospectRefreshToken(t *testing.T) {
	f := newFlowEnv(t)
	cookie, _ := f.login()
	tok := f.exchange(cookie, f.config("web", webSecret, webRedirect), oauth2.GenerateVerifier())
	m := f.introspectAs(tok.RefreshToken, "web", webSecret)
	if m["active"] != true || m["token_type"] != "refresh_token" || m["client_id"] != "web" || m["sub"] != f.user.ID ||
		m["scope"] != "openid profile" || m["exp"] == nil || m["iat"] == nil || m["iss"] != f.issuer {
		t.Fatalf("owner's introspection: %v", m)
	}
	for _, c := range []struct{ client, sec string }{{"other", otherSecret}, {"rs", rsSecret}} {
		if m := f.introspectAs(tok.RefreshToken, c.client, c.sec); len(m) != 1 || m["active"] != false {
			t.Errorf("%s introspecting web's refresh token: %v", c.client, m)
		}
	}
	// Rotated: the spent token is inactive, the new one active.
	r, rm := f.post("/token", "grant_type=refresh_token&refresh_token="+url.QueryEscape(tok.RefreshToken), basicAuth("web", webSecret))
	if r.StatusCode != 200 {
		t.Fatalf("refresh: %d %v", r.StatusCode, rm)
	}
	if m := f.introspectAs(tok.RefreshToken, "web", webSecret); m["active"] != false {
		t.Errorf("rotated refresh token: %v", m)
	}
	next := rm["refresh_token"].(string)
	if m := f.introspectAs(next, "web", webSecret); m["active"] != true {
		t.Errorf("new refresh token: %v", m)
	}
	f.revoke(next, basicAuth("web", webSecret), "")
	if m := f.introspectAs(next, "web", webSecret); m["active"] != false {
		t.Errorf("revoked refresh token: %v", m)
	}
	// Expired.
	tok = f.exchange(cookie, f.config("web", webSecret, webRedirect), oauth2.GenerateVerifier())
	f.offset.Store(int64(f.p.issue.refreshLifetime + time.Minute))
	defer f.offset.Store(0)
	if m := f.introspectAs(tok.RefreshToken, "web", webSecret); m["active"] != false {
		t.Errorf("expired refresh token: %v", m)
	}
}
