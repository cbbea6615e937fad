package authn

// The oidc authenticator: sign in through a partner's OpenID Connect IdP.
//
// {path}/oidc/{name}/start?return_to=… discovers the partner (once per
// profile build, lazily), packs state, nonce, PKCE verifier and return_to
// into the keygate_oidc cookie — sealed with AES-256-GCM under a key derived
// from the client secret, so any node of the cluster (they all have the
// secret) can open it at the callback — and redirects to the partner.
// {path}/oidc/{name}/callback checks the state against the cookie,
// exchanges the code with the verifier, verifies the ID token (issuer,
// audience, expiry, signature, nonce), reads userinfo, maps the claims to a
// local account (found, or created when provisioning is jit) and creates
// the SSO session, as a password login does.

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/gofiber/fiber/v2"
	"golang.org/x/oauth2"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/session"
	"github.com/keygate/keygate/internal/storage/model"
)

// Federation paths, endpoint label, cookie and authentication context.
const (
	PathOIDC        = "/oidc"
	EndpointOIDC    = "oidc"
	OIDCCookie      = "keygate_oidc"
	ACRFederatedPfx = "urn:keygate:acr:federated:"
	AMRFederated    = "fed"
)

// Bounds of the federation round trip.
const (
	oidcStateLifetime = 10 * time.Minute
	oidcTimeout       = 10 * time.Second
	maxPartnerError   = 200
)

// Messages of the federation error pages.
const (
	msgFedExpired   = "Your sign-in took too long or was started in another window. Go back to the application and sign in again."
	msgFedNoAccount = "There is no account here for the user you signed in as. Contact your administrator."
	msgFedDomain    = "Your account's organisation is not allowed to sign in here."
	msgFedTaken     = "An account with your username already exists here and is not linked to this sign-in. Contact your administrator."
)

func msgFedDown(label string) string {
	return fmt.Sprintf("%s cannot be reached right now. Please try again in a moment, or sign in another way.", label)
}

func msgFedFailed(label string) string {
	return fmt.Sprintf("Signing in with %s did not complete. Go back to the application and try again.", label)
}

// oidcAuth is one oidc authenticator of a profile build.
type oidcAuth struct {
	name, label string
	issuer      string
	clientID    string
	secret      string
	scopes      []string
	claims      config.ClaimMapping
	jit         bool
	domains     []string
	redirect    string
	aead        cipher.AEAD
	client      *http.Client

	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
}

// newOIDC builds the authenticator; redirect is its callback URL.
func newOIDC(a *config.Authenticator, redirect string, client *http.Client) (*oidcAuth, error) {
	sec := a.ClientSecret.Reveal()
	if a.Issuer == "" || a.ClientID == "" || sec == "" {
		return nil, fmt.Errorf("authenticators.%s: issuer, client-id and client-secret are required", a.Name)
	}
	key := sha256.Sum256([]byte("keygate-oidc-state:" + sec))
	blk, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	o := &oidcAuth{
		name: a.Name, label: a.DisplayName, issuer: a.Issuer, clientID: a.ClientID, secret: sec,
		scopes: slices.Clone(a.Scopes), claims: a.Claims, jit: a.Provisioning == config.ProvisioningJIT,
		domains: slices.Clone(a.AllowedDomains), redirect: redirect, aead: aead, client: client,
	}
	if o.label == "" {
		o.label = a.Name
	}
	if len(o.scopes) == 0 {
		o.scopes = slices.Clone(config.DefaultOIDCScopes)
	}
	def := config.ClaimMapping{Username: "preferred_username", Name: "name", GivenName: "given_name",
		FamilyName: "family_name", Email: "email", EmailVerified: "email_verified"}
	for _, f := range []struct {
		v *string
		d string
	}{
		{&o.claims.Username, def.Username}, {&o.claims.Name, def.Name}, {&o.claims.GivenName, def.GivenName},
		{&o.claims.FamilyName, def.FamilyName}, {&o.claims.Email, def.Email}, {&o.claims.EmailVerified, def.EmailVerified},
	} {
		if *f.v == "" {
			*f.v = f.d
		}
	}
	return o, nil
}

// discover returns the partner's provider, discovering it on first use.
// A failure is not cached: the next sign-in tries again.
func (o *oidcAuth) discover(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, o.verifier, nil
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, o.client), oidcTimeout)
	defer cancel()
	p, err := oidc.NewProvider(ctx, o.issuer)
	if err != nil {
		return nil, nil, err
	}
	o.provider = p
	o.verifier = p.Verifier(&oidc.Config{ClientID: o.clientID})
	return o.provider, o.verifier, nil
}

func (o *oidcAuth) oauth2Config(p *oidc.Provider) *oauth2.Config {
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	return &oauth2.Config{ClientID: o.clientID, ClientSecret: o.secret, Endpoint: ep, RedirectURL: o.redirect, Scopes: o.scopes}
}

// oidcState is what travels, sealed, in the keygate_oidc cookie.
type oidcState struct {
	Auth     string `json:"a"`
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	ReturnTo string `json:"r"`
	Expires  int64  `json:"e"`
}

// seal encrypts st; the authenticator's name is the additional data, so a
// cookie of one authenticator is never accepted by another.
func (o *oidcAuth) seal(st oidcState) string {
	b, _ := json.Marshal(st)
	nonce := make([]byte, o.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(o.aead.Seal(nonce, nonce, b, []byte(o.name)))
}

var errBadState = errors.New("oidc state cookie missing, tampered with or expired")

func (o *oidcAuth) open(v string, now time.Time) (oidcState, error) {
	var st oidcState
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(v) > 4096 || len(raw) < o.aead.NonceSize()+o.aead.Overhead() {
		return st, errBadState
	}
	n := o.aead.NonceSize()
	b, err := o.aead.Open(nil, raw[:n], raw[n:], []byte(o.name))
	if err != nil || json.Unmarshal(b, &st) != nil || st.Auth != o.name || !now.Before(time.Unix(st.Expires, 0)) {
		return oidcState{}, errBadState
	}
	return st, nil
}

// federatedButton is one "Sign in with …" link on the login page.
type federatedButton struct {
	Name  string // the authenticator's name
	Label string // its display-name
	URL   string // {path}/oidc/{name}/start?return_to=…
}

func (p *Profile) federatedButtons(rt string) []federatedButton {
	var out []federatedButton
	for _, name := range p.oidcOrder {
		o := p.oidc[name]
		out = append(out, federatedButton{Name: name, Label: o.label,
			URL: p.path + PathOIDC + "/" + name + "/start?return_to=" + url.QueryEscape(rt)})
	}
	return out
}

func (p *Profile) oidcCookiePath(name string) string { return p.path + PathOIDC + "/" + name }

func (p *Profile) setOIDCCookie(c *fiber.Ctx, name, value string, maxAge time.Duration) {
	ck := &fiber.Cookie{Name: OIDCCookie, Value: value, Path: p.oidcCookiePath(name), Secure: true, HTTPOnly: true,
		SameSite: fiber.CookieSameSiteLaxMode}
	if maxAge > 0 {
		ck.MaxAge = int(maxAge / time.Second)
		ck.Expires = p.now().Add(maxAge)
	} else {
		ck.MaxAge, ck.Expires = -1, time.Unix(0, 0)
	}
	c.Cookie(ck)
}

func (p *Profile) oidcStart(c *fiber.Ctx) error {
	o := p.oidc[c.Params("name")]
	if o == nil {
		return fiber.ErrNotFound
	}
	rt := c.Query("return_to")
	if !p.validReturnTo(rt) {
		return p.errorPage(c, fiber.StatusBadRequest, "Cannot sign in", msgBadLink)
	}
	prov, _, err := o.discover(c.UserContext())
	if err != nil {
		p.log.Warn("oidc: partner discovery failed", "profile", p.name, "authenticator", o.name, "issuer", o.issuer, "err", err)
		return p.errorPage(c, fiber.StatusBadGateway, "Cannot sign in", msgFedDown(o.label))
	}
	st := oidcState{Auth: o.name, State: session.NewCookieValue(), Nonce: session.NewCookieValue(),
		Verifier: oauth2.GenerateVerifier(), ReturnTo: rt, Expires: p.now().Add(oidcStateLifetime).Unix()}
	p.setOIDCCookie(c, o.name, o.seal(st), oidcStateLifetime)
	loc := o.oauth2Config(prov).AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier))
	pageHeaders(c)
	c.Set(fiber.HeaderLocation, loc)
	return c.SendStatus(fiber.StatusSeeOther)
}

func (p *Profile) oidcCallback(c *fiber.Ctx) error {
	o := p.oidc[c.Params("name")]
	if o == nil {
		return fiber.ErrNotFound
	}
	if p.store == nil {
		return p.errorPage(c, fiber.StatusServiceUnavailable, "Cannot sign in", msgUnavailable)
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), oidcTimeout+timeout)
	defer cancel()
	now := p.now()
	ev := model.AuditEvent{Zone: p.zone, IP: p.clientIP(c)}
	details := map[string]any{"profile": p.name, "method": "oidc", "authenticator": o.name}
	fail := func(status int, reason, msg string, extra ...any) error {
		d := copyDetails(details)
		d["reason"] = reason
		for i := 0; i+1 < len(extra); i += 2 {
			d[extra[i].(string)] = extra[i+1]
		}
		p.audit(ctx, ev, AuditLoginFailure, now, d)
		p.log.Info("oidc: sign-in failed", "profile", p.name, "authenticator", o.name, "reason", reason)
		return p.errorPage(c, status, "Cannot sign in", msg)
	}

	st, err := o.open(c.Cookies(OIDCCookie), now)
	p.setOIDCCookie(c, o.name, "", 0) // single use, whatever happens
	if err != nil {
		return fail(fiber.StatusBadRequest, "bad state", msgFedExpired)
	}
	if e := c.Query("error"); e != "" {
		if len(e) > maxPartnerError {
			e = e[:maxPartnerError]
		}
		return fail(fiber.StatusBadRequest, "partner error", msgFedFailed(o.label), "partner_error", e)
	}
	if subtle.ConstantTimeCompare([]byte(c.Query("state")), []byte(st.State)) != 1 {
		return fail(fiber.StatusBadRequest, "state mismatch", msgFedExpired)
	}
	if !p.validReturnTo(st.ReturnTo) { // the profile's token profiles changed meanwhile
		return fail(fiber.StatusBadRequest, "return_to", msgBadLink)
	}
	code := c.Query("code")
	if code == "" || len(code) > 4096 {
		return fail(fiber.StatusBadRequest, "no code", msgFedFailed(o.label))
	}
	prov, verifier, err := o.discover(ctx)
	if err != nil {
		p.log.Warn("oidc: partner discovery failed", "profile", p.name, "authenticator", o.name, "err", err)
		return fail(fiber.StatusBadGateway, "partner unreachable", msgFedDown(o.label))
	}
	hctx := oidc.ClientContext(ctx, o.client)
	tok, err := o.oauth2Config(prov).Exchange(hctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		p.log.Warn("oidc: code exchange failed", "profile", p.name, "authenticator", o.name, "err", err)
		return fail(fiber.StatusBadGateway, "code exchange failed", msgFedFailed(o.label))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return fail(fiber.StatusBadGateway, "no id_token", msgFedFailed(o.label))
	}
	idt, err := verifier.Verify(hctx, raw)
	if err != nil {
		p.log.Warn("oidc: id token rejected", "profile", p.name, "authenticator", o.name, "err", err)
		return fail(fiber.StatusBadGateway, "invalid id_token", msgFedFailed(o.label))
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		return fail(fiber.StatusBadGateway, "nonce mismatch", msgFedFailed(o.label))
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return fail(fiber.StatusBadGateway, "invalid id_token", msgFedFailed(o.label))
	}
	if prov.UserInfoEndpoint() != "" {
		ui, err := prov.UserInfo(hctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			p.log.Warn("oidc: userinfo failed; using the ID token's claims", "profile", p.name, "authenticator", o.name, "err", err)
		} else if ui.Subject == idt.Subject { // OIDC Core 5.3.2
			var extra map[string]any
			if ui.Claims(&extra) == nil {
				for k, v := range extra {
					if _, ok := claims[k]; !ok {
						claims[k] = v
					}
				}
			}
		}
	}
	details["partner_sub"] = idt.Subject
	username := normaliseUsername(claimString(claims, o.claims.Username))
	ev.Subject = username
	if username == "" || len(username) > maxUsername {
		return fail(fiber.StatusForbidden, "no username claim", msgFedNoAccount, "claim", o.claims.Username)
	}
	local := o.mapClaims(claims)
	if len(o.domains) > 0 && !o.domainAllowed(local) {
		return fail(fiber.StatusForbidden, "domain not allowed", msgFedDomain)
	}

	user, err := p.store.Users().GetByUsername(ctx, p.zone, username)
	if errors.Is(err, model.ErrNotFound) && o.jit {
		local[federatedLinkClaim] = map[string]any{"iss": o.issuer, "sub": idt.Subject}
		user, err = p.provision(ctx, username, local, now)
		if err == nil {
			details["provisioned"] = true
		}
	}
	switch {
	case errors.Is(err, model.ErrNotFound):
		return fail(fiber.StatusForbidden, "unknown user", msgFedNoAccount)
	case err != nil:
		p.log.Error("oidc: user lookup failed", "profile", p.name, "err", err)
		return p.errorPage(c, fiber.StatusServiceUnavailable, "Cannot sign in", msgUnavailable)
	}
	if !o.mayUse(user, idt.Subject) {
		return fail(fiber.StatusForbidden, "account not linked to this partner identity", msgFedTaken, "user_id", user.ID)
	}
	if user.Status != model.UserActive {
		return fail(fiber.StatusForbidden, "account "+user.Status, msgAcctLocked, "user_id", user.ID)
	}
	cookie, s, err := session.Create(ctx, p.store, user, ACRFederatedPfx+o.name, []string{AMRFederated}, p.policy, now)
	if err != nil {
		p.log.Error("oidc: create session failed", "profile", p.name, "err", err)
		return p.errorPage(c, fiber.StatusServiceUnavailable, "Cannot sign in", msgUnavailable)
	}
	d := copyDetails(details)
	d["user_id"], d["sid"], d["amr"] = user.ID, s.ID, AMRFederated
	p.audit(ctx, ev, AuditLoginSuccess, now, d)
	session.SetCookie(c, cookie, p.policy.Absolute)
	pageHeaders(c)
	c.Set(fiber.HeaderLocation, st.ReturnTo)
	return c.SendStatus(fiber.StatusSeeOther)
}

// federatedLinkClaim records, on a user created just in time, the partner
// identity (issuer and sub) it was created for. Userinfo never releases it
// (claims are released by scope from a fixed list).
const federatedLinkClaim = "keygate_federated"

// mayUse decides whether the partner identity sub may sign in as user,
// found by its mapped username. A user linked to a partner identity admits
// only that identity; an unlinked (local) user is reachable only in
// `existing` mode, where mapping partner users onto local accounts is the
// point. So with `jit`, a partner user whose username claim is "admin"
// cannot become the local admin.
func (o *oidcAuth) mayUse(u model.User, sub string) bool {
	if link, ok := u.Claims[federatedLinkClaim].(map[string]any); ok {
		return link["iss"] == o.issuer && link["sub"] == sub
	}
	return !o.jit
}

// provision creates a user without a password (it can never sign in with
// one) from the mapped claims. A concurrent first sign-in that created it
// first wins; its record is returned.
func (p *Profile) provision(ctx context.Context, username string, claims map[string]any, now time.Time) (model.User, error) {
	u := model.User{ID: model.NewID(), Zone: p.zone, Username: username, Claims: claims,
		Status: model.UserActive, CreatedAt: now, UpdatedAt: now}
	err := p.store.Users().Create(ctx, u)
	if errors.Is(err, model.ErrConflict) {
		return p.store.Users().GetByUsername(ctx, p.zone, username)
	}
	if err != nil {
		return model.User{}, err
	}
	p.log.Info("oidc: user provisioned", "profile", p.name, "user", u.ID, "username", username)
	return u, nil
}

// mapClaims returns the local standard claims read from the partner's.
func (o *oidcAuth) mapClaims(in map[string]any) map[string]any {
	out := map[string]any{}
	for local, partner := range map[string]string{"name": o.claims.Name, "given_name": o.claims.GivenName,
		"family_name": o.claims.FamilyName, "email": o.claims.Email} {
		if s := claimString(in, partner); s != "" && len(s) <= 256 {
			out[local] = s
		}
	}
	if v, ok := in[o.claims.EmailVerified].(bool); ok && out["email"] != nil {
		out["email_verified"] = v
	}
	return out
}

// domainAllowed: only a verified email counts (README: "mapped, verified
// email"). A partner that omits email_verified (or sends it as anything but
// true) may let its users claim any address, so an absent claim fails closed.
func (o *oidcAuth) domainAllowed(local map[string]any) bool {
	email, _ := local["email"].(string)
	if v, ok := local["email_verified"].(bool); !ok || !v {
		return false
	}
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return false
	}
	return slices.Contains(o.domains, strings.ToLower(email[at+1:]))
}

// claimString reads a string claim; "sub" and other strings only.
func claimString(claims map[string]any, name string) string {
	s, _ := claims[name].(string)
	return strings.TrimSpace(s)
}

func copyDetails(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+4)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// oidcRedirect is the callback URL of authenticator a of profile p:
// redirect-uri if set, else the scheme and host of the issuer of the
// (first, by name) token profile that signs in at p.
func oidcRedirect(snap *config.Snapshot, p *config.Profile, a *config.Authenticator) (string, error) {
	if a.RedirectURI != "" {
		return a.RedirectURI, nil
	}
	var names []string
	for n, tp := range snap.Profiles {
		if tp.Type == config.ProfileToken && tp.AuthenticationProfile == p.Name && tp.Issuer != "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("authenticators.%s: set redirect-uri (no token profile with an issuer signs in at profile %s to derive it from)", a.Name, p.Name)
	}
	slices.Sort(names)
	u, err := url.Parse(snap.Profiles[names[0]].Issuer)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("authenticators.%s: cannot derive redirect-uri from issuer %q; set redirect-uri", a.Name, snap.Profiles[names[0]].Issuer)
	}
	return u.Scheme + "://" + u.Host + strings.TrimSuffix(p.Path, "/") + PathOIDC + "/" + a.Name + "/callback", nil
}
