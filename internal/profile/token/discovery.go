package token

import (
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/keys"
)

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
	// RFC 9126 §5.
	PushedAuthorizationRequestEndpoint string `json:"pushed_authorization_request_endpoint,omitempty"`
	DeviceAuthorizationEndpoint        string `json:"device_authorization_endpoint,omitempty"` // RFC 8628 §4
	RequirePushedAuthorizationRequests bool   `json:"require_pushed_authorization_requests,omitempty"`

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
	// RFC 9449 §5.1.
	DPoPSigningAlgValuesSupported []string `json:"dpop_signing_alg_values_supported,omitempty"`
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

		PushedAuthorizationRequestEndpoint: endpointURL(config.EndpointPAR),
		DeviceAuthorizationEndpoint:        endpointURL(config.EndpointDeviceAuthorization),
		RequirePushedAuthorizationRequests: p.parRequired,

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
	if (authorize || p.served[config.EndpointDeviceAuthorization]) && token {
		m.GrantTypesSupported = append(m.GrantTypesSupported, config.GrantRefreshToken)
	}
	if token && p.served[config.EndpointDeviceAuthorization] {
		m.GrantTypesSupported = append(m.GrantTypesSupported, config.GrantDeviceCode)
	}
	// Served exactly when a client may use it.
	if token && p.clients.anyGrant(config.GrantTokenExchange) {
		m.GrantTypesSupported = append(m.GrantTypesSupported, config.GrantTokenExchange)
	}
	// RFC 8414 §2: the signing algs MUST be listed when private_key_jwt is.
	clientAlgs := supportedAlgs()
	methods := authMethods
	if p.fapi {
		// What the loader and clientauth let FAPI clients use.
		methods = []string{config.AuthPrivateKeyJWT}
		clientAlgs = slices.DeleteFunc(clientAlgs, func(a string) bool { return a == "RS256" })
	}
	if token {
		m.TokenEndpointAuthMethodsSupported = methods
		m.TokenEndpointAuthSigningAlgValuesSupported = clientAlgs
		for _, a := range p.dpop.algs {
			m.DPoPSigningAlgValuesSupported = append(m.DPoPSigningAlgValuesSupported, a.String())
		}
	}
	if p.served[config.EndpointIntrospect] {
		m.IntrospectionEndpointAuthMethodsSupported = methods
		m.IntrospectionEndpointAuthSigningAlgValuesSupported = clientAlgs
	}
	if p.served[config.EndpointRevoke] {
		m.RevocationEndpointAuthMethodsSupported = methods
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
