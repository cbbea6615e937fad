package token

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/storage/model"
)

// authorizationCode is the authorization code grant (RFC 6749 §4.1.3)
// with PKCE (RFC 7636 §4.6).
type authorizationCode struct{ *userGrants }

var _ Grant = (*authorizationCode)(nil)

var errBadCode = oauth.ErrInvalidGrant.WithDescription("the authorization code is invalid, expired, or was issued to another client")

// Handle implements RFC 6749 §4.1.3 and §4.1.4.
func (g *authorizationCode) Handle(ctx context.Context, r *grantRequest) ([]byte, *oauth.Error) {
	f, cl := r.form, r.client
	if f.code == "" {
		return nil, oauth.ErrInvalidRequest.WithDescription("code is required").WithReason("code_missing")
	}
	if f.redirectURI == "" {
		return nil, oauth.ErrInvalidRequest.WithDescription("redirect_uri is required").WithReason("redirect_uri_missing")
	}
	now := g.now()
	code, hash, e := lookup[model.AuthCode](ctx, g.store, model.Store.AuthCodes, f.code, errBadCode, "code_unknown", "code")
	if e != nil {
		return nil, e
	}
	// Check the request against the code before consuming it: a refused
	// presentation (another client, a guessed verifier) must not use the
	// code up for its client, nor pass for reuse. Refusals are counted so
	// the code cannot serve as an oracle for long (MaxCodeFailures).
	if e := checkExchange(code, g.profile, cl.id, f, r.jkt); e != nil {
		if code.UsedAt.IsZero() {
			if err := g.store.AuthCodes().Fail(ctx, hash); err != nil {
				return nil, oauth.ErrServerError.WithCause(err)
			}
		}
		return nil, e
	}
	code, err := g.store.AuthCodes().Consume(ctx, hash)
	switch {
	case errors.Is(err, model.ErrReplay):
		// RFC 6749 §4.1.2: a code presented twice, each time rightly, is
		// denied and what its first exchange issued is revoked.
		if e := g.revokeCodeGrant(ctx, code, now); e != nil {
			return nil, oauth.ErrServerError.WithCause(e)
		}
		g.audit(ctx, audit.CodeReuse, code.Subject, cl.id, map[string]any{"code_client": code.ClientID})
		return nil, errBadCode.WithReason("code_reused").WithCause(errors.New("code replayed; its tokens were revoked"))
	case errors.Is(err, model.ErrRevoked):
		return nil, errBadCode.WithReason("code_ended").WithCause(fmt.Errorf("code ended after %d refused exchanges", code.FailedAttempts))
	case errors.Is(err, model.ErrNotFound):
		return nil, errBadCode.WithReason("code_unknown").WithCause(errors.New("unknown code"))
	case err != nil:
		return nil, oauth.ErrServerError.WithCause(fmt.Errorf("consume code: %w", err))
	}
	if !now.Before(code.ExpiresAt) {
		return nil, errBadCode.WithReason("code_expired").WithCause(errors.New("code expired"))
	}
	if f.hasScope && !subset(r.scopes, code.Scopes) {
		return nil, oauth.ErrInvalidScope.WithDescription("scope must not exceed the authorized scope").WithReason("scope_exceeds_grant")
	}
	if e := g.activeUser(ctx, code.Subject); e != nil {
		return nil, e
	}
	body, e := g.issue.issueUser(ctx, userTokens{
		client: cl, subject: code.Subject, scopes: code.Scopes, audience: code.Audience,
		sid: code.SessionID, nonce: code.Nonce, authTime: code.AuthTime, acr: code.ACR, amr: code.AMR,
		jti: code.AccessTokenJTI, family: code.RefreshFamilyID, jkt: r.jkt,
	})
	if e != nil {
		return nil, e
	}
	if e := g.sessionStillOpen(ctx, code.SessionID, code.RefreshFamilyID); e != nil {
		return nil, e
	}
	return body, nil
}

// checkExchange checks an exchange request against its code: the
// profile, the client, the redirect URI, the DPoP key the authorization
// request named (dpop_jkt, RFC 9449 §10; jkt is the proof's) and the PKCE
// verifier.
func checkExchange(code model.AuthCode, profile, clientID string, f *form, jkt string) *oauth.Error {
	switch {
	case code.Profile != profile:
		return errBadCode.WithReason("code_other_profile").WithCause(fmt.Errorf("code of profile %s", code.Profile))
	case code.ClientID != clientID:
		return errBadCode.WithReason("code_other_client").WithCause(fmt.Errorf("code of client %s presented by %s", code.ClientID, clientID))
	case code.RedirectURI != f.redirectURI:
		// RFC 6749 §4.1.3: identical to the authorization request's.
		return errBadCode.WithReason("redirect_uri_mismatch").WithCause(errors.New("redirect_uri differs"))
	case code.DPoPJKT != "" && jkt == "":
		return errInvalidDPoPProof.WithDescription("this code was requested with dpop_jkt: send a DPoP proof of that key").WithReason("dpop_required")
	case code.DPoPJKT != "" && subtle.ConstantTimeCompare([]byte(code.DPoPJKT), []byte(jkt)) != 1:
		return errInvalidDPoPProof.WithDescription("the DPoP proof's key is not the dpop_jkt of the authorization request").WithReason("dpop_key_mismatch")
	}
	return checkPKCE(code.CodeChallenge, code.CodeChallengeMethod, f.codeVerifier)
}

var errSessionEnded = oauth.ErrInvalidGrant.WithDescription("the sign-in session of this grant has ended").WithReason("session_ended")

// sessionStillOpen refuses a grant (a code, an approved device) whose SSO
// session sid was ended (logout) after the grant was made, and revokes
// the refresh token family its exchange has just stored. Checked after
// that token is stored: logout revokes the session's families, deletes
// the session, then revokes again, so a family stored before the deletion
// is caught by logout and one stored after it is caught here.
func (u *userGrants) sessionStillOpen(ctx context.Context, sid, family string) *oauth.Error {
	if sid == "" {
		return nil
	}
	open, err := u.store.Sessions().Exists(ctx, sid)
	if err == nil && open {
		return nil
	}
	if family != "" {
		if rerr := u.store.RefreshTokens().RevokeFamily(ctx, family); rerr != nil {
			err = errors.Join(err, fmt.Errorf("revoke refresh tokens of a grant whose session ended: %w", rerr))
		}
	}
	if err != nil {
		return oauth.ErrServerError.WithCause(fmt.Errorf("check the grant's session: %w", err))
	}
	return errSessionEnded
}

// revokeCodeGrant revokes what the first exchange of a replayed code
// issued: its access token (by its pre-assigned jti) and its grant, the
// refresh token family with every access token issued from it.
func (g *authorizationCode) revokeCodeGrant(ctx context.Context, code model.AuthCode, now time.Time) error {
	if code.AccessTokenJTI != "" {
		if err := g.store.Revocations().Revoke(ctx, code.AccessTokenJTI, now.Add(g.families.clients.accessLifetime(code.ClientID))); err != nil {
			return fmt.Errorf("revoke access token of replayed code: %w", err)
		}
	}
	if code.RefreshFamilyID != "" {
		if err := g.families.revoke(ctx, code.RefreshFamilyID, code.ClientID, code.Subject, audit.CodeReuse, now); err != nil {
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
			return oauth.ErrInvalidGrant.WithDescription("code_verifier was not expected").WithReason("pkce_unexpected")
		}
		return nil
	}
	if verifier == "" {
		return oauth.ErrInvalidGrant.WithDescription("code_verifier is required").WithReason("pkce_missing")
	}
	if method != "S256" || !validVerifier(verifier) {
		return oauth.ErrInvalidGrant.WithDescription("code_verifier is invalid").WithReason("pkce_malformed")
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) != 1 {
		return oauth.ErrInvalidGrant.WithDescription("code_verifier does not match the code_challenge").WithReason("pkce_mismatch")
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
