package token

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/storage/model"
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
	public                 bool // token-endpoint-auth-method none
	consent                bool // ask the user at every authorization
	introspectAll          bool // may learn the claims of every token at introspection
	loopbackAnyPort        bool // a loopback IP redirect URI matches on any port (RFC 8252 §7.3)

	cfg    *config.Client           // the entry it was built from, for reuse
	policy config.AccessTokenPolicy // the profile policy it was built with
}

// reuseOrNewClient returns the previous build's client when its config
// entry is the same object and the profile's access-token policy (which
// fills the client's gaps) is unchanged; clients are immutable once built.
func reuseOrNewClient(prev *Profile, c *config.Client, p *config.Profile) *client {
	if prev != nil {
		if cl, ok := prev.clients[c.Name]; ok && cl.cfg == c && cl.policy == p.AccessTokens {
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
		public:                 c.TokenEndpointAuthMethod == config.AuthNone || (c.TokenEndpointAuthMethod == "" && c.Secret.IsZero() && len(c.PublicKeys) == 0),
	}
	for _, g := range c.GrantTypes {
		cl.grants[g] = true
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

// grantRequest is what the dispatcher hands a grant: the parsed form, the
// authenticated client, and the scopes and audience policy allowed.
type grantRequest struct {
	form     *form
	client   *client
	scopes   []string
	audience []string
}

// Grant handles one grant_type at the token endpoint and returns the
// serialized successful response (RFC 6749 §5.1).
type Grant interface {
	Handle(ctx context.Context, r *grantRequest) ([]byte, *oauth.Error)
}

// clientCredentials is the client credentials grant (RFC 6749 §4.4): the
// client is the subject; no refresh token (§4.4.3).
type clientCredentials struct{ p *Profile }

var _ Grant = (*clientCredentials)(nil)

// Handle implements RFC 6749 §4.4.2 and §4.4.3.
func (g *clientCredentials) Handle(ctx context.Context, r *grantRequest) ([]byte, *oauth.Error) {
	tok, err := g.p.issueAccessToken(ctx, accessToken{
		subject:  r.client.id,
		client:   r.client,
		scopes:   r.scopes,
		audience: r.audience,
	})
	if err != nil {
		return nil, oauth.ErrServerError.WithCause(err)
	}
	return tokenResponse(tok, r.client.lifetime, r.scopes), nil
}

// tokenResponse serializes RFC 6749 §5.1. Access tokens are base64url
// (opaque) or JWS compact (base64url and dots) and scope tokens exclude
// '"' and '\' (RFC 6749 §3.3), so no JSON escaping is needed.
func tokenResponse(token string, lifetime time.Duration, scopes []string) []byte {
	b := make([]byte, 0, len(token)+128)
	b = append(b, `{"access_token":"`...)
	b = append(b, token...)
	b = append(b, `","token_type":"Bearer","expires_in":`...)
	b = strconv.AppendInt(b, int64(lifetime/time.Second), 10)
	if len(scopes) > 0 {
		b = append(b, `,"scope":"`...)
		for i, s := range scopes {
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, s...)
		}
		b = append(b, '"')
	}
	return append(b, '}')
}

// accessToken is what to put in an access token.
type accessToken struct {
	subject  string
	client   *client
	scopes   []string
	audience []string
	jti      string // "" = a new one; the code grant pre-assigns it
}

// atClaims are the claims of a JWT access token (RFC 9068 §2.2).
type atClaims struct {
	Iss      string   `json:"iss"`
	Sub      string   `json:"sub"`
	Aud      audience `json:"aud"`
	Exp      int64    `json:"exp"`
	Iat      int64    `json:"iat"`
	Jti      string   `json:"jti"`
	ClientID string   `json:"client_id"`
	Scope    string   `json:"scope,omitempty"`
}

// audience marshals as a string when single (RFC 7519 §4.1.3).
type audience []string

func (a audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

func (a *audience) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = audience{s}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(a))
}

// issueAccessToken makes an access token in the client's format. A JWT
// (RFC 9068) is signed and never stored; an opaque token is a random
// 256-bit handle whose SHA-256 is stored.
func (p *Profile) issueAccessToken(ctx context.Context, at accessToken) (string, error) {
	now := p.now()
	exp := now.Add(at.client.lifetime)
	jti := at.jti
	if jti == "" {
		jti = model.NewID()
	}
	if at.client.format == config.FormatOpaque {
		if p.store == nil {
			return "", fmt.Errorf("opaque access tokens need a data source; profile %s has none", p.name)
		}
		var raw [32]byte
		_, _ = rand.Read(raw[:]) // never fails (Go 1.24+)
		handle := base64.RawURLEncoding.EncodeToString(raw[:])
		err := p.store.AccessTokens().Create(ctx, model.AccessToken{
			Hash:      model.HashSecret(handle),
			JTI:       jti,
			ClientID:  at.client.id,
			Subject:   at.subject,
			Scopes:    at.scopes,
			Audience:  at.audience,
			Profile:   p.name,
			IssuedAt:  now,
			ExpiresAt: exp,
		})
		if err != nil {
			return "", fmt.Errorf("store access token: %w", err)
		}
		return handle, nil
	}
	payload, err := json.Marshal(atClaims{
		Iss:      p.issuer,
		Sub:      at.subject,
		Aud:      at.audience,
		Exp:      exp.Unix(),
		Iat:      now.Unix(),
		Jti:      jti,
		ClientID: at.client.id,
		Scope:    strings.Join(at.scopes, " "),
	})
	if err != nil {
		return "", fmt.Errorf("marshal claims: %w", err)
	}
	tok, err := p.signer.Sign(payload, typAccessToken)
	if err != nil {
		return "", fmt.Errorf("sign access token: %w", err)
	}
	return string(tok), nil
}

// typAccessToken is the JWT access token media type (RFC 9068 §2.1).
const typAccessToken = "at+jwt"
