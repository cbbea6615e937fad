package token

import (
	"context"
	"slices"
	"strings"
)

// Access is what a valid bearer access token of this profile grants, for
// the resources other profiles serve with it (SCIM).
type Access struct {
	Subject  string
	ClientID string
	Scopes   []string
}

// Authorize checks a bearer access token for a resource server that
// trusts this profile (RFC 6750, RFC 9068 §4): issued by this profile, a
// valid signature or a stored handle, unexpired, unrevoked (the token and
// its grant), and meant for the resource — its aud names the issuer or one
// of audiences. ok is false for any token that fails; err is a storage
// failure, which must not pass as a refusal.
func (p *Profile) Authorize(ctx context.Context, tok string, audiences []string) (Access, bool, error) {
	if tok == "" || p.store == nil {
		return Access{}, false, nil
	}
	info, ok, err := p.lookup(ctx, tok)
	if err != nil || !ok || !p.now().Before(info.expires) {
		return Access{}, false, err
	}
	if info.jkt != "" {
		// A DPoP-bound token is good only with a proof of its key (RFC
		// 9449 §7), which these resources do not check yet: refused, as a
		// bearer presentation of a bound token is at userinfo.
		return Access{}, false, nil
	}
	if !slices.ContainsFunc(info.audience, func(a string) bool { return a == p.issuer || slices.Contains(audiences, a) }) {
		return Access{}, false, nil
	}
	revoked, err := p.families.revoked(ctx, info)
	if err != nil || revoked {
		return Access{}, false, err
	}
	return Access{Subject: info.subject, ClientID: info.clientID, Scopes: strings.Fields(info.scope)}, true, nil
}

// Issuer is the profile's issuer URL.
func (p *Profile) Issuer() string { return p.issuer }
