package token

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/storage/model"
)

// Access tokens issued from a user's grant (a code and the refresh token
// family it starts) carry the grant in their jti: "<family>.<random>".
// Revoking the grant is then one Revocations record with the family id,
// which every access token of the family is checked against at
// introspection and userinfo, JWT or opaque, including one a refresh
// racing with the revocation issues a moment later on another node. A
// jti without a dot (client_credentials) belongs to no grant. Only this
// server writes jtis (signed JWTs, stored opaque rows), so none can be
// crafted to name another grant.

// grantJTI returns a new access token id of the grant family.
func grantJTI(family string) string {
	if family == "" {
		return model.NewID()
	}
	return family + "." + model.NewID()
}

// grantOf returns the grant an access token id belongs to, or "".
func grantOf(jti string) string {
	family, _, ok := strings.Cut(jti, ".")
	if !ok {
		return ""
	}
	return family
}

// inFlight covers an access token that a refresh which passed rotation
// before the grant was revoked signs just after: it expires at most its
// lifetime after that moment.
const inFlight = time.Minute

// families ends grant families and answers whether a token's family (or
// the token itself) is revoked. The revocation endpoint and the grants
// that detect a replay share it.
type families struct {
	store   model.Store
	clients clients // how long a revocation must outlive the tokens it covers
	trail   audit.Trail
	profile string
}

// revoke revokes a refresh token family and every access token issued
// from it (RFC 9700 §4.14.2 on reuse, RFC 7009 §2.1 on revocation), and
// records why in the audit trail.
func (f *families) revoke(ctx context.Context, family, clientID, subject, reason string, now time.Time) error {
	if err := f.store.Revocations().Revoke(ctx, family, now.Add(f.clients.accessLifetime(clientID)+inFlight)); err != nil {
		return fmt.Errorf("revoke the access tokens of refresh family: %w", err)
	}
	if err := f.store.RefreshTokens().RevokeFamily(ctx, family); err != nil {
		return fmt.Errorf("revoke refresh family: %w", err)
	}
	_ = f.trail.Record(ctx, model.AuditEvent{Time: now, Type: audit.FamilyRevoked, Subject: subject, ClientID: clientID,
		Details: map[string]any{"profile": f.profile, "family": family, "reason": reason}})
	return nil
}

// revoked reports whether an access token, or the grant it was issued
// from, is revoked. A stored (opaque) token's own revocation was read with
// it; its grant's is not.
func (f *families) revoked(ctx context.Context, info tokenInfo) (bool, error) {
	ids := make([]string, 0, 2)
	if !info.stored {
		ids = append(ids, info.jti)
	}
	if g := grantOf(info.jti); g != "" {
		ids = append(ids, g)
	}
	revoked, err := f.store.Revocations().IsRevoked(ctx, ids...)
	if err != nil {
		return false, fmt.Errorf("check revocation: %w", err)
	}
	return revoked, nil
}
