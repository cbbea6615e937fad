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
	"github.com/keygate/keygate/internal/storage"
)

// Logout ends the refresh tokens issued from the session; one granted
// offline_access outlives it (OpenID Connect Core 1.0 §11), and so do the
// tokens of the user's other sessions.
func TestLogoutRevokesSessionRefreshTokens(t *testing.T) {
	f := newFlowEnv(t)
	v := oauth2.GenerateVerifier()
	online := f.config("web", webSecret, webRedirect)
	offline := f.config("web", webSecret, webRedirect)
	offline.Scopes = append(offline.Scopes, storage.ScopeOfflineAccess)
	grant := func(cookie string, cfg *oauth2.Config) *oauth2.Token {
		t.Helper()
		tok, err := cfg.Exchange(f.ctx, f.code(cookie, cfg, v), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	refresh := func(rt string) (int, map[string]any) {
		t.Helper()
		r, m := f.post("/token", "grant_type=refresh_token&refresh_token="+url.QueryEscape(rt), basicAuth("web", webSecret))
		return r.StatusCode, m
	}

	cookie, _ := f.login()
	tok := grant(cookie, online)
	offTok := grant(cookie, offline)
	otherCookie, _ := f.login() // the same user's other session
	otherTok := grant(otherCookie, online)
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
	tok, err := cfg.Exchange(f.ctx, f.code(cookie, cfg, v), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	hint := "id_token_hint=" + tok.Extra("id_token").(string)
	f.p.store = failingRevokeStore{f.store}
	resp := f.logout(cookie, hint)
	if _, err := f.store.Sessions().Get(context.Background(), storage.HashSecret(cookie)); resp.StatusCode != http.StatusBadRequest || err != nil {
		t.Fatalf("logout with a failing store: %d, session: %v; want 400 and the session kept", resp.StatusCode, err)
	}
	if sc := resp.Header.Get("Set-Cookie"); strings.Contains(sc, session.CookieName) {
		t.Errorf("failed logout cleared the cookie: %q", sc)
	}
	// Retried when the store works again: signed out, token revoked.
	f.p.store = f.store
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
type failingRevokeStore struct{ storage.Store }

func (s failingRevokeStore) RefreshTokens() storage.RefreshTokens {
	return failingRevoke{s.Store.RefreshTokens()}
}

type failingRevoke struct{ storage.RefreshTokens }

func (failingRevoke) RevokeSession(context.Context, string) (int, error) {
	return 0, errors.New("database unavailable")
}
