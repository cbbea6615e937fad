package token

import (
	"context"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/oauth"
)

// Grant handles one grant_type at the token endpoint and returns the
// serialized successful response (RFC 6749 §5.1). Each grant is a file of
// its own (client_credentials.go, authorization_code.go, refresh_token.go)
// and holds only what it uses; the dispatcher (serveToken) has already
// authenticated the client, checked that it may use the grant and applied
// its scope and audience policy.
type Grant interface {
	Handle(ctx context.Context, r *grantRequest) ([]byte, *oauth.Error)
}

// grantRequest is what the dispatcher hands a grant: the parsed form, the
// authenticated client, and the scopes and audience policy allowed.
type grantRequest struct {
	form     *form
	client   *client
	scopes   []string
	audience []string
	// jkt is the thumbprint of the key of the request's valid DPoP proof
	// (RFC 9449 §4.3), "" without one: what the tokens are bound to.
	jkt string
}

// newGrants returns the grants the profile serves, by grant_type: the
// dispatcher picks from this map, so adding a grant is its file and one
// entry here.
func newGrants(p *Profile, served map[string]bool, issue *issuer, users *userGrants, rotateRefresh bool) map[string]Grant {
	grants := map[string]Grant{
		config.GrantClientCredentials: &clientCredentials{issue: issue},
		// It verifies tokens as introspection does, so it holds the profile.
		config.GrantTokenExchange: &tokenExchange{p: p},
	}
	if served[config.EndpointAuthorize] {
		// Codes and the refresh tokens they lead to exist only where the
		// authorize endpoint is served.
		grants[config.GrantAuthorizationCode] = &authorizationCode{userGrants: users}
		grants[config.GrantRefreshToken] = &refreshToken{userGrants: users, rotate: rotateRefresh}
	}
	if served[config.EndpointDeviceAuthorization] {
		grants[config.GrantDeviceCode] = &deviceCode{userGrants: users}
		// A device's refresh tokens are refreshed like a browser's.
		if grants[config.GrantRefreshToken] == nil {
			grants[config.GrantRefreshToken] = &refreshToken{userGrants: users, rotate: rotateRefresh}
		}
	}
	return grants
}
