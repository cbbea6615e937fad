package token

import (
	"context"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/keygate/keygate/internal/session"
)

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// devicePage sends the verification page a request with the session
// cookie (none if ""), and returns the status, body and Location.
func (f *flowEnv) devicePage(cookie, method string, form url.Values) (int, string, string) {
	f.t.Helper()
	var req *http.Request
	if method == http.MethodGet {
		req = httptest.NewRequest(method, "/oauth/v2/device?"+form.Encode(), nil)
	} else {
		req = httptest.NewRequest(method, "/oauth/v2/device", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: session.CookieName, Value: cookie})
	}
	resp, err := f.app.Test(req, -1)
	if err != nil {
		f.t.Fatal(err)
	}
	var b strings.Builder
	buf := make([]byte, 64<<10)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, b.String(), resp.Header.Get("Location")
}

// mustGet is the verification page as the session's user sees it.
func mustGet(f *flowEnv, cookie string) string {
	f.t.Helper()
	st, page, _ := f.devicePage(cookie, http.MethodGet, url.Values{})
	if st != 200 {
		f.t.Fatalf("GET device: %d", st)
	}
	return page
}

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfInput.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf in the page:\n%s", page)
	}
	return html.UnescapeString(m[1])
}

// approve walks the verification page as the signed-in user: the code as
// typed (any case, with or without its dash), the confirmation, the
// decision.
func (f *flowEnv) approve(cookie, typed, decision string) string {
	f.t.Helper()
	st, page, _ := f.devicePage(cookie, http.MethodGet, url.Values{})
	if st != 200 {
		f.t.Fatalf("GET device: %d", st)
	}
	st, page, _ = f.devicePage(cookie, http.MethodPost, url.Values{"user_code": {typed}, "csrf": {csrfOf(f.t, page)}})
	if st != 200 || !strings.Contains(page, "<strong>tv</strong>") {
		f.t.Fatalf("enter the code: %d\n%s", st, page)
	}
	st, page, _ = f.devicePage(cookie, http.MethodPost, url.Values{"user_code": {typed}, "csrf": {csrfOf(f.t, page)}, "decision": {decision}})
	if st != 200 {
		f.t.Fatalf("decide: %d\n%s", st, page)
	}
	return page
}

// poll is one token request with a device_code, as client.
func (f *flowEnv) poll(client, deviceCode string) (int, map[string]any) {
	f.t.Helper()
	resp, m := f.post("/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
		"device_code": {deviceCode}, "client_id": {client}}.Encode(), "")
	return resp.StatusCode, m
}

// TestDeviceFlow is RFC 8628 end to end with golang.org/x/oauth2's device
// flow as the device: the device authorization request, the user on the
// verification page, polling to the tokens, then every error of §3.5.
func TestDeviceFlow(t *testing.T) {
	f := newFlowEnv(t)
	cookie, _ := f.login()
	cfg := &oauth2.Config{ClientID: "tv", Scopes: []string{"openid", "profile", "offline_access"}, Endpoint: oauth2.Endpoint{
		DeviceAuthURL: f.issuer + "/device_authorization", TokenURL: f.issuer + "/token", AuthStyle: oauth2.AuthStyleInParams}}
	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()

	t.Run("x/oauth2 signs the device in", func(t *testing.T) {
		da, err := cfg.DeviceAuth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`).MatchString(da.UserCode) ||
			da.VerificationURI != f.issuer+"/device" || da.VerificationURIComplete != da.VerificationURI+"?user_code="+da.UserCode ||
			da.Interval != 1 || time.Until(da.Expiry) < 9*time.Minute {
			t.Fatalf("device authorization response %+v", da)
		}
		// The complete URI, before signing in: to the login page and back.
		u, _ := url.Parse(da.VerificationURIComplete)
		st, _, loc := f.devicePage("", http.MethodGet, u.Query())
		if st != http.StatusFound || !strings.HasPrefix(loc, "/authn/login?return_to="+url.QueryEscape("/oauth/v2/device?user_code=")) {
			t.Fatalf("verification page without a session: %d %s", st, loc)
		}
		if page := f.approve(cookie, strings.ToLower(strings.ReplaceAll(da.UserCode, "-", "")), "approve"); !strings.Contains(page, "Return to your device") {
			t.Fatalf("done page:\n%s", page)
		}
		tok, err := cfg.DeviceAccessToken(ctx, da)
		if err != nil {
			t.Fatal(err)
		}
		if in := f.introspect(tok.AccessToken); in["active"] != true || in["sub"] != f.user.ID || in["client_id"] != "tv" {
			t.Fatalf("introspection %v", in)
		}
		if tok.Extra("id_token") == nil || tok.RefreshToken == "" {
			t.Fatalf("token %+v", tok)
		}
		if st, m := f.poll("tv", da.DeviceCode); st != 400 || m["error"] != "invalid_grant" {
			t.Fatalf("second use of the device_code: %d %v", st, m)
		}
		// A public device's refresh token rotates like a browser's.
		refreshed, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		if err != nil || refreshed.RefreshToken == tok.RefreshToken {
			t.Fatalf("refresh: %v", err)
		}
	})

	t.Run("a device with a DPoP key gets bound tokens", func(t *testing.T) {
		da, err := cfg.DeviceAuth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f.approve(cookie, da.UserCode, "approve")
		key := newProofKey(t)
		resp, m := f.postDPoP("/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
			"device_code": {da.DeviceCode}, "client_id": {"tv"}}.Encode(), "", key.proof(t, "POST", f.issuer+"/token", "", proofOpts{}))
		if resp.StatusCode != 200 || m["token_type"] != "DPoP" || cnfJKT(claimsOf(t, m["access_token"].(string))) != key.jkt {
			t.Fatalf("%d %v", resp.StatusCode, m)
		}
		// The public device's refresh token is bound to the key too.
		resp, m = f.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {m["refresh_token"].(string)},
			"client_id": {"tv"}}.Encode(), "")
		if resp.StatusCode == 200 {
			t.Fatalf("a bound refresh token without a proof: %v", m)
		}
	})

	t.Run("polling before the decision", func(t *testing.T) {
		da, err := cfg.DeviceAuth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st, m := f.poll("tv", da.DeviceCode); st != 400 || m["error"] != "authorization_pending" {
			t.Fatalf("first poll: %d %v", st, m)
		}
		if st, m := f.poll("tv", da.DeviceCode); st != 400 || m["error"] != "slow_down" {
			t.Fatalf("poll within the interval: %d %v", st, m)
		}
		// The interval is now 6 s: a poll 2 s later is still too soon.
		f.offset.Store(int64(2 * time.Second))
		if st, m := f.poll("tv", da.DeviceCode); st != 400 || m["error"] != "slow_down" {
			t.Fatalf("poll 2 s later: %d %v", st, m)
		}
		f.offset.Store(int64(20 * time.Second))
		if st, m := f.poll("tv", da.DeviceCode); st != 400 || m["error"] != "authorization_pending" {
			t.Fatalf("poll after the raised interval: %d %v", st, m)
		}
		if st, m := f.poll("tv2", da.DeviceCode); st != 400 || m["error"] != "invalid_grant" {
			t.Fatalf("another device client's poll: %d %v", st, m)
		}
		// Another client, authenticated, that may not use the grant.
		resp, m := f.post("/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
			"device_code": {da.DeviceCode}}.Encode(), basicAuth("web", webSecret))
		if resp.StatusCode != 400 || m["error"] != "unauthorized_client" {
			t.Fatalf("another client's poll: %d %v", resp.StatusCode, m)
		}
		f.offset.Store(int64(11 * time.Minute))
		if st, m := f.poll("tv", da.DeviceCode); st != 400 || m["error"] != "expired_token" {
			t.Fatalf("poll after expiry: %d %v", st, m)
		}
		f.offset.Store(0)
	})

	t.Run("a denied device gets access_denied once", func(t *testing.T) {
		da, err := cfg.DeviceAuth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if page := f.approve(cookie, da.UserCode, "deny"); !strings.Contains(page, "You denied the device") {
			t.Fatalf("done page:\n%s", page)
		}
		if st, m := f.poll("tv", da.DeviceCode); st != 400 || m["error"] != "access_denied" {
			t.Fatalf("poll after deny: %d %v", st, m)
		}
		f.offset.Store(int64(5 * time.Second))
		defer f.offset.Store(0)
		if st, m := f.poll("tv", da.DeviceCode); st != 400 || m["error"] != "invalid_grant" {
			t.Fatalf("poll after access_denied: %d %v", st, m)
		}
	})

	t.Run("the forms are bound to the session and the code", func(t *testing.T) {
		da, err := cfg.DeviceAuth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st, _, _ := f.devicePage(cookie, http.MethodPost, url.Values{"user_code": {da.UserCode}}); st != http.StatusForbidden {
			t.Fatalf("POST without csrf: %d", st)
		}
		other, _ := f.login()
		_, page, _ := f.devicePage(other, http.MethodGet, url.Values{})
		if st, _, _ := f.devicePage(cookie, http.MethodPost, url.Values{"user_code": {da.UserCode}, "csrf": {csrfOf(t, page)}}); st != http.StatusForbidden {
			t.Fatalf("POST with another session's csrf: %d", st)
		}
		// The entry form's token cannot carry a decision.
		_, page, _ = f.devicePage(cookie, http.MethodGet, url.Values{})
		if st, _, _ := f.devicePage(cookie, http.MethodPost, url.Values{"user_code": {da.UserCode}, "csrf": {csrfOf(t, page)},
			"decision": {"approve"}}); st != http.StatusForbidden {
			t.Fatalf("decision with the entry form's csrf: %d", st)
		}
		if st, m := f.poll("tv", da.DeviceCode); m["error"] != "authorization_pending" {
			t.Fatalf("after refused forms the device is still pending: %d %v", st, m)
		}
	})

	t.Run("a code or a decision in the URL does nothing", func(t *testing.T) {
		da, err := cfg.DeviceAuth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, page, _ := f.devicePage(cookie, http.MethodPost, url.Values{"user_code": {da.UserCode}, "csrf": {csrfOf(t, mustGet(f, cookie))}})
		q := url.Values{"user_code": {da.UserCode}, "csrf": {csrfOf(t, page)}, "decision": {"approve"}}
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			if st, _, _ := f.devicePage(cookie, m, q); st != 200 {
				t.Fatalf("%s with a decision in the query: %d", m, st)
			}
		}
		if st, m := f.poll("tv", da.DeviceCode); m["error"] != "authorization_pending" {
			t.Fatalf("after a decision in the URL the device is still pending: %d %v", st, m)
		}
	})

	t.Run("signing out between approval and poll ends the grant", func(t *testing.T) {
		da, err := cfg.DeviceAuth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		own, sess := f.login()
		f.approve(own, da.UserCode, "approve")
		if err := f.store.Sessions().Delete(context.Background(), sess.Hash); err != nil {
			t.Fatal(err)
		}
		f.offset.Store(int64(5 * time.Second))
		defer f.offset.Store(0)
		if st, m := f.poll("tv", da.DeviceCode); st != 400 || m["error"] != "invalid_grant" {
			t.Fatalf("poll after the session ended: %d %v", st, m)
		}
	})

	t.Run("entering codes is limited per user, also at once", func(t *testing.T) {
		da, err := cfg.DeviceAuth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		guesser, _ := f.login()
		// The entries so far in this test count too: send enough at once
		// to pass the limit whatever they were.
		csrf := csrfOf(t, mustGet(f, guesser))
		statuses := make(chan int, 2*maxUserCodeEntries)
		var wg sync.WaitGroup
		for range 2 * maxUserCodeEntries {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, _, _ := f.devicePage(guesser, http.MethodPost, url.Values{"user_code": {"BCDF-GHJK"}, "csrf": {csrf}})
				statuses <- st
			}()
		}
		wg.Wait()
		close(statuses)
		wrong := 0
		for st := range statuses {
			if st == http.StatusBadRequest {
				wrong++
			}
		}
		if wrong > maxUserCodeEntries {
			t.Fatalf("%d wrong codes answered as wrong, at most %d should have been looked up", wrong, maxUserCodeEntries)
		}
		if st, _, _ := f.devicePage(guesser, http.MethodPost, url.Values{"user_code": {da.UserCode}, "csrf": {csrf}}); st != http.StatusTooManyRequests {
			t.Fatalf("the right code past the limit: %d, want 429", st)
		}
	})
}
