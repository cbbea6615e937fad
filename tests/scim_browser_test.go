package tests

import (
	"context"
	"encoding/json"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"net/url"
	"strings"
	"testing"
	"time"
)

// A user provisioned through SCIM signs in through the real browser at
// once; deactivated, the user cannot sign in and the refresh token stops
// working; deleted, likewise.
func TestBrowserSCIMProvisionedUser(t *testing.T) {
	br := newBrowser(t, 60*time.Second)
	rp := newTestRP(t, "web-app", webAppSecret)
	s := newSite(t, map[string]string{"WEB_APP_REDIRECT_URI": rp.RedirectURL(), "PROVISIONER_SECRET": provisionerSecret})
	s.edit("00-service.yaml", func(y string) string {
		return strings.Replace(y, "profiles: [token, authn, demo]", "profiles: [token, authn, demo, users]", 1)
	})
	s.edit("30-profiles.yaml", func(y string) string {
		return y + "\n  # SCIM for the provisioning system.\n  users: {type: user-management, path: /scim/v2, token-profile: token}\n"
	})
	s.edit("40-clients.yaml", func(y string) string {
		return strings.Replace(y, "clients:\n", "clients:\n  provisioner: {profile: token, secret: $PROVISIONER_SECRET, grant-types: [client_credentials], scopes: [\"scim:read\", \"scim:write\"]}\n", 1)
	})
	n := startNode(t, s.dir, s.env...)
	n.waitReady(t)
	issuer := s.setIssuer(n.Public(), n)
	if err := rp.discover(context.Background(), issuer); err != nil {
		t.Fatalf("RP discovery: %v", err)
	}
	tok := n.issue(t, url.Values{}, "provisioner", provisionerSecret)
	scimURL := n.Public() + "/scim/v2"
	provision := func(user, pw string) string {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": user, "password": pw,
			"name":   map[string]any{"givenName": strings.ToUpper(user[:1]) + user[1:]},
			"emails": []any{map[string]any{"value": user + "@example.com", "type": "work", "primary": true}}})
		r := scimCall(t, "POST", scimURL+"/Users", tok, "application/scim+json", body)
		if r.code != 201 {
			t.Fatalf("provision %s: %d %s", user, r.code, r.raw)
		}
		return r.body["id"].(string)
	}
	refresh := func(rt string) (int, string) {
		t.Helper()
		code, body := postForm(t, n.Public()+"/oauth/v2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "web-app", webAppSecret)
		return code, string(body)
	}

	carol := provision("carol", "carol-password-0123")
	_, text := signIn(t, br, rp, "carol", "carol-password-0123", "scim-provisioned-login.png", nil)
	res := checkSignedIn(t, rp, text, "carol", "carol@example.com")
	if res.Subject != carol {
		t.Errorf("ID token sub %q, want the SCIM id %q", res.Subject, carol)
	}

	// Deactivated: no refresh, no sign-in.
	r := scimCall(t, "PATCH", scimURL+"/Users/"+carol, tok, "application/scim+json",
		[]byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}`))
	if r.code != 200 || r.body["active"] != false {
		t.Fatalf("deactivate: %d %s", r.code, r.raw)
	}
	if code, body := refresh(res.RefreshedRefresh); code != 400 || !strings.Contains(body, "invalid_grant") {
		t.Errorf("refresh after deactivation: %d %s", code, body)
	}
	br.clearCookies(t)
	_, text = signIn(t, br, rp, "carol", "carol-password-0123", "", nil)
	if strings.Contains(text, "signed in as carol") {
		t.Errorf("a deactivated user signed in:\n%s", text)
	}

	// Deleted: likewise.
	dave := provision("dave", "dave-password-0123")
	br.clearCookies(t)
	_, text = signIn(t, br, rp, "dave", "dave-password-0123", "", nil)
	res = checkSignedIn(t, rp, text, "dave", "dave@example.com")
	if r := scimCall(t, "DELETE", scimURL+"/Users/"+dave, tok, "", nil); r.code != 204 {
		t.Fatalf("delete: %d %s", r.code, r.raw)
	}
	if code, body := refresh(res.RefreshedRefresh); code != 400 || !strings.Contains(body, "invalid_grant") {
		t.Errorf("refresh after deletion: %d %s", code, body)
	}
	br.clearCookies(t)
	_, text = signIn(t, br, rp, "dave", "dave-password-0123", "", nil)
	if strings.Contains(text, "signed in as dave") {
		t.Errorf("a deleted user signed in:\n%s", text)
	}
}

// clearCookies ends every session the browser holds (the issuer's SSO
// session among them).
func (b *browser) clearCookies(t *testing.T) {
	t.Helper()
	_, err := chromedp.Call(b.tab, network.ClearBrowserCookies, cdp.Empty{})
	check(t, err)
}
