package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/storage/model"
)

// tokenInfo is what a presented access token stands for.
type tokenInfo struct {
	jti      string
	clientID string
	subject  string
	scope    string
	audience []string
	issuedAt time.Time
	expires  time.Time
	act      *actClaim // a JWT's act claim (RFC 8693 §4.1)
	jkt      string    // the DPoP key the token is bound to (RFC 9449 §6), "" for a bearer token
	// stored: an opaque token read from the store, whose read already
	// joined the revocation (expires is zero if revoked), so no separate
	// revocation check is needed.
	stored bool
}

// errNoStore: an endpoint needs the data source the node did not give.
var errNoStore = errors.New("no data source for this profile's zone")

// lookup resolves an access token issued by this profile, or reports
// ok=false for anything not a valid token of ours (malformed, bad
// signature, other issuer, unknown handle). Expiry and revocation are the
// caller's checks. err is a storage failure.
func (p *Profile) lookup(ctx context.Context, token string) (info tokenInfo, ok bool, err error) {
	if strings.Count(token, ".") == 2 {
		c, ok := p.verifyJWT(token)
		if !ok {
			return tokenInfo{}, false, nil
		}
		info := tokenInfo{jti: c.Jti, clientID: c.ClientID, subject: c.Sub, scope: c.Scope, audience: c.Aud,
			issuedAt: time.Unix(c.Iat, 0), expires: time.Unix(c.Exp, 0), act: c.Act}
		if c.Cnf != nil {
			if info.jkt = c.Cnf.JKT; info.jkt == "" {
				// A cnf we cannot check must not pass for no binding.
				return tokenInfo{}, false, nil
			}
		}
		return info, true, nil
	}
	if p.store == nil {
		return tokenInfo{}, false, errNoStore
	}
	t, err := p.store.AccessTokens().Get(ctx, model.HashSecret(token))
	switch {
	case errors.Is(err, model.ErrNotFound):
		return tokenInfo{}, false, nil
	case err != nil:
		return tokenInfo{}, false, fmt.Errorf("get access token: %w", err)
	case t.Profile != p.name:
		return tokenInfo{}, false, nil
	}
	info = tokenInfo{jti: t.JTI, clientID: t.ClientID, subject: t.Subject, scope: strings.Join(t.Scopes, " "),
		audience: t.Audience, issuedAt: t.IssuedAt, expires: t.ExpiresAt, stored: true, jkt: t.JKT}
	// AccessTokens().Get joins revoked_tokens on jti (both backends), the
	// same row Revocations().IsRevoked reads.
	if !t.RevokedAt.IsZero() {
		info.expires = time.Time{} // inactive
	}
	return info, true, nil
}

// verifyJWT verifies a JWT access token of this profile: a kid of one of
// its published keys, a valid signature, typ at+jwt (RFC 9068 §4) and
// iss equal to the issuer. A token already verified by this profile is
// answered from p.atCache while it is unexpired (see atCache); the claims
// returned must not be modified.
func (p *Profile) verifyJWT(token string) (*atClaims, bool) {
	key := atCacheKey(token)
	if c, ok := p.atCache.get(key, p.now()); ok {
		return c, true
	}
	c, ok := p.verifyJWTUncached(token)
	if ok {
		p.atCache.put(key, c, p.now())
	}
	return c, ok
}

func (p *Profile) verifyJWTUncached(token string) (*atClaims, bool) {
	msg, err := jws.Parse([]byte(token))
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, false
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if !strings.EqualFold(h.Type(), typAccessToken) && !strings.EqualFold(h.Type(), "application/"+typAccessToken) {
		return nil, false
	}
	s := p.verifiers[h.KeyID()]
	if s == nil || keys.CheckHeader(h, s.Alg) != nil {
		return nil, false
	}
	payload, err := jws.Verify([]byte(token), jws.WithKey(s.Alg, s.Public))
	if err != nil {
		return nil, false
	}
	var c atClaims
	if err := json.Unmarshal(payload, &c); err != nil || c.Iss != p.issuer || c.Jti == "" {
		return nil, false
	}
	return &c, true
}

// introspection is the RFC 7662 §2.2 response.
type introspection struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       int64    `json:"iat,omitempty"`
	Sub       string   `json:"sub,omitempty"`
	Aud       audience `json:"aud,omitempty"`
	Iss       string   `json:"iss,omitempty"`
	Jti       string   `json:"jti,omitempty"`
	// Act is the actor of a delegated token (RFC 8693 §2.2.1, §4.1).
	Act *actClaim `json:"act,omitempty"`
	// Cnf names the DPoP key of a bound token (RFC 9449 §6.2).
	Cnf *cnfClaim `json:"cnf,omitempty"`
}

var inactive = []byte(`{"active":false}`)

// mayIntrospect applies RFC 7662 §4: a client learns the claims of the
// tokens issued to it and of those naming it in aud (a resource server
// registered as a client); a resource server configured with
// introspect-all-tokens learns every token's. To any other client a token
// is inactive, so introspection reveals nothing of other clients' tokens.
func (cl *client) mayIntrospect(info tokenInfo) bool {
	return cl.introspectAll || info.clientID == cl.id || slices.Contains(info.audience, cl.id)
}

// tokenRequest is what introspection and revocation do first: parse the
// form, authenticate the caller (a public client only where allowPublic:
// revocation, RFC 7009 §2.1), require the token parameter and the store,
// and look the token up. ok is false for anything but an access token of
// this profile.
func (p *Profile) tokenRequest(c *fiber.Ctx, allowPublic bool) (f *form, cl *client, info tokenInfo, ok bool, e *oauth.Error) {
	if f, e = parseForm(c); e != nil {
		return nil, nil, tokenInfo{}, false, e
	}
	// f goes back with a refusal: the log line names the client it claims.
	if cl, e = p.authenticate(c.Context(), f, allowPublic); e != nil {
		return f, nil, tokenInfo{}, false, e
	}
	if !f.hasToken {
		return f, nil, tokenInfo{}, false, oauth.ErrInvalidRequest.WithDescription("token is required").WithReason("token_missing")
	}
	if p.store == nil {
		return nil, nil, tokenInfo{}, false, oauth.ErrServerError.WithCause(errNoStore)
	}
	info, ok, err := p.lookup(c.Context(), f.token)
	if err != nil {
		return nil, nil, tokenInfo{}, false, oauth.ErrServerError.WithCause(err)
	}
	return f, cl, info, ok, nil
}

// serveIntrospect is token introspection (RFC 7662 §2): the caller is an
// authenticated client of this profile; any token that is not an active
// access token of this profile, or that the caller may not introspect
// (mayIntrospect), is {"active":false}, with no reason.
func (p *Profile) serveIntrospect(c *fiber.Ctx) error {
	const ep = config.EndpointIntrospect
	f, caller, info, ok, e := p.tokenRequest(c, false)
	if e != nil {
		return p.refuse(c, ep, f, e)
	}
	if !ok {
		return p.introspectRefresh(c, caller, f.token)
	}
	ctx := c.Context()
	if !p.now().Before(info.expires) || !caller.mayIntrospect(info) {
		return sendJSON(c, inactive)
	}
	// Revocation (the token's and its grant's) is read on every call,
	// cached claims or not.
	switch revoked, err := p.families.revoked(ctx, info); {
	case err != nil:
		return p.fail(c, ep, oauth.ErrServerError.WithCause(err))
	case revoked:
		return sendJSON(c, inactive)
	}
	resp := introspection{
		Active: true, Scope: info.scope, ClientID: info.clientID, TokenType: accessTokenType(info.jkt),
		Exp: info.expires.Unix(), Iat: info.issuedAt.Unix(), Sub: info.subject, Aud: info.audience,
		Iss: p.issuer, Jti: info.jti, Act: info.act,
	}
	if info.jkt != "" {
		resp.Cnf = &cnfClaim{JKT: info.jkt}
	}
	body, err := json.Marshal(resp)
	if err != nil {
		return p.fail(c, ep, oauth.ErrServerError.WithCause(err))
	}
	return sendJSON(c, body)
}

// introspectRefresh answers for a token that is no access token: a
// refresh token (RFC 7662 §2.1) is active, with its metadata, only to the
// client that owns it while it is unspent, unrevoked and unexpired. Its
// holder is that client alone, so no resource server learns of it.
func (p *Profile) introspectRefresh(c *fiber.Ctx, caller *client, token string) error {
	const ep = config.EndpointIntrospect
	rt, err := p.store.RefreshTokens().Get(c.Context(), model.HashSecret(token))
	switch {
	case errors.Is(err, model.ErrNotFound):
		return sendJSON(c, inactive)
	case err != nil:
		return p.fail(c, ep, oauth.ErrServerError.WithCause(fmt.Errorf("get refresh token: %w", err)))
	case rt.Profile != p.name || rt.ClientID != caller.id || !rt.UsedAt.IsZero() || !rt.RevokedAt.IsZero() ||
		!p.now().Before(rt.ExpiresAt):
		return sendJSON(c, inactive)
	}
	body, err := json.Marshal(introspection{
		Active: true, Scope: strings.Join(rt.Scopes, " "), ClientID: rt.ClientID, TokenType: "refresh_token",
		Exp: rt.ExpiresAt.Unix(), Iat: rt.IssuedAt.Unix(), Sub: rt.Subject, Iss: p.issuer,
	})
	if err != nil {
		return p.fail(c, ep, oauth.ErrServerError.WithCause(err))
	}
	return sendJSON(c, body)
}

// serveRevoke is token revocation (RFC 7009 §2). A client may revoke only
// its own tokens; anything else (unknown, invalid, another client's,
// already expired) is answered 200 as well (§2.2), so the endpoint
// reveals nothing. token_type_hint is only a hint and is ignored (§2.1):
// access tokens are looked up first, then refresh tokens.
func (p *Profile) serveRevoke(c *fiber.Ctx) error {
	const ep = config.EndpointRevoke
	f, cl, info, ok, e := p.tokenRequest(c, true)
	if e != nil {
		return p.refuse(c, ep, f, e)
	}
	ctx := c.Context()
	if !ok {
		// A refresh token of the client ends its whole family (RFC 7009
		// §2.1: the server MUST support revoking refresh tokens).
		switch rt, err := p.store.RefreshTokens().Get(ctx, model.HashSecret(f.token)); {
		case err == nil && rt.ClientID == cl.id && rt.Profile == p.name:
			// RFC 7009 §2.1: with the access tokens of the same grant.
			if err := p.families.revoke(ctx, rt.FamilyID, rt.ClientID, rt.Subject, "revocation", p.now()); err != nil {
				return p.fail(c, ep, oauth.ErrServerError.WithCause(err))
			}
		case err != nil && !errors.Is(err, model.ErrNotFound):
			return p.fail(c, ep, oauth.ErrServerError.WithCause(fmt.Errorf("get refresh token: %w", err)))
		}
	}
	if ok && info.clientID == cl.id && p.now().Before(info.expires) {
		// One path for both formats: a stored opaque token with this jti
		// reads back revoked (model.Revocations).
		if err := p.store.Revocations().Revoke(ctx, info.jti, info.expires); err != nil {
			return p.fail(c, ep, oauth.ErrServerError.WithCause(fmt.Errorf("revoke: %w", err)))
		}
	}
	// RFC 7009 §2.2: 200; the body is ignored.
	c.Context().Response.SetStatusCode(200)
	oauth.NoStore(&c.Context().Response)
	return nil
}
