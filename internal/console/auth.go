package console

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// sso signs people in with OpenID Connect: the code flow with PKCE and a
// nonce, against the configured issuer (a Keygate token profile works; the
// console is a client like any other).
type sso struct {
	c        Config
	mu       sync.Mutex
	provider *oidc.Provider // discovered on first use: the issuer may start later
}

func (s *sso) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, s.c.HTTPClient)
}

func (s *sso) discover(ctx context.Context) (*oidc.Provider, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.provider != nil {
		return s.provider, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(s.ctx(ctx), s.c.Issuer)
	if err != nil {
		return nil, fmt.Errorf("the sign-in issuer cannot be reached or its discovery document is invalid")
	}
	s.provider = p
	return p, nil
}

func (s *sso) oauth2(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{ClientID: s.c.ClientID, ClientSecret: string(s.c.ClientSecret), Endpoint: p.Endpoint(),
		RedirectURL: s.c.BaseURL + basePath + "callback", Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}
}

// loginState is kept in a signed cookie between /login and /callback.
type loginState struct {
	State, Nonce, Verifier string
	Expires                int64
}

func (c *Server) startSSO(w http.ResponseWriter, r *http.Request) {
	p, err := c.sso.discover(r.Context())
	if err != nil {
		c.render(w, r, http.StatusBadGateway, "login", page{Title: "Sign in", Error: err.Error(), Data: c.loginData()})
		return
	}
	st := loginState{State: randomID(), Nonce: randomID(), Verifier: oauth2.GenerateVerifier(), Expires: time.Now().Add(loginTTL).Unix()}
	v, err := c.seal.seal("login", st)
	if err != nil {
		http.Error(w, "server error", http.StatusInternalServerError)
		return
	}
	c.setCookie(w, loginCookie, v, loginTTL)
	http.Redirect(w, r, c.sso.oauth2(p).AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)), http.StatusFound)
}

func (c *Server) callback(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, msg string) {
		c.log.Warn("console sign-in failed", "reason", msg)
		c.render(w, r, status, "login", page{Title: "Sign in", Error: msg, Data: c.loginData()})
	}
	var st loginState
	ck, err := r.Cookie(loginCookie)
	if err != nil || c.seal.open("login", ck.Value, &st) != nil || time.Now().Unix() > st.Expires {
		fail(http.StatusBadRequest, "the sign-in took too long or was started elsewhere; try again")
		return
	}
	c.clearCookie(w, loginCookie)
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		fail(http.StatusForbidden, "the issuer refused the sign-in ("+e+")")
		return
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(st.State)) != 1 {
		fail(http.StatusBadRequest, "the sign-in answer does not belong to this browser; try again")
		return
	}
	p, err := c.sso.discover(r.Context())
	if err != nil {
		fail(http.StatusBadGateway, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(c.sso.ctx(r.Context()), 15*time.Second)
	defer cancel()
	cfg := c.sso.oauth2(p)
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		fail(http.StatusBadGateway, "the issuer did not exchange the code")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := p.Verifier(&oidc.Config{ClientID: c.c.ClientID}).Verify(ctx, raw)
	if err != nil || idt.Nonce != st.Nonce {
		fail(http.StatusBadGateway, "the issuer's ID token did not verify")
		return
	}
	claims := map[string]any{}
	_ = idt.Claims(&claims)
	if ui, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil {
		var more map[string]any
		if ui.Claims(&more) == nil && more["sub"] == claims["sub"] {
			for k, v := range more {
				if _, set := claims[k]; !set {
					claims[k] = v
				}
			}
			// An e-mail and its verification come from one source.
			if _, fromID := claims["email_verified"]; fromID && more["email"] != nil && claims["email"] != more["email"] {
				claims["email_verified"] = false
			}
		}
	}
	role := c.roleOf(claims)
	name, _ := claims["name"].(string)
	email, _ := claims["email"].(string)
	if role == "" {
		c.audit("console_sign_in_refused", idt.Subject, map[string]any{"email": email})
		fail(http.StatusForbidden, "you are signed in at the issuer, but the console does not list you as a viewer or an editor")
		return
	}
	c.signIn(w, r, &session{ID: randomID(), Subject: idt.Subject, Name: name, Email: email, Role: role})
}

// roleOf maps the configured claim to a role: editor if a value is in
// Editors, viewer if in Viewers (or Viewers is "*"), else none. An e-mail
// counts only when the issuer says it is verified: anyone who may set a
// user's e-mail (a provisioning client) must not thereby pick a role.
func (c *Server) roleOf(claims map[string]any) string {
	var values []string
	switch v := claims[c.c.RoleClaim].(type) {
	case string:
		values = []string{v}
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				values = append(values, s)
			}
		}
	}
	if c.c.RoleClaim == "email" && claims["email_verified"] != true {
		return ""
	}
	match := func(list []string) bool {
		for _, v := range values {
			if slices.ContainsFunc(list, func(w string) bool { return strings.EqualFold(w, v) }) {
				return true
			}
		}
		return false
	}
	switch {
	case match(c.c.Editors):
		return RoleEditor
	case match(c.c.Viewers), slices.Contains(c.c.Viewers, "*") && len(values) > 0:
		return RoleViewer
	}
	return ""
}

func (c *Server) signIn(w http.ResponseWriter, r *http.Request, s *session) {
	s.Expires = time.Now().Add(sessionTTL).Unix()
	v, err := c.seal.seal("session", s)
	if err != nil {
		http.Error(w, "server error", http.StatusInternalServerError)
		return
	}
	c.setCookie(w, sessionCookie, v, sessionTTL)
	c.audit("console_sign_in", s.Actor(), map[string]any{"role": s.Role, "break_glass": s.BreakGlass})
	http.Redirect(w, r, basePath+"fleet", http.StatusSeeOther)
}

// breakGlass signs in with the admin token: an editor session, audited
// as such, for when the issuer is down.
func (c *Server) breakGlass(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(r.PostFormValue("token"))))
	want := sha256.Sum256(c.c.AdminToken)
	if len(c.c.AdminToken) == 0 || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		c.audit("console_break_glass_refused", "unknown", nil)
		c.render(w, r, http.StatusUnauthorized, "login", page{Title: "Sign in", Error: "that is not the admin token", Data: c.loginData()})
		return
	}
	c.log.Warn("console break-glass sign-in with the admin token")
	c.signIn(w, r, &session{ID: randomID(), Subject: "break-glass", Role: RoleEditor, BreakGlass: true})
}

func (c *Server) logout(w http.ResponseWriter, r *http.Request, s *session) {
	c.clearCookie(w, sessionCookie)
	c.audit("console_sign_out", s.Actor(), nil)
	http.Redirect(w, r, basePath+"login", http.StatusSeeOther)
}
