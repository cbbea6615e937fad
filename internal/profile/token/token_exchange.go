package token

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/storage/model"
)

// Token type identifiers (RFC 8693 §3).
const (
	tokenTypeAccess = "urn:ietf:params:oauth:token-type:access_token"
	tokenTypeID     = "urn:ietf:params:oauth:token-type:id_token"
	tokenTypeJWT    = "urn:ietf:params:oauth:token-type:jwt"
)

// maxActDepth bounds a delegation chain: each exchange nests the earlier
// actors one level deeper (RFC 8693 §4.1), and a token must stay small.
const maxActDepth = 8

// actClaim is the act (actor) claim of RFC 8693 §4.1: the party acting for
// the subject, with the earlier actors of a chain nested inside.
type actClaim struct {
	Sub string    `json:"sub"`
	Act *actClaim `json:"act,omitempty"`
}

func (a *actClaim) depth() int {
	n := 0
	for ; a != nil; a = a.Act {
		n++
	}
	return n
}

// tokenExchange is OAuth 2.0 Token Exchange (RFC 8693): a client trades a
// token of this issuer for an access token for the same subject, to call
// another service. The tokens it accepts are this profile's own access
// tokens (JWT or opaque, active and unrevoked) and ID tokens; what it
// issues is bounded by the client's scopes and audiences (checked by the
// dispatcher), by the subject token's scope (down-scoping only) and by
// the subject token's expiry. The client's token-exchange policy says
// whether it may delegate (an actor_token: the new token's act claim
// names the actor) or impersonate (no actor_token).
type tokenExchange struct{ p *Profile }

var _ Grant = (*tokenExchange)(nil)

// presented is a verified subject or actor token.
type presented struct {
	subject  string
	clientID string // the client it was issued to
	jti      string // an access token's id ("" for an ID token)
	scopes   []string
	expires  time.Time
	act      *actClaim
	jkt      string // the DPoP key an access token is bound to
}

// idTokenScopes is what an ID token stands for: that the user signed in
// to the client, nothing more. Exchanging one gives no API scope the user
// never granted.
var idTokenScopes = []string{"openid"}

// exchangeResponse is RFC 8693 §2.2.1.
type exchangeResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope,omitempty"`
}

func invalidExchange(reason, desc string) *oauth.Error {
	return oauth.ErrInvalidRequest.WithDescription(desc).WithReason(reason)
}

// Handle implements RFC 8693 §2.1 and §2.2.
func (g *tokenExchange) Handle(ctx context.Context, r *grantRequest) ([]byte, *oauth.Error) {
	f, cl := r.form, r.client
	if g.p.store == nil {
		// Revocation is read from the zone's database, as introspection does.
		return nil, oauth.ErrServerError.WithCause(errNoStore)
	}
	if f.subjectToken == "" || f.subjectTokenType == "" {
		return nil, invalidExchange("subject_token_missing", "subject_token and subject_token_type are required")
	}
	switch f.requestedTokenType {
	case "", tokenTypeAccess:
	case tokenTypeJWT:
		if cl.format != config.FormatJWT {
			return nil, invalidExchange("requested_token_type_unsupported", "this client's access tokens are opaque, not JWTs")
		}
	default:
		return nil, invalidExchange("requested_token_type_unsupported", "requested_token_type must be "+tokenTypeAccess+" or "+tokenTypeJWT)
	}
	subject, e := g.verify(ctx, cl, f.subjectToken, f.subjectTokenType, "subject_token")
	if e != nil {
		return nil, e
	}
	if e := exchangeHolder(subject, r.jkt, "subject_token"); e != nil {
		return nil, e
	}
	act, actor, notAfter := subject.act, "", subject.expires
	switch {
	case f.actorToken != "":
		if f.actorTokenType == "" {
			return nil, invalidExchange("actor_token_type_missing", "actor_token_type is required with actor_token")
		}
		if !cl.exchange.Delegation {
			return nil, invalidExchange("delegation_not_allowed", "this client may not delegate: its token-exchange policy does not allow delegation")
		}
		a, e := g.verify(ctx, cl, f.actorToken, f.actorTokenType, "actor_token")
		if e != nil {
			return nil, e
		}
		if e := exchangeHolder(a, r.jkt, "actor_token"); e != nil {
			return nil, e
		}
		// The actor is the client itself: a token issued to it or naming
		// it as subject. A token merely naming it in aud would let it
		// claim that a party took part that never did.
		if a.clientID != cl.id && a.subject != cl.id {
			return nil, invalidExchange("actor_token_not_client", "the actor_token must be the client's own (issued to it, or with the client as sub)")
		}
		act, actor = &actClaim{Sub: a.subject, Act: subject.act}, a.subject
		if a.expires.Before(notAfter) {
			notAfter = a.expires
		}
		if act.depth() > maxActDepth {
			return nil, invalidExchange("delegation_chain_too_long", "the delegation chain would be longer than 8 actors")
		}
	case f.actorTokenType != "":
		return nil, invalidExchange("actor_token_missing", "actor_token_type is given without an actor_token")
	case !cl.exchange.Impersonation:
		return nil, invalidExchange("impersonation_not_allowed", "this client may not impersonate: present an actor_token (delegation)")
	}
	if act != nil && cl.format != config.FormatJWT {
		// An opaque token would drop the chain of actors.
		return nil, invalidExchange("act_needs_jwt", "the subject_token names an actor (act), which only a JWT access token can carry; this client's are opaque")
	}
	scopes, e := downScope(r, subject)
	if e != nil {
		return nil, e
	}
	now := g.p.now()
	// The new token belongs to the subject token's grant, so revoking
	// that grant (logout, refresh reuse, RFC 7009) ends it too.
	tok, err := g.p.issue.issueAccess(ctx, accessToken{subject: subject.subject, client: cl, scopes: scopes,
		audience: r.audience, act: act, notAfter: notAfter, jti: grantJTI(grantOf(subject.jti)), jkt: r.jkt})
	if err != nil {
		return nil, oauth.ErrServerError.WithCause(err)
	}
	details := map[string]any{"subject_token_type": f.subjectTokenType, "audience": strings.Join(r.audience, " ")}
	if actor != "" {
		details["actor"] = actor
	} else {
		details["impersonation"] = true
	}
	_ = g.p.trail.Record(ctx, model.AuditEvent{Type: audit.TokenExchange, Subject: subject.subject, ClientID: cl.id, Details: details})
	body, err := json.Marshal(exchangeResponse{
		AccessToken: string(tok), IssuedTokenType: tokenTypeAccess, TokenType: accessTokenType(r.jkt),
		ExpiresIn: int64(min(cl.lifetime, notAfter.Sub(now)) / time.Second), Scope: strings.Join(scopes, " "),
	})
	if err != nil {
		return nil, oauth.ErrServerError.WithCause(err)
	}
	return body, nil
}

// exchangeHolder refuses a DPoP-bound token presented without a proof of
// its key: holding a bound token is not enough to use it (RFC 9449 §1),
// and an exchange is a use.
func exchangeHolder(t presented, jkt, which string) *oauth.Error {
	if t.jkt == "" || t.jkt == jkt {
		return nil
	}
	return errInvalidDPoPProof.WithDescription("the " + which + " is bound to a DPoP key: send a DPoP proof of that key").WithReason("dpop_key_mismatch")
}

// downScope bounds the scopes by the subject token's (RFC 8693 §2.1: the
// new token must not carry more than the subject could): a requested scope
// outside it is invalid_scope; without a request, the client's scopes the
// subject token also has. None left is invalid_scope too: a token with no
// scope would be a token for nothing.
func downScope(r *grantRequest, subject presented) ([]string, *oauth.Error) {
	var out []string
	for _, s := range r.scopes {
		switch {
		case slices.Contains(subject.scopes, s):
			out = append(out, s)
		case r.form.hasScope:
			return nil, oauth.ErrInvalidScope.WithDescription("a requested scope is not in the subject token's scope").WithReason("scope_exceeds_subject")
		}
	}
	if len(out) == 0 {
		return nil, oauth.ErrInvalidScope.WithDescription("the subject token and the client have no scope in common").WithReason("scope_exceeds_subject")
	}
	return out, nil
}

// verify checks a presented token of type typ; which names the parameter
// in errors. A token that is not an active token of this issuer for this
// client is invalid_request (RFC 8693 §2.2.2).
func (g *tokenExchange) verify(ctx context.Context, cl *client, token, typ, which string) (presented, *oauth.Error) {
	// Another issuer's JWT (an access token, an ID token, or any JWT):
	// verified with that issuer's keys, if it is a trusted one.
	if iss := issuerOf(token); iss != "" && iss != g.p.issuer && typ != "" {
		ti := g.p.trusted[iss]
		switch {
		case ti == nil:
			return presented{}, invalidExchange(which+"_untrusted_issuer", "the "+which+"'s issuer is not one this client may exchange tokens of")
		case typ != tokenTypeAccess && typ != tokenTypeID && typ != tokenTypeJWT:
			return presented{}, invalidExchange("token_type_unsupported", which+"_type must be "+tokenTypeAccess+", "+tokenTypeID+" or "+tokenTypeJWT)
		}
		return g.external(ctx, cl, ti, token, which)
	}
	switch typ {
	case tokenTypeAccess:
		return g.accessToken(ctx, cl, token, which)
	case tokenTypeID:
		return g.idToken(cl, token, which)
	case tokenTypeJWT:
		// A JWT of this issuer: an access token or an ID token.
		if strings.Count(token, ".") != 2 {
			return presented{}, invalidExchange(which+"_invalid", "the "+which+" is not an active token of this issuer")
		}
		if pr, e := g.accessToken(ctx, cl, token, which); e == nil || e.Reason != which+"_invalid" {
			return pr, e
		}
		return g.idToken(cl, token, which)
	}
	return presented{}, invalidExchange("token_type_unsupported", which+"_type must be "+tokenTypeAccess+", "+tokenTypeID+" or "+tokenTypeJWT)
}

// accessToken verifies one of this profile's access tokens as
// introspection does: active, unrevoked, and issued to the client or
// naming it in aud (the client is the service the token was meant for).
// introspect-all-tokens does not count: reading a token's claims is not
// holding it.
func (g *tokenExchange) accessToken(ctx context.Context, cl *client, token, which string) (presented, *oauth.Error) {
	info, ok, err := g.p.lookup(ctx, token)
	if err != nil {
		return presented{}, oauth.ErrServerError.WithCause(err)
	}
	if !ok || !g.p.now().Before(info.expires) {
		return presented{}, invalidExchange(which+"_invalid", "the "+which+" is not an active token of this issuer")
	}
	if info.clientID != cl.id && !slices.Contains(info.audience, cl.id) {
		return presented{}, invalidExchange(which+"_not_for_client", "the "+which+" was neither issued to this client nor names it in aud")
	}
	switch revoked, err := g.p.families.revoked(ctx, info); {
	case err != nil:
		return presented{}, oauth.ErrServerError.WithCause(err)
	case revoked:
		return presented{}, invalidExchange(which+"_invalid", "the "+which+" is not an active token of this issuer")
	}
	return presented{subject: info.subject, clientID: info.clientID, jti: info.jti, scopes: strings.Fields(info.scope),
		expires: info.expires, act: info.act, jkt: info.jkt}, nil
}

// exchangedIDClaims are the ID token claims an exchange reads.
type exchangedIDClaims struct {
	Iss string   `json:"iss"`
	Sub string   `json:"sub"`
	Aud audience `json:"aud"`
	Exp int64    `json:"exp"`
}

// idToken verifies one of this profile's ID tokens: signed by a published
// key, typ JWT, this issuer, unexpired, and issued to this client (an ID
// token is for its audience alone, OpenID Connect Core 1.0 §2). It stands
// for the sign-in only (idTokenScopes) and lives until its own exp, which
// is short (id-tokens.lifetime, 5m by default): no grant revokes it.
func (g *tokenExchange) idToken(cl *client, token, which string) (presented, *oauth.Error) {
	bad := invalidExchange(which+"_invalid", "the "+which+" is not an active token of this issuer")
	msg, err := jws.Parse([]byte(token))
	if err != nil || len(msg.Signatures()) != 1 {
		return presented{}, bad
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	s := g.p.verifiers[h.KeyID()]
	if s == nil || !strings.EqualFold(h.Type(), typIDToken) || keys.CheckHeader(h, s.Alg) != nil {
		return presented{}, bad
	}
	payload, err := jws.Verify([]byte(token), jws.WithKey(s.Alg, s.Public))
	if err != nil {
		return presented{}, bad
	}
	var c exchangedIDClaims
	if err := json.Unmarshal(payload, &c); err != nil || c.Iss != g.p.issuer || c.Sub == "" {
		return presented{}, bad
	}
	exp := time.Unix(c.Exp, 0)
	if !g.p.now().Before(exp) {
		return presented{}, bad
	}
	if !slices.Contains(c.Aud, cl.id) {
		return presented{}, invalidExchange(which+"_not_for_client", "the "+which+" is an ID token issued to another client")
	}
	// No clientID: an ID token says a user signed in to the client, so it
	// never makes that user the client's actor (see Handle).
	return presented{subject: c.Sub, scopes: idTokenScopes, expires: exp}, nil
}
