package token

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/storage/model"
)

// newSecret returns a random 256-bit bearer secret (code, refresh token),
// base64url without padding.
func newSecret() string {
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// Audit event types written by the code flow.
const (
	auditCodeReuse    = "code_reuse"
	auditRefreshReuse = "refresh_token_reuse"
)

// authorizationCode is the authorization code grant (RFC 6749 §4.1.3)
// with PKCE (RFC 7636 §4.6).
type authorizationCode struct{ p *Profile }

var _ Grant = (*authorizationCode)(nil)

var errBadCode = oauth.ErrInvalidGrant.WithDescription("the authorization code is invalid, expired, or was issued to another client")

// Handle implements RFC 6749 §4.1.3 and §4.1.4.
func (g *authorizationCode) Handle(ctx context.Context, r *grantRequest) ([]byte, *oauth.Error) {
	p, f, cl := g.p, r.form, r.client
	if f.code == "" {
		return nil, oauth.ErrInvalidRequest.WithDescription("code is required")
	}
	if f.redirectURI == "" {
		return nil, oauth.ErrInvalidRequest.WithDescription("redirect_uri is required")
	}
	if p.store == nil {
		return nil, oauth.ErrServerError.WithCause(errNoStore)
	}
	now := p.now()
	hash := model.HashSecret(f.code)
	code, err := p.store.AuthCodes().Get(ctx, hash)
	switch {
	case errors.Is(err, model.ErrNotFound):
		return nil, errBadCode.WithCause(errors.New("unknown code"))
	case err != nil:
		return nil, oauth.ErrServerError.WithCause(fmt.Errorf("get code: %w", err))
	}
	// Check the request against the code before consuming it: a refused
	// presentation (another client, a guessed verifier) must not use the
	// code up for its client, nor pass for reuse. Refusals are counted so
	// the code cannot serve as an oracle for long (MaxCodeFailures).
	if e := checkExchange(code, p.name, cl.id, f); e != nil {
		if code.UsedAt.IsZero() {
			if err := p.store.AuthCodes().Fail(ctx, hash); err != nil {
				return nil, oauth.ErrServerError.WithCause(err)
			}
		}
		return nil, e
	}
	code, err = p.store.AuthCodes().Consume(ctx, hash)
	switch {
	case errors.Is(err, model.ErrReplay):
		// RFC 6749 §4.1.2: a code presented twice, each time rightly, is
		// denied and what its first exchange issued is revoked.
		if e := p.revokeCodeGrant(ctx, code, now); e != nil {
			return nil, oauth.ErrServerError.WithCause(e)
		}
		p.audit(ctx, auditCodeReuse, code.Subject, cl.id, map[string]any{"code_client": code.ClientID})
		return nil, errBadCode.WithCause(errors.New("code replayed; its tokens were revoked"))
	case errors.Is(err, model.ErrRevoked):
		return nil, errBadCode.WithCause(fmt.Errorf("code ended after %d refused exchanges", code.FailedAttempts))
	case errors.Is(err, model.ErrNotFound):
		return nil, errBadCode.WithCause(errors.New("unknown code"))
	case err != nil:
		return nil, oauth.ErrServerError.WithCause(fmt.Errorf("consume code: %w", err))
	}
	if !now.Before(code.ExpiresAt) {
		return nil, errBadCode.WithCause(errors.New("code expired"))
	}
	if f.hasScope && !subset(r.scopes, code.Scopes) {
		return nil, oauth.ErrInvalidScope.WithDescription("scope must not exceed the authorized scope")
	}
	if e := p.activeUser(ctx, code.Subject); e != nil {
		return nil, e
	}
	body, e := p.issueUserTokens(ctx, userGrant{
		client: cl, subject: code.Subject, scopes: code.Scopes, audience: code.Audience,
		sid: code.SessionID, nonce: code.Nonce, authTime: code.AuthTime, acr: code.ACR, amr: code.AMR,
		jti: code.AccessTokenJTI, family: code.RefreshFamilyID,
	})
	if e != nil {
		return nil, e
	}
	if e := p.sessionStillOpen(ctx, code); e != nil {
		return nil, e
	}
	return body, nil
}

// checkExchange checks an exchange request against its code: the
// profile, the client, the redirect URI and the PKCE verifier.
func checkExchange(code model.AuthCode, profile, clientID string, f *form) *oauth.Error {
	switch {
	case code.Profile != profile:
		return errBadCode.WithCause(fmt.Errorf("code of profile %s", code.Profile))
	case code.ClientID != clientID:
		return errBadCode.WithCause(fmt.Errorf("code of client %s presented by %s", code.ClientID, clientID))
	case code.RedirectURI != f.redirectURI:
		// RFC 6749 §4.1.3: identical to the authorization request's.
		return errBadCode.WithCause(errors.New("redirect_uri differs"))
	}
	return checkPKCE(code.CodeChallenge, code.CodeChallengeMethod, f.codeVerifier)
}

var errSessionEnded = oauth.ErrInvalidGrant.WithDescription("the sign-in session of this authorization code has ended")

// sessionStillOpen refuses a code whose SSO session was ended (logout)
// after the code was issued, and revokes the refresh token family its
// exchange has just stored. Checked after that token is stored: logout
// revokes the session's families, deletes the session, then revokes
// again, so a family stored before the deletion is caught by logout and
// one stored after it is caught here.
func (p *Profile) sessionStillOpen(ctx context.Context, code model.AuthCode) *oauth.Error {
	if code.SessionID == "" {
		return nil
	}
	open, err := p.store.Sessions().Exists(ctx, code.SessionID)
	if err == nil && open {
		return nil
	}
	if code.RefreshFamilyID != "" {
		if rerr := p.store.RefreshTokens().RevokeFamily(ctx, code.RefreshFamilyID); rerr != nil {
			err = errors.Join(err, fmt.Errorf("revoke refresh tokens of a code whose session ended: %w", rerr))
		}
	}
	if err != nil {
		return oauth.ErrServerError.WithCause(fmt.Errorf("check the code's session: %w", err))
	}
	return errSessionEnded
}

// revokeCodeGrant revokes what the first exchange of a replayed code
// issued: its access token (by its pre-assigned jti) and its grant, the
// refresh token family with every access token issued from it.
func (p *Profile) revokeCodeGrant(ctx context.Context, code model.AuthCode, now time.Time) error {
	if code.AccessTokenJTI != "" {
		if err := p.store.Revocations().Revoke(ctx, code.AccessTokenJTI, now.Add(p.accessLifetime(code.ClientID))); err != nil {
			return fmt.Errorf("revoke access token of replayed code: %w", err)
		}
	}
	if code.RefreshFamilyID != "" {
		if err := p.revokeGrant(ctx, code.RefreshFamilyID, code.ClientID, now); err != nil {
			return fmt.Errorf("replayed code: %w", err)
		}
	}
	return nil
}

// checkPKCE verifies code_verifier against the stored challenge
// (RFC 7636 §4.6), comparing in constant time. Only S256 is ever stored.
func checkPKCE(challenge, method, verifier string) *oauth.Error {
	if challenge == "" {
		if verifier != "" {
			// RFC 9700 §2.1.1: a verifier for a code issued without a
			// challenge is a downgrade attempt.
			return oauth.ErrInvalidGrant.WithDescription("code_verifier was not expected")
		}
		return nil
	}
	if verifier == "" {
		return oauth.ErrInvalidGrant.WithDescription("code_verifier is required")
	}
	if method != "S256" || !validVerifier(verifier) {
		return oauth.ErrInvalidGrant.WithDescription("code_verifier is invalid")
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) != 1 {
		return oauth.ErrInvalidGrant.WithDescription("code_verifier does not match the code_challenge")
	}
	return nil
}

// validVerifier: 43 to 128 unreserved characters (RFC 7636 §4.1).
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

func subset(sub, of []string) bool {
	for _, s := range sub {
		if !slices.Contains(of, s) {
			return false
		}
	}
	return true
}

// activeUser checks that the grant's user still exists and is active.
func (p *Profile) activeUser(ctx context.Context, id string) *oauth.Error {
	u, err := p.store.Users().Get(ctx, id)
	switch {
	case errors.Is(err, model.ErrNotFound):
		return oauth.ErrInvalidGrant.WithDescription("the user of this grant no longer exists")
	case err != nil:
		return oauth.ErrServerError.WithCause(fmt.Errorf("get user: %w", err))
	case u.Status != "" && u.Status != model.UserActive:
		return oauth.ErrInvalidGrant.WithDescription("the user of this grant is not active")
	}
	return nil
}

// audit appends a security event; a failure is logged, not returned (the
// request's own outcome does not depend on it).
func (p *Profile) audit(ctx context.Context, typ, subject, clientID string, details map[string]any) {
	err := p.store.Audit().Append(ctx, model.AuditEvent{Time: p.now(), Type: typ, Subject: subject, ClientID: clientID, Details: details})
	if err != nil {
		p.log.Error("audit append failed", "profile", p.name, "type", typ, "error", err.Error())
	}
	p.log.Warn("token reuse detected", "profile", p.name, "type", typ, "client", clientID)
}

// userGrant is what a user's grant (code or refresh token) authorizes.
type userGrant struct {
	client   *client
	subject  string
	scopes   []string
	audience []string
	sid      string
	nonce    string // only from a code (OpenID Connect Core 1.0 §12.2)
	authTime time.Time
	acr      string
	amr      []string
	jti      string // pre-assigned access token id, or ""
	family   string // refresh token family; "" = no new refresh token
	// refresh is the rotated refresh token to return ("" = none).
	refresh string
}

// userTokenResponse is RFC 6749 §5.1 plus the id_token of OpenID Connect
// Core 1.0 §3.1.3.3.
type userTokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
}

// issueUserTokens issues the access token, the ID token (scope openid) and,
// for the code grant of a client allowed refresh_token, the first refresh
// token of the family.
func (p *Profile) issueUserTokens(ctx context.Context, g userGrant) ([]byte, *oauth.Error) {
	at, err := p.issueAccessToken(ctx, accessToken{subject: g.subject, client: g.client, scopes: g.scopes, audience: g.audience, jti: g.jti})
	if err != nil {
		return nil, oauth.ErrServerError.WithCause(err)
	}
	resp := userTokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(g.client.lifetime / time.Second),
		Scope: strings.Join(g.scopes, " "), RefreshToken: g.refresh}
	if slices.Contains(g.scopes, "openid") {
		if resp.IDToken, err = p.issueIDToken(g, at); err != nil {
			return nil, oauth.ErrServerError.WithCause(err)
		}
	}
	if g.family != "" && g.client.grants[config.GrantRefreshToken] {
		now := p.now()
		rt := newSecret()
		err := p.store.RefreshTokens().Create(ctx, model.RefreshToken{
			Hash: model.HashSecret(rt), FamilyID: g.family, ClientID: g.client.id, Subject: g.subject,
			Scopes: g.scopes, Audience: g.audience, SessionID: g.sid, AuthTime: g.authTime, ACR: g.acr, AMR: g.amr,
			Profile: p.name, IssuedAt: now, ExpiresAt: now.Add(p.refreshLifetime),
		})
		if err != nil {
			return nil, oauth.ErrServerError.WithCause(fmt.Errorf("store refresh token: %w", err))
		}
		resp.RefreshToken = rt
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return nil, oauth.ErrServerError.WithCause(err)
	}
	return b, nil
}

// idClaims are the ID token claims (OpenID Connect Core 1.0 §2, §3.1.3.6).
type idClaims struct {
	Iss      string   `json:"iss"`
	Sub      string   `json:"sub"`
	Aud      string   `json:"aud"`
	Exp      int64    `json:"exp"`
	Iat      int64    `json:"iat"`
	AuthTime int64    `json:"auth_time,omitempty"`
	Nonce    string   `json:"nonce,omitempty"`
	ACR      string   `json:"acr,omitempty"`
	AMR      []string `json:"amr,omitempty"`
	SID      string   `json:"sid,omitempty"`
	AtHash   string   `json:"at_hash,omitempty"`
	AZP      string   `json:"azp,omitempty"`
}

// typIDToken is the ID token's typ header.
const typIDToken = "JWT"

func (p *Profile) issueIDToken(g userGrant, accessToken string) (string, error) {
	now := p.now()
	c := idClaims{
		Iss: p.issuer, Sub: g.subject, Aud: g.client.id, Exp: now.Add(p.idTokenLifetime).Unix(), Iat: now.Unix(),
		Nonce: g.nonce, ACR: g.acr, AMR: g.amr, SID: g.sid, AtHash: atHash(p.signer.Alg, accessToken),
	}
	if !g.authTime.IsZero() {
		c.AuthTime = g.authTime.Unix()
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("marshal id token: %w", err)
	}
	tok, err := p.signer.Sign(payload, typIDToken)
	if err != nil {
		return "", fmt.Errorf("sign id token: %w", err)
	}
	return string(tok), nil
}

// atHash is the left half of the hash of the access token's ASCII octets,
// base64url (OpenID Connect Core 1.0 §3.1.3.6), with the hash of the
// signing alg: SHA-256 for ES256 and RS256, SHA-512 for EdDSA (Ed25519
// hashes with SHA-512; go-oidc and other verifiers expect it).
func atHash(alg jwa.SignatureAlgorithm, token string) string {
	var h hash.Hash
	switch alg {
	case jwa.EdDSA:
		h = sha512.New()
	default:
		h = sha256.New()
	}
	h.Write([]byte(token))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// refreshToken is the refresh token grant (RFC 6749 §6) with rotation and
// reuse detection (RFC 9700 §4.14.2).
type refreshToken struct{ p *Profile }

var _ Grant = (*refreshToken)(nil)

var errBadRefresh = oauth.ErrInvalidGrant.WithDescription("the refresh token is invalid, expired or revoked")

// Handle implements RFC 6749 §6.
func (g *refreshToken) Handle(ctx context.Context, r *grantRequest) ([]byte, *oauth.Error) {
	p, f, cl := g.p, r.form, r.client
	if f.refreshToken == "" {
		return nil, oauth.ErrInvalidRequest.WithDescription("refresh_token is required")
	}
	if p.store == nil {
		return nil, oauth.ErrServerError.WithCause(errNoStore)
	}
	now := p.now()
	hash := model.HashSecret(f.refreshToken)
	old, err := p.store.RefreshTokens().Get(ctx, hash)
	switch {
	case errors.Is(err, model.ErrNotFound):
		return nil, errBadRefresh.WithCause(errors.New("unknown refresh token"))
	case err != nil:
		return nil, oauth.ErrServerError.WithCause(fmt.Errorf("get refresh token: %w", err))
	case old.Profile != p.name || old.ClientID != cl.id:
		return nil, errBadRefresh.WithCause(fmt.Errorf("refresh token of client %s presented by %s", old.ClientID, cl.id))
	case !old.RevokedAt.IsZero():
		return nil, errBadRefresh.WithCause(errors.New("family revoked"))
	case !old.UsedAt.IsZero():
		return nil, p.refreshReuse(ctx, old)
	case !now.Before(old.ExpiresAt):
		return nil, errBadRefresh.WithCause(errors.New("refresh token expired"))
	}
	// RFC 6749 §6: a narrower scope may be asked for, never a wider one.
	scopes := old.Scopes
	if f.hasScope && strings.TrimSpace(f.scope) != "" {
		if !subset(r.scopes, old.Scopes) {
			return nil, oauth.ErrInvalidScope.WithDescription("scope must not exceed the scope originally granted")
		}
		scopes = r.scopes
	}
	if e := p.activeUser(ctx, old.Subject); e != nil {
		return nil, e
	}
	ug := userGrant{client: cl, subject: old.Subject, scopes: scopes, audience: old.Audience,
		sid: old.SessionID, authTime: old.AuthTime, acr: old.ACR, amr: old.AMR, jti: grantJTI(old.FamilyID)}
	if p.rotateRefresh {
		// The new token keeps the grant's original scope (RFC 6749 §6).
		next := old
		ug.refresh = newSecret()
		next.Hash, next.IssuedAt, next.UsedAt, next.RevokedAt = model.HashSecret(ug.refresh), now, time.Time{}, time.Time{}
		// Each rotated token lives the profile's refresh lifetime from its
		// own issue: an idle lifetime for the family.
		next.ExpiresAt = now.Add(p.refreshLifetime)
		switch err := p.store.RefreshTokens().Rotate(ctx, hash, next); {
		case errors.Is(err, model.ErrReplay):
			return nil, p.refreshReuse(ctx, old)
		case errors.Is(err, model.ErrRevoked), errors.Is(err, model.ErrNotFound):
			return nil, errBadRefresh.WithCause(err)
		case err != nil:
			return nil, oauth.ErrServerError.WithCause(fmt.Errorf("rotate refresh token: %w", err))
		}
	}
	return p.issueUserTokens(ctx, ug)
}

// refreshReuse handles a refresh token presented after it was rotated:
// the whole family is revoked (RFC 9700 §4.14.2), the newest token too,
// with every access token issued from it.
func (p *Profile) refreshReuse(ctx context.Context, old model.RefreshToken) *oauth.Error {
	if err := p.revokeGrant(ctx, old.FamilyID, old.ClientID, p.now()); err != nil {
		return oauth.ErrServerError.WithCause(err)
	}
	p.audit(ctx, auditRefreshReuse, old.Subject, old.ClientID, map[string]any{"family": old.FamilyID})
	return errBadRefresh.WithCause(errors.New("refresh token reused; family revoked"))
}
