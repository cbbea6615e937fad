package token

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/storage/model"
)

// Token exchange of other issuers' JWTs (RFC 8693 §2.1): a profile lists
// trusted issuers (token-exchange.trusted-issuers) and a client names the
// ones whose tokens it may present. Such a token is verified with its
// issuer's published keys, must name this issuer in aud (it was meant for
// us) and stands for the local user of the profile's zone whose username
// is its username claim, as a federated sign-in does.

// Bounds of a JWKS fetch, and how soon an unknown kid may refetch it (a
// rotation at the issuer) or the keys are fetched again anyway.
const (
	jwksMaxBytes     = 1 << 20
	jwksTimeout      = 5 * time.Second
	jwksRefetchAfter = 30 * time.Second
	jwksMaxAge       = time.Hour
	// externalSkew is the clock difference allowed with another issuer.
	externalSkew = 30 * time.Second
)

var jwksClient = &http.Client{Timeout: jwksTimeout}

// trustedIssuer is one configured issuer with its cached keys.
type trustedIssuer struct {
	name, issuer, jwksURI, usernameClaim string

	mu      sync.Mutex // one fetch at a time
	set     jwk.Set
	fetched time.Time
}

func newTrustedIssuers(p *config.Profile) map[string]*trustedIssuer {
	out := map[string]*trustedIssuer{}
	for name, ti := range p.TokenExchange.TrustedIssuers {
		claim := ti.UsernameClaim
		if claim == "" {
			claim = "preferred_username"
		}
		out[ti.Issuer] = &trustedIssuer{name: name, issuer: ti.Issuer, jwksURI: ti.JWKSURI, usernameClaim: claim}
	}
	return out
}

// keys returns the issuer's signing keys, fetched when none are cached,
// when they are older than jwksMaxAge, or, with refresh, when they are
// older than jwksRefetchAfter.
func (ti *trustedIssuer) keys(ctx context.Context, now time.Time, refresh bool) (jwk.Set, error) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	age := now.Sub(ti.fetched)
	if ti.set != nil && age < jwksMaxAge && !(refresh && age > jwksRefetchAfter) {
		return ti.set, nil
	}
	ctx, cancel := context.WithTimeout(ctx, jwksTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ti.jwksURI, nil)
	if err != nil {
		return nil, err
	}
	resp, err := jwksClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch the keys of trusted issuer %s: %w", ti.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("read the keys of trusted issuer %s: %w", ti.name, err)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("the keys of trusted issuer %s: status %d", ti.name, resp.StatusCode)
	case len(body) > jwksMaxBytes:
		return nil, fmt.Errorf("the keys of trusted issuer %s are over %d bytes", ti.name, jwksMaxBytes)
	}
	all, err := jwk.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("the keys of trusted issuer %s are not a JWK Set: %w", ti.name, err)
	}
	// Public keys only: a symmetric key published in a JWKS is known to
	// everyone, so a token "signed" with it proves nothing.
	set := jwk.NewSet()
	for i := range all.Len() {
		if k, ok := all.Key(i); ok && k.KeyType() != "oct" {
			_ = set.AddKey(k)
		}
	}
	ti.set, ti.fetched = set, now
	return set, nil
}

// issuerOf reads a JWT's iss without verifying anything, to pick the keys
// that then verify it; "" if it is no JWT.
func issuerOf(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return ""
	}
	return c.Iss
}

// external verifies a JWT of a trusted issuer that the client may present
// and maps it to the local user of the profile's zone.
func (g *tokenExchange) external(ctx context.Context, cl *client, ti *trustedIssuer, token, which string) (presented, *oauth.Error) {
	if !slices.Contains(cl.exchange.TrustedIssuers, ti.name) {
		return presented{}, invalidExchange(which+"_untrusted_issuer", "the "+which+"'s issuer is not one this client may exchange tokens of")
	}
	now := g.p.now()
	parse := func(set jwk.Set) (jwt.Token, error) {
		return jwt.Parse([]byte(token),
			// Keys without alg verify only the algorithms of their type
			// (never a MAC); keys with one, only it.
			jwt.WithKeySet(set, jws.WithInferAlgorithmFromKey(true)),
			jwt.WithValidate(true), jwt.WithIssuer(ti.issuer), jwt.WithAudience(g.p.issuer),
			jwt.WithRequiredClaim("exp"), jwt.WithAcceptableSkew(externalSkew),
			jwt.WithClock(jwt.ClockFunc(g.p.now)))
	}
	set, err := ti.keys(ctx, now, false)
	if err != nil {
		return presented{}, oauth.ErrTemporarilyUnavailable.WithDescription("the keys of the subject token's issuer cannot be fetched").WithCause(err)
	}
	tok, err := parse(set)
	if err != nil && !jwt.IsValidationError(err) {
		// Perhaps a key the issuer added since: fetch once more.
		if set, ferr := ti.keys(ctx, now, true); ferr == nil {
			tok, err = parse(set)
		}
	}
	if err != nil {
		return presented{}, invalidExchange(which+"_invalid", "the "+which+" does not verify with its issuer's keys, or is expired or not meant for this issuer").WithCause(err)
	}
	username := ""
	if ti.usernameClaim == "sub" {
		username = tok.Subject()
	} else if v, ok := tok.PrivateClaims()[ti.usernameClaim].(string); ok {
		username = v
	}
	if username == "" {
		return presented{}, invalidExchange(which+"_no_user", "the "+which+" has no "+ti.usernameClaim+" claim")
	}
	user, err := g.p.store.Users().GetByUsername(ctx, g.p.trail.Zone, username)
	switch {
	case errors.Is(err, model.ErrNotFound):
		return presented{}, invalidExchange(which+"_no_user", "the "+which+"'s user has no account here")
	case err != nil:
		return presented{}, oauth.ErrServerError.WithCause(fmt.Errorf("find the user of an external token: %w", err))
	case user.Status != "" && user.Status != model.UserActive:
		return presented{}, invalidExchange(which+"_no_user", "the "+which+"'s user is not active here")
	}
	scopes := idTokenScopes
	if s, ok := tok.PrivateClaims()["scope"].(string); ok {
		scopes = strings.Fields(s)
	}
	return presented{subject: user.ID, scopes: scopes, expires: tok.Expiration()}, nil
}
