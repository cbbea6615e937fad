// Package token is the token profile: the OAuth 2.0 / OpenID Connect
// endpoints of one issuer: discovery, JWKS, authorize (code flow with
// PKCE), token (authorization_code, client_credentials, refresh_token),
// introspect, revoke, userinfo and RP-initiated logout.
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
	"sort"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

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
)

// PathASMetadata is where RFC 8414 §3 puts authorization server metadata:
// at the host root, followed by the issuer's path. Served with discovery.
const PathASMetadata = "/.well-known/oauth-authorization-server"

// endpointPaths maps config endpoint names to their paths.
var endpointPaths = map[string]string{
	config.EndpointDiscovery:  PathDiscovery,
	config.EndpointJWKS:       PathJWKS,
	config.EndpointAuthorize:  PathAuthorize,
	config.EndpointToken:      PathToken,
	config.EndpointIntrospect: PathIntrospect,
	config.EndpointRevoke:     PathRevoke,
	config.EndpointUserinfo:   PathUserinfo,
	config.EndpointLogout:     PathLogout,
}

// Cache lifetime of discovery and JWKS. Both change only on reload, and
// relying parties that see an unknown kid refetch the JWKS anyway, so a
// short max-age costs little and bounds how long a cache serves a config
// that a reload replaced. Key rotation: publish a new key (list it after
// the active one) and wait at least this long, plus the relying parties'
// own caching, before making it the first (signing) key.
const cacheControl = "public, max-age=60"

// Content types: RFC 8414 §3.2 and RFC 7517 §8.5.
const (
	contentTypeJSON   = "application/json"
	contentTypeJWKSet = "application/jwk-set+json"
)

// Client authentication methods this profile supports at its token,
// introspection and revocation endpoints (RFC 7591 §2 names).
var authMethods = []string{config.AuthSecretBasic, config.AuthSecretPost, config.AuthPrivateKeyJWT}

// idTokenClaims are the claims of OpenID Connect Core 1.0 §2 the profile
// puts in ID tokens; userinfoClaims join them in discovery when userinfo
// is served.
var idTokenClaims = []string{"acr", "amr", "at_hash", "aud", "auth_time", "exp", "iat", "iss", "nonce", "sid", "sub"}

// Deps are the long-lived dependencies of a token profile, owned by the
// caller (the runtime).
type Deps struct {
	Store   model.Store      // the role's zone data source; nil in tests that need none
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
	OAuthError(profile, endpoint, code string)
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
	signer    *keys.Signer            // the active key
	marker    loginMarker             // signs kg_login_after
	verifiers map[string]*keys.Signer // every published key, by kid
	atCache   *atCache                // verified JWT access-token claims; dies with the Profile
	auth      *clientauth.Authenticator
	clients   map[string]*client
	grants    map[string]Grant // by grant_type

	// Code flow policy (defaults applied by config.Load).
	loginURL        string // the authentication profile's login page, "" if none
	codeLifetime    time.Duration
	idTokenLifetime time.Duration
	refreshLifetime time.Duration
	rotateRefresh   bool

	// userinfoAudiences are the audiences besides the issuer whose access
	// tokens userinfo accepts (RFC 9068 §4).
	userinfoAudiences []string
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
		signer:    ks.Active,
		verifiers: make(map[string]*keys.Signer, len(ks.All)),
		atCache:   newATCache(atCacheSize),
		clients:   map[string]*client{},
	}
	prof.codeLifetime = orDefault(p.AuthorizationCodes.Lifetime.D(), config.DefaultCodeLifetime)
	prof.idTokenLifetime = orDefault(p.IDTokens.Lifetime.D(), config.DefaultIDTokenLifetime)
	prof.refreshLifetime = orDefault(p.RefreshTokens.Lifetime.D(), config.DefaultRefreshTokenLifetime)
	prof.rotateRefresh = p.RefreshTokens.Rotate == nil || *p.RefreshTokens.Rotate
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
	if !prof.rotateRefresh {
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
	auth, err := clientauth.New(cfgClients, clientauth.Options{
		Previous: prevAuth,
		// RFC 7523 §3: the token endpoint URL; the issuer is accepted too
		// (OpenID Connect Core 1.0 §9 and common client libraries).
		Audiences: []string{base + PathToken, p.Issuer},
		Store:     deps.Store,
		Now:       prof.now,
	})
	if err != nil {
		return nil, fmt.Errorf("profile %q: %w", p.Name, err)
	}
	prof.auth = auth
	// The grants this build implements, by grant_type (STYLE.md: the
	// dispatcher picks from a map).
	prof.grants = map[string]Grant{
		config.GrantClientCredentials: &clientCredentials{p: prof},
	}
	if served[config.EndpointAuthorize] {
		// Codes and the refresh tokens they lead to exist only where the
		// authorize endpoint is served.
		prof.grants[config.GrantAuthorizationCode] = &authorizationCode{p: prof}
		prof.grants[config.GrantRefreshToken] = &refreshToken{p: prof}
	}
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

// MetadataPath is the host-root path of the profile's RFC 8414 metadata
// (PathASMetadata + the issuer's path), or "" when discovery is not served.
func (p *Profile) MetadataPath() string {
	if !p.served[config.EndpointDiscovery] {
		return ""
	}
	u, _ := url.Parse(p.issuer) // checked in New
	return PathASMetadata + strings.TrimSuffix(u.EscapedPath(), "/")
}

// Discovery returns the pre-serialized metadata document. Callers must
// not modify it.
func (p *Profile) Discovery() []byte { return p.discovery }

// metadata is the OpenID Provider / authorization server metadata
// (OpenID Connect Discovery 1.0 §3, RFC 8414 §2).
type metadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint,omitempty"`
	TokenEndpoint         string `json:"token_endpoint,omitempty"`
	UserinfoEndpoint      string `json:"userinfo_endpoint,omitempty"`
	JWKSURI               string `json:"jwks_uri,omitempty"`
	EndSessionEndpoint    string `json:"end_session_endpoint,omitempty"`
	IntrospectionEndpoint string `json:"introspection_endpoint,omitempty"`
	RevocationEndpoint    string `json:"revocation_endpoint,omitempty"`

	ScopesSupported                  []string `json:"scopes_supported"`
	ResponseTypesSupported           []string `json:"response_types_supported,omitempty"`
	ResponseModesSupported           []string `json:"response_modes_supported,omitempty"`
	GrantTypesSupported              []string `json:"grant_types_supported,omitempty"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	CodeChallengeMethodsSupported    []string `json:"code_challenge_methods_supported,omitempty"`
	ClaimsSupported                  []string `json:"claims_supported"`
	PromptValuesSupported            []string `json:"prompt_values_supported,omitempty"`
	// RFC 9207 §3.
	AuthorizationResponseIssParameterSupported bool `json:"authorization_response_iss_parameter_supported,omitempty"`

	TokenEndpointAuthMethodsSupported                  []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	TokenEndpointAuthSigningAlgValuesSupported         []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	IntrospectionEndpointAuthMethodsSupported          []string `json:"introspection_endpoint_auth_methods_supported,omitempty"`
	IntrospectionEndpointAuthSigningAlgValuesSupported []string `json:"introspection_endpoint_auth_signing_alg_values_supported,omitempty"`
	RevocationEndpointAuthMethodsSupported             []string `json:"revocation_endpoint_auth_methods_supported,omitempty"`
	RevocationEndpointAuthSigningAlgValuesSupported    []string `json:"revocation_endpoint_auth_signing_alg_values_supported,omitempty"`
}

func (p *Profile) metadata(snap *config.Snapshot, ks *keys.Set) metadata {
	base := strings.TrimSuffix(p.issuer, "/")
	endpointURL := func(endpoint string) string {
		if !p.served[endpoint] {
			return ""
		}
		return base + endpointPaths[endpoint]
	}
	m := metadata{
		Issuer:                p.issuer,
		AuthorizationEndpoint: endpointURL(config.EndpointAuthorize),
		TokenEndpoint:         endpointURL(config.EndpointToken),
		UserinfoEndpoint:      endpointURL(config.EndpointUserinfo),
		JWKSURI:               endpointURL(config.EndpointJWKS),
		EndSessionEndpoint:    endpointURL(config.EndpointLogout),
		IntrospectionEndpoint: endpointURL(config.EndpointIntrospect),
		RevocationEndpoint:    endpointURL(config.EndpointRevoke),

		ScopesSupported:                  scopes(snap, p.name),
		SubjectTypesSupported:            []string{"public"},
		IDTokenSigningAlgValuesSupported: algs(ks),
		ClaimsSupported:                  idTokenClaims,
	}
	if p.served[config.EndpointUserinfo] {
		m.ClaimsSupported = append(append([]string{"sub"}, userinfoClaims()...), slices.DeleteFunc(slices.Clone(idTokenClaims), func(s string) bool { return s == "sub" })...)
		sort.Strings(m.ClaimsSupported)
	}
	authorize, token := p.served[config.EndpointAuthorize], p.served[config.EndpointToken]
	if authorize {
		m.ResponseTypesSupported = []string{"code"}
		m.ResponseModesSupported = []string{"query"}
		m.PromptValuesSupported = []string{"none", "login", "consent", "select_account"}
		m.AuthorizationResponseIssParameterSupported = true
		// PKCE with S256 only: "plain" offers no protection (RFC 7636 §4.2,
		// OAuth 2.0 Security BCP).
		m.CodeChallengeMethodsSupported = []string{"S256"}
	}
	if authorize && token {
		m.GrantTypesSupported = append(m.GrantTypesSupported, config.GrantAuthorizationCode)
	}
	if token {
		m.GrantTypesSupported = append(m.GrantTypesSupported, config.GrantClientCredentials)
	}
	if authorize && token {
		m.GrantTypesSupported = append(m.GrantTypesSupported, config.GrantRefreshToken)
	}
	// RFC 8414 §2: the signing algs MUST be listed when private_key_jwt is.
	clientAlgs := supportedAlgs()
	if token {
		m.TokenEndpointAuthMethodsSupported = authMethods
		m.TokenEndpointAuthSigningAlgValuesSupported = clientAlgs
	}
	if p.served[config.EndpointIntrospect] {
		m.IntrospectionEndpointAuthMethodsSupported = authMethods
		m.IntrospectionEndpointAuthSigningAlgValuesSupported = clientAlgs
	}
	if p.served[config.EndpointRevoke] {
		m.RevocationEndpointAuthMethodsSupported = authMethods
		m.RevocationEndpointAuthSigningAlgValuesSupported = clientAlgs
	}
	return m
}

// scopes is the sorted union of the scopes of the profile's clients, plus
// openid.
func scopes(snap *config.Snapshot, profile string) []string {
	set := map[string]bool{"openid": true}
	for _, c := range snap.Clients {
		if c.Profile != profile {
			continue
		}
		for _, s := range c.Scopes {
			set[s] = true
		}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// algs lists the algorithms of the profile's published keys, each once, in
// key order (the active key's first).
func algs(ks *keys.Set) []string {
	var out []string
	for _, s := range ks.All {
		if a := s.Alg.String(); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func supportedAlgs() []string {
	out := make([]string, len(keys.SupportedAlgorithms))
	for i, a := range keys.SupportedAlgorithms {
		out[i] = a.String()
	}
	return out
}

// Wrap returns a handler that runs before an endpoint's own handler (e.g.
// to label metrics with the endpoint name and recover panics). It must
// call c.Next.
type Wrap func(endpoint string) fiber.Handler

// Mount registers the endpoints listed in the profile's config, at its
// path.
func (p *Profile) Mount(r fiber.Router) { p.MountWith(r, nil) }

// MountWith is Mount with wrap (may be nil) placed before every endpoint.
// A listed endpoint answers other methods with 405 and an Allow header
// (RFC 9110 §15.5.6).
func (p *Profile) MountWith(r fiber.Router, wrap Wrap) {
	get := func(endpoint string, h fiber.Handler) {
		if !p.served[endpoint] {
			return
		}
		path := p.path + endpointPaths[endpoint]
		r.Get(path, chain(wrap, endpoint, h)...)
		r.All(path, chain(wrap, endpoint, methodNotAllowed("GET, HEAD"))...)
	}
	// cors wraps the endpoints browser apps fetch and answers their
	// preflights.
	cors := func(endpoint, methods string, h fiber.Handler) fiber.Handler {
		if !corsEndpoints[endpoint] {
			return h
		}
		r.Options(p.path+endpointPaths[endpoint], chain(wrap, endpoint, p.preflight(methods))...)
		return p.withCORS(h)
	}
	post := func(endpoint string, h fiber.Handler) {
		if !p.served[endpoint] {
			return
		}
		path := p.path + endpointPaths[endpoint]
		h = cors(endpoint, "POST", h)
		r.Post(path, chain(wrap, endpoint, h)...)
		r.All(path, chain(wrap, endpoint, methodNotAllowed("POST"))...)
	}
	getPost := func(endpoint string, h fiber.Handler) {
		if !p.served[endpoint] {
			return
		}
		path := p.path + endpointPaths[endpoint]
		h = cors(endpoint, "GET, HEAD, POST", h)
		r.Get(path, chain(wrap, endpoint, h)...)
		r.Post(path, chain(wrap, endpoint, h)...)
		r.All(path, chain(wrap, endpoint, methodNotAllowed("GET, HEAD, POST"))...)
	}
	get(config.EndpointDiscovery, p.serveDiscovery)
	if path := p.MetadataPath(); path != "" {
		// The same document at the RFC 8414 location, which the runtime
		// keeps unique among a role's profiles.
		r.Get(path, chain(wrap, config.EndpointDiscovery, p.serveDiscovery)...)
		r.All(path, chain(wrap, config.EndpointDiscovery, methodNotAllowed("GET, HEAD"))...)
	}
	get(config.EndpointJWKS, p.serveJWKS)
	post(config.EndpointToken, p.serveToken)
	post(config.EndpointIntrospect, p.serveIntrospect)
	post(config.EndpointRevoke, p.serveRevoke)
	getPost(config.EndpointAuthorize, p.serveAuthorize) // OpenID Connect Core 1.0 §3.1.2.1
	getPost(config.EndpointUserinfo, p.serveUserinfo)   // §5.3.1
	getPost(config.EndpointLogout, p.serveLogout)       // RP-Initiated Logout 1.0 §2
}

func chain(wrap Wrap, endpoint string, h fiber.Handler) []fiber.Handler {
	if wrap == nil {
		return []fiber.Handler{h}
	}
	return []fiber.Handler{wrap(endpoint), h}
}

func methodNotAllowed(allow string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderAllow, allow)
		return fiber.ErrMethodNotAllowed
	}
}

// serveDiscovery serves the metadata (OpenID Connect Discovery 1.0 §4.2).
func (p *Profile) serveDiscovery(c *fiber.Ctx) error {
	return sendPublic(c, contentTypeJSON, p.discovery)
}

// serveJWKS serves the public keys (RFC 7517 §5).
func (p *Profile) serveJWKS(c *fiber.Ctx) error {
	return sendPublic(c, contentTypeJWKSet, p.jwks)
}

// sendPublic sends a pre-serialized public document. Browser apps (SPAs
// using the code flow with PKCE) read discovery and JWKS cross-origin, and
// neither carries credentials, hence the wildcard CORS origin.
func sendPublic(c *fiber.Ctx, contentType string, body []byte) error {
	c.Set(fiber.HeaderContentType, contentType)
	c.Set(fiber.HeaderCacheControl, cacheControl)
	c.Set(fiber.HeaderAccessControlAllowOrigin, "*")
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	return c.Send(body)
}
