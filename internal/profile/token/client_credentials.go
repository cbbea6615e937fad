package token

import (
	"context"

	"github.com/keygate/keygate/internal/oauth"
)

// clientCredentials is the client credentials grant (RFC 6749 §4.4): the
// client is the subject; no refresh token (§4.4.3). It needs nothing but
// the issuer: the hot path of a machine client is one signature.
type clientCredentials struct{ issue *issuer }

var _ Grant = (*clientCredentials)(nil)

// Handle implements RFC 6749 §4.4.2 and §4.4.3.
func (g *clientCredentials) Handle(ctx context.Context, r *grantRequest) ([]byte, *oauth.Error) {
	tok, err := g.issue.issueAccess(ctx, accessToken{
		subject:  r.client.id,
		client:   r.client,
		scopes:   r.scopes,
		audience: r.audience,
		jkt:      r.jkt,
	})
	if err != nil {
		return nil, oauth.ErrServerError.WithCause(err)
	}
	return tokenResponse(tok, accessTokenType(r.jkt), r.client.lifetime, r.scopes), nil
}
