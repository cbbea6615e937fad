package token

import (
	"strings"
	"time"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/oauth"
)

// client is a config client with its policy resolved for this profile.
type client struct {
	id        string
	grants    map[string]bool
	scopes    []string // default scope: all of them
	scopeSet  map[string]bool
	audiences []string
	format    string        // access token format
	lifetime  time.Duration // access token lifetime

	redirectURIs           []string // exact-match set (RFC 9700 §4.1.3)
	postLogoutRedirectURIs []string
	public                 bool                       // token-endpoint-auth-method none
	consent                bool                       // ask the user at every authorization
	introspectAll          bool                       // may learn the claims of every token at introspection
	loopbackAnyPort        bool                       // a loopback IP redirect URI matches on any port (RFC 8252 §7.3)
	requirePAR             bool                       // its authorization requests must be pushed (RFC 9126 §6)
	exchange               config.TokenExchangePolicy // what the token-exchange grant may do
	dpop                   string                     // config.DPoPAllowed, DPoPRequired or DPoPOff

	cfg    *config.Client           // the entry it was built from, for reuse
	policy config.AccessTokenPolicy // the profile policy it was built with
	secure string                   // the profile's security-profile it was built with
}

// clients are the profile's clients by client_id. The map is filled in New
// and never changes afterwards, so the grants share it without locking.
type clients map[string]*client

// accessLifetime is the client's access token lifetime, or an upper
// bound when the client is gone from config.
func (cs clients) accessLifetime(clientID string) time.Duration {
	if cl := cs[clientID]; cl != nil {
		return cl.lifetime
	}
	return time.Hour
}

// anyGrant reports whether a client may use grant.
func (cs clients) anyGrant(grant string) bool {
	for _, cl := range cs {
		if cl.grants[grant] {
			return true
		}
	}
	return false
}

// reuseOrNewClient returns the previous build's client when its config
// entry is the same object and the profile's access-token policy (which
// fills the client's gaps) is unchanged; clients are immutable once built.
func reuseOrNewClient(prev *Profile, c *config.Client, p *config.Profile) *client {
	if prev != nil {
		if cl, ok := prev.clients[c.Name]; ok && cl.cfg == c && cl.policy == p.AccessTokens && cl.secure == p.SecurityProfile {
			return cl
		}
	}
	return newClient(c, p)
}

func newClient(c *config.Client, p *config.Profile) *client {
	cl := &client{
		cfg:       c,
		policy:    p.AccessTokens,
		id:        c.Name,
		grants:    make(map[string]bool, len(c.GrantTypes)),
		scopes:    c.Scopes,
		scopeSet:  make(map[string]bool, len(c.Scopes)),
		audiences: c.Audiences,
		format:    c.AccessTokens.Format,
		lifetime:  c.AccessTokens.Lifetime.D(),

		redirectURIs:           c.RedirectURIs,
		postLogoutRedirectURIs: c.PostLogoutRedirectURIs,
		consent:                c.Consent,
		introspectAll:          c.IntrospectAllTokens,
		loopbackAnyPort:        c.LoopbackRedirectAnyPort,
		requirePAR:             c.RequirePushedAuthorizationRequests,
		public:                 c.TokenEndpointAuthMethod == config.AuthNone || (c.TokenEndpointAuthMethod == "" && c.Secret.IsZero() && len(c.PublicKeys) == 0),
	}
	for _, g := range c.GrantTypes {
		cl.grants[g] = true
	}
	cl.dpop = c.DPoP
	if cl.dpop == "" {
		cl.dpop = config.DPoPAllowed
	}
	if cl.secure = p.SecurityProfile; cl.secure == config.SecurityProfileFAPI2 {
		// FAPI 2.0: every token sender-constrained, every request pushed.
		cl.dpop, cl.requirePAR = config.DPoPRequired, true
	}
	if c.TokenExchange != nil {
		cl.exchange = *c.TokenExchange
	}
	for _, s := range c.Scopes {
		cl.scopeSet[s] = true
	}
	// The client's policy overrides the profile's field by field.
	if cl.format == "" {
		cl.format = p.AccessTokens.Format
	}
	if cl.format == "" {
		cl.format = config.FormatJWT
	}
	if cl.lifetime <= 0 {
		cl.lifetime = p.AccessTokens.Lifetime.D()
	}
	if cl.lifetime <= 0 {
		cl.lifetime = config.DefaultAccessTokenLifetime
	}
	return cl
}

// scopePolicy applies RFC 6749 §3.3: no scope means the client's default
// (all its scopes); each requested scope must be one of the client's.
func (cl *client) scopePolicy(f *form) ([]string, *oauth.Error) {
	if !f.hasScope || strings.TrimSpace(f.scope) == "" {
		return cl.scopes, nil
	}
	var out []string
	for _, s := range strings.Split(f.scope, " ") {
		if s == "" {
			continue
		}
		if !cl.scopeSet[s] {
			return nil, oauth.ErrInvalidScope.WithDescription("a requested scope is not allowed for this client").WithReason("scope_not_allowed")
		}
		if !containsString(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// audiencePolicy applies RFC 8707 §2 (resource) and the common audience
// parameter: each requested value must be one of the client's audiences.
// Default: the client's first audience, else the issuer.
func (cl *client) audiencePolicy(f *form, issuer string) ([]string, *oauth.Error) {
	if len(f.resources) == 0 {
		if len(cl.audiences) > 0 {
			return cl.audiences[:1], nil
		}
		return []string{issuer}, nil
	}
	var out []string
	for _, r := range f.resources {
		if !containsString(cl.audiences, r) {
			return nil, oauth.ErrInvalidTarget.WithDescription("a requested resource or audience is not allowed for this client").WithReason("audience_not_allowed")
		}
		if !containsString(out, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
