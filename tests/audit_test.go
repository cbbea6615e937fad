package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/keygate/keygate/internal/testkit"
)

const auditAppSecret = "audit-app-secret-0123456789abcdef"

// The audit catalogue, walked end to end on two zones (two SQLite files,
// an EU node and a US node on one host): every security event is written
// once, with its actor, to the trail of the zone it concerns and to no
// other, and `keygate audit` finds it. (Bundle publishes and activations
// are the admin node's, shown by the admin package's tests.)
func TestAuditCatalogue(t *testing.T) {
	addrEU, addrUS := fedPort(t), fedPort(t)
	issuerEU := "http://" + addrEU + "/oauth/v2"
	data, secrets := t.TempDir(), t.TempDir()
	dir := testkit.ConfigDir(t, map[string]string{
		"00.yaml": fmt.Sprintf(`schema: 1
service-roles:
  eu-node: {zone: eu, profiles: [token, authn, users]}
  us-node: {zone: us, profiles: [token, users]}
zones:
  eu: {data-source: eu-db}
  us: {data-source: us-db}
data-sources:
  eu-db: {type: sqlite, path: %s}
  us-db: {type: sqlite, path: %s}
profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: $ISSUER
    signing-keys: [k1]
    endpoints: [discovery, jwks, authorize, token, revoke, userinfo, logout]
    authentication-profile: authn
  authn:
    type: authentication
    path: /authn
    authenticators:
      password: {type: password, argon2: {memory-kib: 1024, iterations: 1, parallelism: 1}, lockout: {max-failures: 3}}
  users: {type: user-management, path: /scim/v2, token-profile: token, zones: [eu, us]}
clients:
  provisioner: {profile: token, secret: "%s", grant-types: [client_credentials], scopes: ["scim:read", "scim:write"]}
  app:
    profile: token
    secret: %s
    redirect-uris: [%s]
    grant-types: [authorization_code, refresh_token]
    scopes: [openid, profile]
`, filepath.Join(data, "eu.db"), filepath.Join(data, "us.db"), provisionerSecret, auditAppSecret, fedRPRedirect),
		"10-keys.yaml": testkit.KeysConfig(map[string]string{"k1": testkit.KeyFile(t, secrets, "k1")}),
	})
	eu := startNode(t, dir, "KEYGATE_SERVICE_ROLE=eu-node", "KEYGATE_LISTEN_ADDR="+addrEU, "ISSUER="+issuerEU)
	us := startNode(t, dir, "KEYGATE_SERVICE_ROLE=us-node", "KEYGATE_LISTEN_ADDR="+addrUS, "ISSUER=http://"+addrUS+"/oauth/v2")
	for _, n := range []*node{eu, us} {
		n.waitReady(t)
	}

	// SCIM, through the US node for the EU zone: the changes belong to the
	// users' home, not to the node that made them.
	const ct = "application/scim+json"
	tok := us.issue(t, url.Values{}, "provisioner", provisionerSecret)
	create := func(username, pw string) string {
		r := scimCall(t, "POST", us.Public()+"/scim/v2/Users?zone=eu", tok, ct,
			[]byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"`+username+`","password":"`+pw+`"}`))
		if r.code != 201 {
			t.Fatalf("create %s: %d %s", username, r.code, r.raw)
		}
		return r.body["id"].(string)
	}
	const pw = "audra-correct-horse-07"
	audra, bertram := create("audra", pw), create("bertram", "bertram-correct-horse-07")

	// Sign-in: one failure for audra, then a success through the code flow.
	cfg := &oauth2.Config{ClientID: "app", ClientSecret: auditAppSecret, RedirectURL: fedRPRedirect, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: issuerEU + "/authorize", TokenURL: issuerEU + "/token", AuthStyle: oauth2.AuthStyleInHeader}}
	br := newFedBrowser()
	code := func(password string) (string, *http.Response) {
		t.Helper()
		verifier := oauth2.GenerateVerifier()
		authURL := cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier))
		resp, body := br.get(t, authURL)
		if password != "" {
			resp, _ = br.login(t, resp.Request.URL.String(), body, "audra", password)
		}
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if loc == nil || loc.Query().Get("code") == "" {
			return "", resp
		}
		return loc.Query().Get("code") + " " + verifier, resp
	}
	if c, resp := code("not-the-password"); c != "" || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a wrong password: %d, code %q", resp.StatusCode, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	exchange := func(cv string) (*oauth2.Token, error) {
		c, v, _ := strings.Cut(cv, " ")
		return cfg.Exchange(ctx, c, oauth2.VerifierOption(v))
	}
	first, _ := code(pw)
	if first == "" {
		t.Fatal("no code after the right password")
	}
	tok1, err := exchange(first)
	check(t, err)
	// The code again: refused, and its grant revoked (code_reuse, family_revoked).
	if _, err := exchange(first); err == nil {
		t.Fatal("a code exchanged twice")
	}

	// Refresh-token reuse: the session signs audra in again without a
	// password; the rotated-out token, presented again, ends the family.
	second, _ := code("")
	tok2, err := exchange(second)
	check(t, err)
	refresh := func(rt string) (int, []byte) {
		return postForm(t, issuerEU+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "app", auditAppSecret)
	}
	if c, body := refresh(tok2.RefreshToken); c != http.StatusOK {
		t.Fatalf("refresh: %d %s", c, body)
	}
	if c, _ := refresh(tok2.RefreshToken); c != http.StatusBadRequest {
		t.Fatalf("a reused refresh token: %d", c)
	}

	// Revocation (RFC 7009) of a third grant's refresh token.
	third, _ := code("")
	tok3, err := exchange(third)
	check(t, err)
	revoke(t, issuerEU+"/revoke", tok3.RefreshToken, "app", auditAppSecret)

	// Logout of the session, named by the first ID token.
	idToken, _ := tok1.Extra("id_token").(string)
	if resp, body := br.get(t, issuerEU+"/logout?id_token_hint="+url.QueryEscape(idToken)); resp.StatusCode != http.StatusOK {
		t.Fatalf("logout: %d %s", resp.StatusCode, body)
	}

	// Lockout: bertram's third failure locks the account.
	for i := 0; i < 3; i++ {
		resp, body := br.get(t, cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		br.login(t, resp.Request.URL.String(), body, "bertram", "wrong-"+fmt.Sprint(i))
	}

	// SCIM: audra deactivated, bertram deleted.
	if r := scimCall(t, "PATCH", us.Public()+"/scim/v2/Users/"+audra, tok, ct,
		[]byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}`)); r.code != 200 {
		t.Fatalf("deactivate: %d %s", r.code, r.raw)
	}
	if r := scimCall(t, "DELETE", us.Public()+"/scim/v2/Users/"+bertram, tok, "", nil); r.code != 204 {
		t.Fatalf("delete: %d %s", r.code, r.raw)
	}

	type event struct {
		Type, User, Client, Zone string
		Details                  map[string]any
	}
	trail := func(zone string) []event {
		t.Helper()
		cmd := exec.Command(binary, "audit", "--dir", dir, "--zone", zone, "--since", "1h", "--json", "--limit", "1000")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "ISSUER=" + issuerEU}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("keygate audit --zone %s: %v\n%s", zone, err, out)
		}
		var evs []event
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line == "" {
				continue
			}
			var e event
			check(t, json.Unmarshal([]byte(line), &e))
			evs = append(evs, e)
		}
		return evs
	}
	euTrail, usTrail := trail("eu"), trail("us")
	if len(usTrail) != 0 {
		t.Errorf("the US trail holds %d events of EU users: %+v", len(usTrail), usTrail)
	}
	for _, want := range []struct {
		typ, user, client string
		detail            string // a details key=value the event must have, or ""
	}{
		{"scim_user_created", audra, "provisioner", ""},
		{"scim_user_created", bertram, "provisioner", ""},
		{"login_failure", "audra", "", "reason=bad password"},
		{"login_success", "audra", "", "user_id=" + audra},
		{"code_reuse", audra, "app", ""},
		{"family_revoked", audra, "app", "reason=code_reuse"},
		{"refresh_token_reuse", audra, "app", ""},
		{"family_revoked", audra, "app", "reason=refresh_token_reuse"},
		{"family_revoked", audra, "app", "reason=revocation"},
		{"logout", audra, "app", ""},
		{"lockout", "bertram", "", "reason=account"},
		{"scim_user_patched", audra, "provisioner", ""},
		{"scim_user_deleted", bertram, "provisioner", ""},
	} {
		n := 0
		for _, e := range euTrail {
			if e.Type != want.typ || e.User != want.user || e.Client != want.client || e.Zone != "eu" {
				continue
			}
			if k, v, ok := strings.Cut(want.detail, "="); ok && fmt.Sprint(e.Details[k]) != v {
				continue
			}
			n++
		}
		if n != 1 {
			t.Errorf("%s of %s by %q (%s): %d events in the EU trail, want 1", want.typ, want.user, want.client, want.detail, n)
		}
	}
	// The events are counted by type for dashboards and alerts.
	for typ, want := range map[string]float64{"lockout": 1, "login_success": 1, "refresh_token_reuse": 1, "family_revoked": 3} {
		if got, ok := metricValue(eu.Metrics(), "keygate_audit_events_total", map[string]string{"type": typ}); !ok || got != want {
			t.Errorf("keygate_audit_events_total{type=%q} on the EU node = %v (found %v), want %v", typ, got, ok, want)
		}
	}
	if got, ok := metricValue(us.Metrics(), "keygate_audit_events_total", map[string]string{"type": "scim_user_created"}); !ok || got != 2 {
		t.Errorf("SCIM creates counted on the US node that made them: %v (found %v)", got, ok)
	}
	if got, ok := metricValue(eu.Metrics(), "keygate_ready", map[string]string{}); !ok || got != 1 {
		t.Errorf("keygate_ready = %v (found %v)", got, ok)
	}
	// Nothing secret in any event.
	raw, _ := json.Marshal(euTrail)
	for _, s := range []string{pw, auditAppSecret, provisionerSecret, tok1.AccessToken, tok1.RefreshToken, tok2.RefreshToken, tok3.RefreshToken, idToken} {
		if strings.Contains(string(raw), s) {
			t.Errorf("the trail holds a secret or token value (%d chars)", len(s))
		}
	}
	if t.Failed() {
		for _, e := range euTrail {
			t.Logf("eu: %s user=%s client=%s %v", e.Type, e.User, e.Client, e.Details)
		}
	}
}
