package token

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"golang.org/x/oauth2"

	"github.com/keygate/keygate/internal/config"
)

// A reused refresh token revokes its family and every access token issued
// from it, the code exchange's and each refresh's, JWT or opaque, at
// introspection and userinfo; so does revoking the refresh token
// (RFC 7009 §2.1).
func TestRefreshReuseRevokesAccessTokens(t *testing.T) {
	for _, format := range []string{config.FormatJWT, config.FormatOpaque} {
		t.Run(format, func(t *testing.T) {
			f := newFlowEnv(t)
			f.p.clients["web"].format = format
			cookie, _ := f.login()
			cfg := f.config("web", webSecret, webRedirect)
			refresh := func(rt string) (int, map[string]any) {
				r, m := f.post("/token", "grant_type=refresh_token&refresh_token="+url.QueryEscape(rt), basicAuth("web", webSecret))
				return r.StatusCode, m
			}
			userinfo := func(at string) int {
				req := httptest.NewRequest(http.MethodGet, "/oauth/v2/userinfo", nil)
				req.Header.Set("Authorization", "Bearer "+at)
				resp, _ := f.do(req)
				return resp.StatusCode
			}
			// A family of three access tokens, all active.
			grant := func() (ats []string, first, last string) {
				tok := f.exchange(cookie, cfg, oauth2.GenerateVerifier())
				ats, first, last = []string{tok.AccessToken}, tok.RefreshToken, tok.RefreshToken
				for range 2 {
					st, m := refresh(last)
					if st != 200 {
						t.Fatalf("refresh: %d %v", st, m)
					}
					ats, last = append(ats, m["access_token"].(string)), m["refresh_token"].(string)
				}
				for i, at := range ats {
					if f.introspect(at)["active"] != true || userinfo(at) != 200 {
						t.Fatalf("access token %d inactive before reuse", i)
					}
				}
				return ats, first, last
			}
			inactive := func(what string, ats []string) {
				t.Helper()
				for i, at := range ats {
					if m := f.introspect(at); m["active"] != false {
						t.Errorf("%s: access token %d still active at introspection: %v", what, i, m)
					}
					if st := userinfo(at); st != 401 {
						t.Errorf("%s: access token %d accepted at userinfo: %d", what, i, st)
					}
				}
			}

			ats, first, _ := grant()
			other := f.exchange(cookie, cfg, oauth2.GenerateVerifier()) // another grant of the same user
			if st, m := refresh(first); st != 400 || m["error"] != "invalid_grant" {
				t.Fatalf("reuse: %d %v", st, m)
			}
			inactive("refresh token reuse", ats)
			if f.introspect(other.AccessToken)["active"] != true {
				t.Error("reuse in one family revoked another grant's access token")
			}

			ats, _, last := grant()
			f.revoke(last, basicAuth("web", webSecret), "")
			inactive("refresh token revoked", ats)
		})
	}
}
