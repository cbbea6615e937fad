package token

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/storage/model"
)

// refreshToken is the refresh token grant (RFC 6749 §6) with rotation and
// reuse detection (RFC 9700 §4.14.2).
type refreshToken struct {
	*userGrants
	rotate bool // a new refresh token at every use (refresh-tokens.rotate)
}

var _ Grant = (*refreshToken)(nil)

var errBadRefresh = oauth.ErrInvalidGrant.WithDescription("the refresh token is invalid, expired or revoked")

// Handle implements RFC 6749 §6.
func (g *refreshToken) Handle(ctx context.Context, r *grantRequest) ([]byte, *oauth.Error) {
	f, cl := r.form, r.client
	if f.refreshToken == "" {
		return nil, oauth.ErrInvalidRequest.WithDescription("refresh_token is required").WithReason("refresh_token_missing")
	}
	now := g.now()
	old, hash, e := lookup[model.RefreshToken](ctx, g.store, model.Store.RefreshTokens, f.refreshToken, errBadRefresh, "refresh_unknown", "refresh token")
	if e != nil {
		return nil, e
	}
	switch {
	case old.Profile != g.profile || old.ClientID != cl.id:
		return nil, errBadRefresh.WithReason("refresh_other_client").WithCause(fmt.Errorf("refresh token of client %s presented by %s", old.ClientID, cl.id))
	case !old.RevokedAt.IsZero():
		return nil, errBadRefresh.WithReason("refresh_revoked").WithCause(errors.New("family revoked"))
	case !old.UsedAt.IsZero():
		return nil, g.reuse(ctx, old)
	case !now.Before(old.ExpiresAt):
		return nil, errBadRefresh.WithReason("refresh_expired").WithCause(errors.New("refresh token expired"))
	// RFC 9449 §5: a bound refresh token is used only with a proof of
	// its key; a refused one is not spent.
	case old.JKT != "" && r.jkt == "":
		return nil, errInvalidDPoPProof.WithDescription("this refresh token is bound to a DPoP key: send a DPoP proof of that key").WithReason("dpop_required")
	case old.JKT != "" && subtle.ConstantTimeCompare([]byte(old.JKT), []byte(r.jkt)) != 1:
		return nil, errInvalidDPoPProof.WithDescription("the DPoP proof's key is not the one this refresh token is bound to").WithReason("dpop_key_mismatch")
	}
	// RFC 6749 §6: a narrower scope may be asked for, never a wider one.
	scopes := old.Scopes
	if f.hasScope && strings.TrimSpace(f.scope) != "" {
		if !subset(r.scopes, old.Scopes) {
			return nil, oauth.ErrInvalidScope.WithDescription("scope must not exceed the scope originally granted").WithReason("scope_exceeds_grant")
		}
		scopes = r.scopes
	}
	if e := g.activeUser(ctx, old.Subject); e != nil {
		return nil, e
	}
	ut := userTokens{client: cl, subject: old.Subject, scopes: scopes, audience: old.Audience,
		sid: old.SessionID, authTime: old.AuthTime, acr: old.ACR, amr: old.AMR, jti: grantJTI(old.FamilyID), jkt: r.jkt}
	if g.rotate {
		// The new token keeps the grant's original scope (RFC 6749 §6).
		next := old
		ut.refresh = newSecret()
		next.Hash, next.IssuedAt, next.UsedAt, next.RevokedAt = model.HashSecret(ut.refresh), now, time.Time{}, time.Time{}
		// Each rotated token lives the profile's refresh lifetime from its
		// own issue: an idle lifetime for the family.
		next.ExpiresAt = now.Add(g.issue.refreshLifetime)
		switch err := g.store.RefreshTokens().Rotate(ctx, hash, next); {
		case errors.Is(err, model.ErrReplay):
			return nil, g.reuse(ctx, old)
		case errors.Is(err, model.ErrRevoked), errors.Is(err, model.ErrNotFound):
			return nil, errBadRefresh.WithReason("refresh_revoked").WithCause(err)
		case err != nil:
			return nil, oauth.ErrServerError.WithCause(fmt.Errorf("rotate refresh token: %w", err))
		}
	}
	return g.issue.issueUser(ctx, ut)
}

// reuse handles a refresh token presented after it was rotated: the
// whole family is revoked (RFC 9700 §4.14.2), the newest token too, with
// every access token issued from it.
func (g *refreshToken) reuse(ctx context.Context, old model.RefreshToken) *oauth.Error {
	if err := g.families.revoke(ctx, old.FamilyID, old.ClientID, old.Subject, audit.RefreshReuse, g.now()); err != nil {
		return oauth.ErrServerError.WithCause(err)
	}
	g.audit(ctx, audit.RefreshReuse, old.Subject, old.ClientID, map[string]any{"family": old.FamilyID})
	return errBadRefresh.WithReason("refresh_reused").WithCause(errors.New("refresh token reused; family revoked"))
}
