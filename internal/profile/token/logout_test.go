package token

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/keygate/keygate/internal/session"
	"github.com/keygate/keygate/internal/storage/model"
)

// Logout ends the refresh tokens issued from the session; one granted
// offline_access outlives it (OpenID Connect Core 1.0 §11), and so do the
// tokens of the user's other sessions.
func TestLogoutRevokesSessionRefreshTokens(t *testing.T) {
	f := newFlowEnv(t)
	v := oauth2.GenerateVerifier()
	online := f.config("web", webSecret, webRedirect)
	offline := f.config("web", webSecret, webRedirect)
	offline.Scopes = append(offline.Scopes, model.ScopeOfflineAccess)
	refresh := func(rt string) (int, map[string]any) {
		t.Helper()
		r, m := f.post("/token", "grant_type=refresh_token&refresh_token="+url.QueryEscape(rt), basicAuth("web", webSecret))
		return r.StatusCode, m
	}

	cookie, _ := f.login()
	tok := f.exchange(cookie, online, v)
	offTok := f.exchange(cookie, offline, v)
	otherCookie, _ := f.login() // the same user's other session
	otherTok := f.exchange(otherCookie, online, v)
	// Rotate once: the family, not just the first token, must end.
	st, m := refresh(tok.RefreshToken)
	if st != http.StatusOK {
		t.Fatalf("refresh before logout: %d %v", st, m)
	}
	rt := m["refresh_token"].(string)

	resp := f.logout(cookie, "id_token_hint="+tok.Extra("id_token").(string))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if st, m := refresh(rt); st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Errorf("the session's refresh token after logout: %d %v, want invalid_grant", st, m["error"])
	}
	if st, m := refresh(offTok.RefreshToken); st != http.StatusOK {
		t.Errorf("offline_access refresh token after logout: %d %v, want it to work", st, m)
	}
	if st, m := refresh(otherTok.RefreshToken); st != http.StatusOK {
		t.Errorf("another session's refresh token after logout: %d %v, want it to work", st, m)
	}
}

// When the refresh tokens cannot be revoked the logout fails and keeps
// the session, so that the user can retry; it never reports a sign-out
// that left the session's refresh tokens working.
func TestLogoutRevokeFailureKeepsSession(t *testing.T) {
	f := newFlowEnv(t)
	cfg := f.config("web", webSecret, webRedirect)
	v := oauth2.GenerateVerifier()
	cookie, _ := f.login()
	tok := f.exchange(cookie, cfg, v)
	hint := "id_token_hint=" + tok.Extra("id_token").(string)
	f.p.setStore(failingRevokeStore{f.store})
	resp := f.logout(cookie, hint)
	if _, err := f.store.Sessions().Get(context.Background(), model.HashSecret(cookie)); resp.StatusCode != http.StatusBadRequest || err != nil {
		t.Fatalf("logout with a failing store: %d, session: %v; want 400 and the session kept", resp.StatusCode, err)
	}
	if sc := resp.Header.Get("Set-Cookie"); strings.Contains(sc, session.CookieName) {
		t.Errorf("failed logout cleared the cookie: %q", sc)
	}
	// Retried when the store works again: signed out, token revoked.
	f.p.setStore(f.store)
	if resp := f.logout(cookie, hint); resp.StatusCode != http.StatusOK {
		t.Fatalf("retried logout: %d", resp.StatusCode)
	}
	if r, m := f.post("/token", "grant_type=refresh_token&refresh_token="+url.QueryEscape(tok.RefreshToken), basicAuth("web", webSecret)); r.StatusCode != http.StatusBadRequest {
		t.Errorf("refresh after the retried logout: %d %v", r.StatusCode, m)
	}
}

// logout sends GET {path}/logout with the session cookie.
func (f *flowEnv) logout(cookie, query string) *http.Response {
	f.t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/oauth/v2/logout?"+query, nil)
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: session.CookieName, Value: cookie})
	}
	resp, err := f.app.Test(req, -1)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp
}

// failingRevokeStore is a store whose RevokeSession fails.
type failingRevokeStore struct{ model.Store }

func (s failingRevokeStore) RefreshTokens() model.RefreshTokens {
	return failingRevoke{s.Store.RefreshTokens()}
}

type failingRevoke struct{ model.RefreshTokens }

func (failingRevoke) RevokeSession(context.Context, string) (int, error) {
	return 0, errors.New("database unavailable")
}

// A code issued before logout and exchanged after it gets invalid_grant,
// and the refresh token family its exchange stored is revoked, so the
// ended session leaves nothing usable behind.
func TestCodeOfEndedSessionRefused(t *testing.T) {
	f := newFlowEnv(t)
	cfg := f.config("web", webSecret, webRedirect)
	v := oauth2.GenerateVerifier()
	cookie, sess := f.login()
	first := f.exchange(cookie, cfg, v)
	code := f.code(cookie, cfg, v)
	if resp := f.logout(cookie, "id_token_hint="+first.Extra("id_token").(string)); resp.StatusCode != http.StatusOK {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if ok, err := f.store.Sessions().Exists(f.ctx, sess.ID); err != nil || ok {
		t.Fatalf("session after logout: exists %v (%v)", ok, err)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {webRedirect}, "code_verifier": {v}}
	r, m := f.post("/token", form.Encode(), basicAuth("web", webSecret))
	if r.StatusCode != http.StatusBadRequest || m["error"] != "invalid_grant" || !strings.Contains(m["error_description"].(string), "session") {
		t.Fatalf("code of an ended session: %d %v, want invalid_grant naming the session", r.StatusCode, m)
	}
	if m["access_token"] != nil || m["refresh_token"] != nil {
		t.Fatalf("tokens returned with the error: %v", m)
	}
	// Its family was stored by the exchange, then revoked.
	c, err := f.store.AuthCodes().Consume(f.ctx, model.HashSecret(code))
	if !errors.Is(err, model.ErrReplay) {
		t.Fatalf("consume again: %v, want ErrReplay", err)
	}
	if c.RefreshFamilyID == "" || c.SessionID == "" {
		t.Fatalf("the code carries no refresh family or session: %+v", c)
	}
	// RevokeSession counts only families it had to revoke: none is left.
	if n, err := f.store.RefreshTokens().RevokeSession(f.ctx, c.SessionID); err != nil || n != 0 {
		t.Fatalf("unrevoked refresh families of the ended session: %d (%v), want 0", n, err)
	}
}
