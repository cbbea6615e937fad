// Package token is the token profile: the OAuth 2.0 / OpenID Connect
// endpoints of one issuer: discovery, JWKS, authorize (code flow with
// PKCE), token (authorization_code, client_credentials, refresh_token),
// introspect, revoke, userinfo, RP-initiated logout and pushed
// authorization requests (par).
//
// A Profile is built from one snapshot and never changes: every response
// that depends only on config is serialized once, in New.
package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/clientauth"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/storage/model"
)

// Paths of the endpoints under the profile's path. Discovery is
// issuer-relative (OpenID Connect Discovery 1.0 §4).
const (
	PathDiscovery  = "/.well-known/openid-configuration"
	PathJWKS       = "/jwks"
	PathAuthorize  = "/authorize"
	PathToken      = "/token"
	PathIntrospect = "/introspect"
	PathRevoke     = "/revoke"
	PathUserinfo   = "/userinfo"
	PathLogout     = "/logout"
	PathPAR        = "/par"
	// PathDeviceAuthorization is the device authorization endpoint;
	// PathDevice the verification page users open (RFC 8628 §3.3).
	PathDeviceAuthorization = "/device_authorization"
	PathDevice              = "/device"
)

// PathASMetadata is where RFC 8414 §3 puts authorization server metadata:
// at the host root, followed by the issuer's path. Served with discovery.
const PathASMetadata = "/.well-known/oauth-authorization-server"

// endpointPaths maps config endpoint names to their paths.
var endpointPaths = map[string]string{
	config.EndpointDiscovery:           PathDiscovery,
	config.EndpointJWKS:                PathJWKS,
	config.EndpointAuthorize:           PathAuthorize,
	config.EndpointToken:               PathToken,
	config.EndpointIntrospect:          PathIntrospect,
	config.EndpointRevoke:              PathRevoke,
	config.EndpointUserinfo:            PathUserinfo,
	config.EndpointLogout:              PathLogout,
	config.EndpointPAR:                 PathPAR,
	config.EndpointDeviceAuthorization: PathDeviceAuthorization,
}

// Deps are the long-lived dependencies of a token profile, owned by the
// caller (internal/served).
type Deps struct {
	Store   model.Store      // the role's zone data source; nil in tests that need none
	Zone    string           // the role's zone: its audit events are written under it
	Metrics Metrics          // may be nil
	Logger  *slog.Logger     // may be nil
	Now     func() time.Time // nil = time.Now
	// Previous is this profile as built from the snapshot being replaced;
	// clients whose config entry is unchanged are reused from it.
	Previous *Profile
}

// Metrics counts what the profile does. Labels are config names and fixed
// vocabularies only: never client ids, secrets or tokens.
type Metrics interface {
	TokenIssued(profile, grant string)
	OAuthError(profile, endpoint, code, reason string)
	audit.Counter
}

// Profile is one token profile built from a snapshot.
type Profile struct {
	name   string
	path   string
	issuer string
	served map[string]bool

	discovery []byte // OpenID Provider metadata, pre-serialized
	jwks      []byte // public JWK Set, pre-serialized

	store     model.Store // nil: endpoints that need it answer server_error
	metrics   Metrics     // may be nil
	log       *slog.Logger
	now       func() time.Time
	marker    loginMarker             // signs kg_login_after
	verifiers map[string]*keys.Signer // every published key, by kid
	atCache   *atCache                // verified JWT access-token claims; dies with the Profile
	auth      *clientauth.Authenticator
	clients   clients
	grants    map[string]Grant // by grant_type
	issue     *issuer          // signs and stores what the grants issue
	families  *families        // revokes grant families
	trail     audit.Trail      // the zone's audit table and the log

	// Code flow policy (defaults applied by config.Load).
	loginURL     string // the authentication profile's login page, "" if none
	codeLifetime time.Duration
	// Pushed authorization requests (RFC 9126): how long a request_uri
	// lives, and whether every authorization request must be pushed.
	parLifetime time.Duration
	// Device authorization requests: how long they wait for the user, and
	// the least time between two polls (RFC 8628 §3.2).
	deviceLifetime time.Duration
	deviceInterval time.Duration
	parRequired    bool
	// fapi: the FAPI 2.0 Security Profile is on (config.SecurityProfileFAPI2).
	fapi bool
	// trusted are the issuers whose JWTs token exchange accepts, by issuer.
	trusted map[string]*trustedIssuer

	// userinfoAudiences are the audiences besides the issuer whose access
	// tokens userinfo accepts (RFC 9068 §4).
	userinfoAudiences []string
	// dpop checks DPoP proofs (RFC 9449); htu* are the normalised URLs
	// of the endpoints that take them, built from the issuer (never from
	// the request's Host).
	dpop                          *dpopChecker
	htuToken, htuUserinfo, htuPAR string
	// corsOrigins may call the token, revocation and userinfo endpoints
	// from a browser (see cors.go).
	corsOrigins map[string]bool
}

// implemented are the endpoints this build serves (all of
// config.TokenEndpoints); New refuses a listed endpoint that is not, so
// discovery never advertises one that 404s.
var implemented = map[string]bool{
	config.EndpointDiscovery: true, config.EndpointJWKS: true,
	config.EndpointToken: true, config.EndpointIntrospect: true, config.EndpointRevoke: true,
	config.EndpointAuthorize: true, config.EndpointUserinfo: true, config.EndpointLogout: true,
	config.EndpointPAR: true, config.EndpointDeviceAuthorization: true,
}

func implementedList() []string {
	var out []string
	for _, e := range config.TokenEndpoints {
		if implemented[e] {
			out = append(out, e)
		}
	}
	return out
}

// New builds the profile from the snapshot. keys is the profile's key set
// (see keys.NewSet), built by the caller so keys shared between profiles
// are parsed once.
func New(snap *config.Snapshot, p *config.Profile, ks *keys.Set, deps Deps) (*Profile, error) {
	if p == nil || snap == nil {
		return nil, errors.New("token profile: nil profile or snapshot")
	}
	if p.Type != config.ProfileToken {
		return nil, fmt.Errorf("profile %q is of type %q, not %q", p.Name, p.Type, config.ProfileToken)
	}
	if ks == nil || ks.Active == nil {
		return nil, fmt.Errorf("profile %q: no signing keys", p.Name)
	}
	if err := checkIssuer(p.Issuer); err != nil {
		return nil, fmt.Errorf("profile %q: issuer: %w", p.Name, err)
	}
	served := make(map[string]bool, len(p.Endpoints))
	for _, e := range p.Endpoints {
		if _, ok := endpointPaths[e]; !ok {
			return nil, fmt.Errorf("profile %q: unknown endpoint %q; want one of %s", p.Name, e, strings.Join(config.TokenEndpoints, ", "))
		}
		if !implemented[e] {
			// Refuse rather than advertise in discovery an endpoint that 404s.
			return nil, &config.Error{Pos: p.Pos, Path: "profiles." + p.Name + ".endpoints",
				Msg: fmt.Sprintf("%q is not available in this version of keygate (available: %s)", e, strings.Join(implementedList(), ", "))}
		}
		served[e] = true
	}
	prof := &Profile{
		name:   p.Name,
		path:   strings.TrimSuffix(p.Path, "/"),
		issuer: p.Issuer,
		served: served,
		jwks:   ks.JWKS,

		store:     deps.Store,
		metrics:   deps.Metrics,
		log:       deps.Logger,
		now:       deps.Now,
		verifiers: make(map[string]*keys.Signer, len(ks.All)),
		atCache:   newATCache(atCacheSize),
		clients:   clients{},
	}
	prof.codeLifetime = orDefault(p.AuthorizationCodes.Lifetime.D(), config.DefaultCodeLifetime)
	prof.parLifetime = orDefault(p.PushedAuthorizationRequests.Lifetime.D(), config.DefaultPARLifetime)
	prof.deviceLifetime = orDefault(p.DeviceCodes.Lifetime.D(), config.DefaultDeviceCodeLifetime)
	prof.deviceInterval = orDefault(p.DeviceCodes.Interval.D(), config.DefaultDeviceInterval)
	prof.fapi = p.SecurityProfile == config.SecurityProfileFAPI2
	prof.trusted = newTrustedIssuers(p)
	prof.parRequired = p.PushedAuthorizationRequests.Required || prof.fapi
	// config.Load refuses both; a profile built otherwise must neither
	// refuse every authorization request nor store pushed requests that
	// nothing can use.
	if prof.parRequired && !served[config.EndpointPAR] {
		return nil, fmt.Errorf("profile %q: pushed-authorization-requests.required needs the par endpoint", p.Name)
	}
	if served[config.EndpointPAR] && !served[config.EndpointAuthorize] {
		return nil, fmt.Errorf("profile %q: the par endpoint needs the authorize endpoint", p.Name)
	}
	rotateRefresh := p.RefreshTokens.Rotate == nil || *p.RefreshTokens.Rotate
	m, err := newLoginMarker(ks.Active)
	if err != nil {
		return nil, fmt.Errorf("profile %q: %w", p.Name, err)
	}
	prof.marker = m
	prof.userinfoAudiences = p.UserinfoAudiences
	if ap := snap.Profiles[p.AuthenticationProfile]; ap != nil {
		prof.loginURL = strings.TrimSuffix(ap.Path, "/") + "/login"
	} else if served[config.EndpointAuthorize] {
		return nil, fmt.Errorf("profile %q: the authorize endpoint needs an authentication-profile", p.Name)
	}
	if prof.log == nil {
		prof.log = slog.New(slog.DiscardHandler)
	}
	if prof.now == nil {
		prof.now = time.Now
	}
	for _, s := range ks.All {
		prof.verifiers[s.KID] = s
	}
	// The profile's clients, in name order (deterministic errors).
	var cfgClients []*config.Client
	for _, name := range slices.Sorted(maps.Keys(snap.Clients)) {
		if c := snap.Clients[name]; c.Profile == p.Name {
			cfgClients = append(cfgClients, c)
			prof.clients[name] = reuseOrNewClient(deps.Previous, c, p)
		}
	}
	prof.corsOrigins = corsOrigins(cfgClients)
	// The loader checks a client's own format; the profile's default is
	// only known here.
	for _, c := range cfgClients {
		if cl := prof.clients[c.Name]; cl.exchange.Delegation && cl.format != config.FormatJWT {
			return nil, &config.Error{Pos: c.Pos, Path: "clients." + c.Name + ".token-exchange.delegation",
				Msg: fmt.Sprintf("needs JWT access tokens (the act claim is carried in the token); profile %q issues opaque ones", p.Name)}
		}
	}
	if !rotateRefresh {
		// RFC 9700 §4.14.2: a public client's refresh tokens must be
		// sender-constrained or rotated; this server does not bind them.
		for _, name := range slices.Sorted(maps.Keys(prof.clients)) {
			if cl := prof.clients[name]; cl.public && cl.grants[config.GrantRefreshToken] {
				return nil, &config.Error{Pos: p.Pos, Path: "profiles." + p.Name + ".refresh-tokens.rotate",
					Msg: fmt.Sprintf("false is not allowed while public client %q has the refresh_token grant (RFC 9700 §4.14.2)", name)}
			}
		}
	}
	base := strings.TrimSuffix(p.Issuer, "/")
	var prevAuth *clientauth.Authenticator
	if deps.Previous != nil {
		prevAuth = deps.Previous.auth
	}
	// RFC 7523 §3: the token endpoint URL; the issuer is accepted too
	// (OpenID Connect Core 1.0 §9 and common client libraries), and so is
	// the par endpoint's URL where it is served (RFC 9126 §2: all three).
	audiences := []string{base + PathToken, p.Issuer}
	if served[config.EndpointPAR] {
		audiences = append(audiences, base+PathPAR)
	}
	if prof.fapi {
		// FAPI 2.0 §5.3.2.1: the issuer alone, as the one audience, so an
		// assertion made for another endpoint or server never passes.
		audiences = []string{p.Issuer}
	}
	auth, err := clientauth.New(cfgClients, clientauth.Options{
		Previous:       prevAuth,
		Audiences:      audiences,
		SingleAudience: prof.fapi,
		NoRS256:        prof.fapi,
		Store:          deps.Store,
		Now:            prof.now,
	})
	if err != nil {
		return nil, fmt.Errorf("profile %q: %w", p.Name, err)
	}
	prof.auth = auth
	prof.issue = &issuer{
		profile:         p.Name,
		iss:             p.Issuer,
		signer:          ks.Active,
		store:           deps.Store,
		now:             prof.now,
		idTokenLifetime: orDefault(p.IDTokens.Lifetime.D(), config.DefaultIDTokenLifetime),
		refreshLifetime: orDefault(p.RefreshTokens.Lifetime.D(), config.DefaultRefreshTokenLifetime),
	}
	if prof.dpop, err = newDPoPChecker(ks.Active, deps.Store, prof.now, p.DPoP.Nonce, prof.fapi); err != nil {
		return nil, fmt.Errorf("profile %q: %w", p.Name, err)
	}
	prof.htuToken, prof.htuUserinfo, prof.htuPAR = mustNormalHTU(base+PathToken), mustNormalHTU(base+PathUserinfo), mustNormalHTU(base+PathPAR)
	prof.trail = audit.Trail{Store: deps.Store, Zone: deps.Zone, Logger: prof.log, Metrics: deps.Metrics, Now: prof.now}
	prof.families = &families{store: deps.Store, clients: prof.clients, trail: prof.trail, profile: p.Name}
	users := &userGrants{profile: p.Name, store: deps.Store, issue: prof.issue, families: prof.families, trail: prof.trail, now: prof.now}
	prof.grants = newGrants(prof, served, prof.issue, users, rotateRefresh)
	if prof.discovery, err = json.Marshal(prof.metadata(snap, ks)); err != nil {
		return nil, fmt.Errorf("profile %q: serialize discovery: %w", p.Name, err)
	}
	return prof, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// checkIssuer applies OpenID Connect Discovery 1.0 §3: a URL with a scheme
// and host and no query or fragment. (http is allowed for local setups.)
func checkIssuer(iss string) error {
	if iss == "" {
		return errors.New("required")
	}
	u, err := url.Parse(iss)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("must be an absolute http(s) URL")
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(iss, "?") || strings.HasSuffix(iss, "#") {
		return errors.New("must not have a query or fragment")
	}
	return nil
}

// Name is the profile's config name (a metrics label).
func (p *Profile) Name() string { return p.name }

// Path is the URL path prefix the profile is mounted at, without a
// trailing slash ("" for the root).
func (p *Profile) Path() string { return p.path }
