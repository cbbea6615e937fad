package token

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/storage/model"
)

// userGrants is what the grants of a signed-in user (authorization_code,
// refresh_token) share: the store of their codes, refresh tokens, users
// and audit log, the issuer of their tokens, and the revocation of a
// family when a code or refresh token is presented twice.
type userGrants struct {
	profile  string
	store    model.Store // nil: these grants answer server_error
	issue    *issuer
	families *families
	trail    audit.Trail
	now      func() time.Time
}

// activeUser checks that the grant's user still exists and is active.
func (u *userGrants) activeUser(ctx context.Context, id string) *oauth.Error {
	usr, err := u.store.Users().Get(ctx, id)
	switch {
	case errors.Is(err, model.ErrNotFound):
		return oauth.ErrInvalidGrant.WithDescription("the user of this grant no longer exists").WithReason("user_gone")
	case err != nil:
		return oauth.ErrServerError.WithCause(fmt.Errorf("get user: %w", err))
	case usr.Status != "" && usr.Status != model.UserActive:
		return oauth.ErrInvalidGrant.WithDescription("the user of this grant is not active").WithReason("user_inactive")
	}
	return nil
}

// lookup reads the record that a presented code or refresh token names,
// by the hash of the secret, from the records of store: bad with reason if
// there is none, server_error if the node has no store or it fails; what
// names the record in either cause.
func lookup[T any, R interface {
	Get(context.Context, model.Hash) (T, error)
}](ctx context.Context, store model.Store, records func(model.Store) R, secret string, bad *oauth.Error, reason, what string) (T, model.Hash, *oauth.Error) {
	var rec T
	if store == nil {
		return rec, model.Hash{}, oauth.ErrServerError.WithCause(errNoStore)
	}
	hash := model.HashSecret(secret)
	rec, err := records(store).Get(ctx, hash)
	switch {
	case errors.Is(err, model.ErrNotFound):
		return rec, hash, bad.WithReason(reason).WithCause(errors.New("unknown " + what))
	case err != nil:
		return rec, hash, oauth.ErrServerError.WithCause(fmt.Errorf("get %s: %w", what, err))
	}
	return rec, hash, nil
}

// audit records a security event; a failure is logged by the trail, not
// returned (the request's own outcome does not depend on it).
func (u *userGrants) audit(ctx context.Context, typ, subject, clientID string, details map[string]any) {
	details["profile"] = u.profile
	_ = u.trail.Record(ctx, model.AuditEvent{Time: u.now(), Type: typ, Subject: subject, ClientID: clientID, Details: details})
}

func subset(sub, of []string) bool {
	for _, s := range sub {
		if !slices.Contains(of, s) {
			return false
		}
	}
	return true
}
