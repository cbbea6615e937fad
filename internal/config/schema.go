package config

import (
	"slices"
	"time"

	"github.com/keygate/keygate/internal/secret"
)

// SchemaVersion is the newest config schema this binary understands.
// SupportedSchemas lists every version it accepts.
const SchemaVersion = 1

var SupportedSchemas = []int{1}

// Entries are a configuration's named entries, by section.
type Entries struct {
	ServiceRoles map[string]*ServiceRole
	Zones        map[string]*Zone
	DataSources  map[string]*DataSource
	Keys         map[string]*Key
	Profiles     map[string]*Profile
	Clients      map[string]*Client
}

// EachMeta calls fn with every entry's Meta, section by section in the
// order the sections are documented, names sorted within a section.
func (e *Entries) EachMeta(fn func(section string, m *Meta)) {
	eachMeta("service-roles", e.ServiceRoles, fn)
	eachMeta("zones", e.Zones, fn)
	eachMeta("data-sources", e.DataSources, fn)
	eachMeta("keys", e.Keys, fn)
	eachMeta("profiles", e.Profiles, fn)
	eachMeta("clients", e.Clients, fn)
}

func eachMeta[T interface{ meta() *Meta }](section string, m map[string]T, fn func(string, *Meta)) {
	for _, name := range sortedKeys(m) {
		fn(section, m[name].meta())
	}
}

// Snapshot is one loaded, validated, fully resolved configuration as seen by
// one service role. It is immutable: callers never write to it.
type Snapshot struct {
	Schema int
	// Role is the service role the snapshot was resolved for.
	Role string

	// Entries are those the role uses (see Load).
	Entries

	// Hash is the hex SHA-256 over every input (config files, env files,
	// files read through ${file:PATH}); equal hashes mean equal snapshots.
	Hash string
	// Inputs are the files other than config.d/*.yaml that the load read
	// (env files, ${file:PATH} targets), so a watcher can follow them too.
	Inputs []string
	// Files are the config files this snapshot was loaded from, with the
	// SHA-256 of the bytes Load read, in lexical order (bundle verification
	// compares them with a signed manifest).
	Files []FileHash
	// Manifest is the bundle manifest (bundle.json) read from the same
	// directory as the files (the same ..data target), or nil. Load does
	// not interpret it beyond BundleVersion; Options.Verify checks it.
	Manifest []byte
	// BundleVersion is the "version" field of Manifest, if any. It is only
	// trustworthy when the node verifies bundles.
	BundleVersion string
	// Unresolved are the values a Lenient load left empty in the entries
	// the role uses, sorted by position: the checks that need them could
	// not run. Always empty when not Lenient (such a load fails instead).
	Unresolved []Unresolved
}

// Unresolved is one value a Lenient load could not resolve.
type Unresolved struct {
	Entry string // the entry holding it: "keys.signing"
	Pos   Position
	Path  string // keys.signing.private-key
	// Var is the variable it needs, or "file:PATH" for an unread target.
	Var string
}

// UnresolvedEntry reports whether a value of the entry ("keys.signing")
// was left unresolved, and the variables it needs.
func (s *Snapshot) UnresolvedEntry(entry string) []string {
	var vars []string
	for _, u := range s.Unresolved {
		if u.Entry == entry && !slices.Contains(vars, u.Var) {
			vars = append(vars, u.Var)
		}
	}
	return vars
}

// FileHash is one config file's name and the hex SHA-256 of its bytes.
type FileHash struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

// Position is where an entry or value was written.
type Position struct {
	File   string // path as given to the loader, relative to the config dir for config files
	Line   int
	Column int
}

// Meta is carried by every named entry.
type Meta struct {
	Name string   `yaml:"-"`
	Pos  Position `yaml:"-"`
	// Tags mark entries that KEYGATE_EXCLUDE_TAGS can drop (e.g. under-test).
	Tags []string `yaml:"tags"`
	// Enabled: false drops the entry. Default true.
	Enabled *bool `yaml:"enabled"`
	// LintIgnore silences `keygate config lint` findings on this entry:
	// rule id → why (required; an empty reason is an error). Load itself
	// ignores it.
	LintIgnore LintIgnore `yaml:"lint-ignore"`
}

// LintIgnore maps a lint rule id to the reason it is silenced.
type LintIgnore map[string]string

// ServiceRole maps a node to its zone and the profiles it serves.
type ServiceRole struct {
	Meta     `yaml:",inline"`
	Zone     string   `yaml:"zone"`
	Profiles []string `yaml:"profiles"`
}

// Zone maps to the data source that holds the zone's users and tokens.
type Zone struct {
	Meta       `yaml:",inline"`
	DataSource string `yaml:"data-source"`
}

// DataSource types.
const (
	DataSourceSQLite   = "sqlite"
	DataSourcePostgres = "postgres"
)

// DataSource is a database. Path is for sqlite, URL for postgres.
type DataSource struct {
	Meta `yaml:",inline"`
	Type string        `yaml:"type"`
	Path string        `yaml:"path"`
	URL  secret.String `yaml:"url"`
	// MaxConnections bounds the pool. Default 10 (postgres), 1 writer (sqlite).
	MaxConnections int `yaml:"max-connections"`
	// Timeout bounds every call to the data source (DefaultDataSourceTimeout):
	// a database that hangs answers 503, not a request that waits minutes.
	Timeout Duration `yaml:"timeout"`
	// AuditRetention is how long audit events are kept: the periodic GC
	// deletes older ones (DefaultAuditRetention).
	AuditRetention Duration `yaml:"audit-retention"`
}

// DefaultAuditRetention keeps audit events 90 days.
const DefaultAuditRetention = 90 * 24 * time.Hour

// Key algorithms.
const (
	AlgES256 = "ES256"
	AlgRS256 = "RS256"
	AlgEdDSA = "EdDSA"
)

// Key is a signing key: a PEM private key (PKCS#8, PKCS#1 or SEC1).
type Key struct {
	Meta       `yaml:",inline"`
	Algorithm  string        `yaml:"algorithm"`
	PrivateKey secret.String `yaml:"private-key"`
}

// Profile types.
const (
	ProfileToken          = "token"
	ProfileAuthentication = "authentication"
	ProfileUserManagement = "user-management"
	// ProfileDemo is the local stage's demo page: a browser client of a
	// token profile, and a user to sign in as. Tagged demo in the example
	// configuration, so that other stages drop it.
	ProfileDemo = "demo"
)

// Token profile endpoints.
const (
	EndpointDiscovery  = "discovery"
	EndpointJWKS       = "jwks"
	EndpointAuthorize  = "authorize"
	EndpointToken      = "token"
	EndpointIntrospect = "introspect"
	EndpointRevoke     = "revoke"
	EndpointUserinfo   = "userinfo"
	EndpointLogout     = "logout"
	// EndpointPAR is the pushed authorization request endpoint (RFC 9126).
	EndpointPAR = "par"
	// EndpointDeviceAuthorization is the device authorization endpoint
	// (RFC 8628 §3.1) with its verification page for the user (§3.3).
	EndpointDeviceAuthorization = "device-authorization"
)

// TokenEndpoints lists every endpoint a token profile may serve.
var TokenEndpoints = []string{EndpointDiscovery, EndpointJWKS, EndpointAuthorize, EndpointToken,
	EndpointIntrospect, EndpointRevoke, EndpointUserinfo, EndpointLogout, EndpointPAR, EndpointDeviceAuthorization}

// Profile is a service: token, authentication or user-management. Which keys
// are allowed depends on Type (see profileKeys in validate.go).
type Profile struct {
	Meta `yaml:",inline"`
	Type string `yaml:"type"`
	// Path is the URL path prefix the profile is mounted at, e.g. /oauth/v2.
	Path string `yaml:"path"`

	// Token profiles.
	Issuer                string `yaml:"issuer"`
	AuthenticationProfile string `yaml:"authentication-profile"`
	// SigningKeys: the first key signs; every listed key is published in
	// JWKS. Add a new key last to publish it before it signs; keep an old
	// key listed while tokens it signed can still be valid.
	SigningKeys        []string           `yaml:"signing-keys"`
	Endpoints          []string           `yaml:"endpoints"`
	AccessTokens       AccessTokenPolicy  `yaml:"access-tokens"`
	RefreshTokens      RefreshTokenPolicy `yaml:"refresh-tokens"`
	IDTokens           IDTokenPolicy      `yaml:"id-tokens"`
	AuthorizationCodes CodePolicy         `yaml:"authorization-codes"`
	// PushedAuthorizationRequests: the request_uri lifetime of the par
	// endpoint, and whether every authorization request must be pushed.
	PushedAuthorizationRequests PARPolicy `yaml:"pushed-authorization-requests"`
	// DeviceCodes: how long a device authorization request waits for its
	// user, and how often the device may poll.
	DeviceCodes DevicePolicy `yaml:"device-codes"`
	// DPoP: how the profile checks DPoP proofs (RFC 9449).
	DPoP DPoPPolicy `yaml:"dpop"`
	// TokenExchange: the other issuers whose JWTs this profile's clients
	// may exchange (RFC 8693), by name.
	TokenExchange ExchangeIssuers `yaml:"token-exchange"`
	// SecurityProfile: "fapi-2.0" turns on the FAPI 2.0 Security Profile
	// (SecurityProfileFAPI2); "" (the default) none.
	SecurityProfile string `yaml:"security-profile"`
	// UserinfoAudiences are audiences besides the issuer whose access
	// tokens the userinfo endpoint accepts (RFC 9068 §4: a resource server
	// checks that a token is meant for it).
	UserinfoAudiences []string `yaml:"userinfo-audiences"`

	// Authentication profiles.
	Authenticators map[string]*Authenticator `yaml:"authenticators"`
	Sessions       SessionPolicy             `yaml:"sessions"`
	// Templates is an optional directory that overrides the login UI:
	// login.html, error.html and static/ (see the README). Empty: the
	// built-in pages. A relative path is resolved against the node's
	// working directory.
	Templates string `yaml:"templates"`

	// User-management profiles: SCIM 2.0, guarded by access tokens of
	// TokenProfile whose aud names its issuer or one of Audiences, with
	// the read or write scope of Scopes; lists return at most MaxResults.
	TokenProfile string     `yaml:"token-profile"`
	Scopes       SCIMScopes `yaml:"scopes"`
	MaxResults   int        `yaml:"max-results"`
	Audiences    []string   `yaml:"audiences"`
	// Zones are other zones whose users the profile serves too, through
	// their data sources (a user's id names its home zone).
	Zones []string `yaml:"zones"`

	// Demo profiles: the page signs in with Client (a public client of
	// TokenProfile whose redirect URI is the page) as User, which the node
	// creates in its zone when it is missing.
	Client string   `yaml:"client"`
	User   DemoUser `yaml:"user"`
}

// DemoUser is the user a demo profile signs in as.
type DemoUser struct {
	Username string        `yaml:"username"`
	Password secret.String `yaml:"password"`
}

// SCIMScopes are the scopes a user-management profile requires: Read for
// GET and searches, Write for every change (it implies Read).
type SCIMScopes struct {
	Read  string `yaml:"read"`
	Write string `yaml:"write"`
	// Audit reads the zone's audit trail (GET <path>/AuditEvents).
	Audit string `yaml:"audit"`
}

// User-management defaults.
const (
	DefaultSCIMReadScope  = "scim:read"
	DefaultSCIMWriteScope = "scim:write"
	DefaultAuditScope     = "audit:read"
	DefaultSCIMMaxResults = 200
	MaxSCIMMaxResults     = 1000
)

// Access token formats.
const (
	FormatJWT    = "jwt"
	FormatOpaque = "opaque"
)

// AccessTokenPolicy: format jwt (RFC 9068) or opaque; default jwt, 5m.
type AccessTokenPolicy struct {
	Format   string   `yaml:"format"`
	Lifetime Duration `yaml:"lifetime"`
}

// RefreshTokenPolicy: default 720h, rotate true.
type RefreshTokenPolicy struct {
	Lifetime Duration `yaml:"lifetime"`
	Rotate   *bool    `yaml:"rotate"`
}

// IDTokenPolicy: default lifetime 5m.
type IDTokenPolicy struct {
	Lifetime Duration `yaml:"lifetime"`
}

// CodePolicy: authorization codes, default lifetime 1m.
type CodePolicy struct {
	Lifetime Duration `yaml:"lifetime"`
}

// PARPolicy: pushed authorization requests (RFC 9126). Lifetime is how
// long a request_uri stays usable (default 60s, at most 10m). Required
// refuses authorization requests of the profile's clients that were not
// pushed (RFC 9126 §5 require_pushed_authorization_requests); it needs
// the par endpoint.
type PARPolicy struct {
	Lifetime Duration `yaml:"lifetime"`
	Required bool     `yaml:"required"`
}

// DevicePolicy: device authorization requests (RFC 8628), default
// lifetime 10m, interval 5s.
type DevicePolicy struct {
	Lifetime Duration `yaml:"lifetime"`
	Interval Duration `yaml:"interval"`
}

// DPoPPolicy: DPoP (RFC 9449) for a token profile. Nonce makes the token
// and userinfo endpoints demand a server nonce in every proof (§8, §9);
// the nonces are derived from the signing key and the time, so every node
// of the profile issues and accepts the same ones.
type DPoPPolicy struct {
	Nonce bool `yaml:"nonce"`
}

// SecurityProfileFAPI2 is the FAPI 2.0 Security Profile: every
// authorization request pushed (PAR), PKCE S256, private_key_jwt client
// authentication, DPoP-bound tokens, iss in authorization responses,
// ES256, PS256 or EdDSA signatures, and codes that live at most 60 s.
// The loader refuses a profile or client that contradicts it.
const SecurityProfileFAPI2 = "fapi-2.0"

// DPoP modes of a client (clients.<name>.dpop).
const (
	// DPoPAllowed (the default): a proof binds the tokens; without one
	// they are bearer tokens.
	DPoPAllowed = "allowed"
	// DPoPRequired: every token request needs a proof (RFC 9449 §5).
	DPoPRequired = "required"
	// DPoPOff: a token request with a proof is refused.
	DPoPOff = "off"
)

// SessionPolicy: SSO sessions, default idle 1h, absolute 12h.
type SessionPolicy struct {
	IdleLifetime     Duration `yaml:"idle-lifetime"`
	AbsoluteLifetime Duration `yaml:"absolute-lifetime"`
}

// Authenticator is one way to sign in (type password or oidc).
type Authenticator struct {
	Name string   `yaml:"-"`
	Pos  Position `yaml:"-"`
	Type string   `yaml:"type"`

	// oidc: an external OpenID Connect IdP.
	Issuer       string        `yaml:"issuer"`
	ClientID     string        `yaml:"client-id"`
	ClientSecret secret.String `yaml:"client-secret"`
	Scopes       []string      `yaml:"scopes"`
	// DisplayName labels the "Sign in with …" button. Default: the name.
	DisplayName string `yaml:"display-name"`
	// Claims maps the partner's claims to the local account's.
	Claims ClaimMapping `yaml:"claims"`
	// Provisioning: existing (default; the mapped username must exist in
	// the zone) or jit (create the user at first sign-in, with no password).
	Provisioning string `yaml:"provisioning"`
	// AllowedDomains, when set, admits only partner users whose mapped
	// email is in one of these domains (and not marked unverified).
	AllowedDomains []string `yaml:"allowed-domains"`
	// RedirectURI is the callback registered at the partner. Default: the
	// scheme and host of the issuer of the token profile that signs in
	// here, + this profile's path + /oidc/<name>/callback.
	RedirectURI string `yaml:"redirect-uri"`

	// password: the cost of new password hashes and failed-login throttling.
	Argon2  Argon2Params  `yaml:"argon2"`
	Lockout LockoutPolicy `yaml:"lockout"`
}

// Provisioning modes of an oidc authenticator.
const (
	ProvisioningExisting = "existing"
	ProvisioningJIT      = "jit"
)

// ClaimMapping names, for each local claim, the partner claim it is read
// from. Defaults: username from preferred_username, every other claim from
// the partner claim of the same name.
type ClaimMapping struct {
	Username      string `yaml:"username"`
	Name          string `yaml:"name"`
	GivenName     string `yaml:"given_name"`
	FamilyName    string `yaml:"family_name"`
	Email         string `yaml:"email"`
	EmailVerified string `yaml:"email_verified"`
}

// Argon2Params is the argon2id cost of password hashes. Defaults: OWASP's
// minimum (19 MiB, 2 iterations, 1 lane). A stored hash made with other
// parameters is rehashed at the user's next successful login.
type Argon2Params struct {
	MemoryKiB   int `yaml:"memory-kib"`
	Iterations  int `yaml:"iterations"`
	Parallelism int `yaml:"parallelism"`
}

// LockoutPolicy throttles failed logins: an account with MaxFailures
// failures within Window (counted across nodes, from the audit log) is
// refused until the oldest of them leaves the window; a client IP with
// MaxFailuresPerIP failures within Window (counted per node) likewise.
// Defaults: 5 per account, 20 per IP, 15m.
type LockoutPolicy struct {
	MaxFailures      int      `yaml:"max-failures"`
	MaxFailuresPerIP int      `yaml:"max-failures-per-ip"`
	Window           Duration `yaml:"window"`
}

// Client auth methods (RFC 7591 names).
const (
	AuthSecretBasic   = "client_secret_basic"
	AuthSecretPost    = "client_secret_post"
	AuthPrivateKeyJWT = "private_key_jwt"
	AuthNone          = "none"
)

// Grant types.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantClientCredentials = "client_credentials"
	GrantRefreshToken      = "refresh_token"
	// GrantDeviceCode is the device authorization grant (RFC 8628 §3.4).
	GrantDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"
	// GrantTokenExchange is OAuth 2.0 Token Exchange (RFC 8693 §2.1).
	GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
)

// Client is an OAuth client registered in config. Config clients are a
// read-only layer rebuilt with each snapshot, never copied to a database.
type Client struct {
	Meta    `yaml:",inline"`
	Profile string        `yaml:"profile"`
	Secret  secret.String `yaml:"secret"`
	// TokenEndpointAuthMethod: default client_secret_basic when a secret is
	// set, none for public clients.
	TokenEndpointAuthMethod string `yaml:"token-endpoint-auth-method"`
	// PublicKeys are PEM public keys for private_key_jwt.
	PublicKeys             []string `yaml:"public-keys"`
	RedirectURIs           []string `yaml:"redirect-uris"`
	PostLogoutRedirectURIs []string `yaml:"post-logout-redirect-uris"`
	GrantTypes             []string `yaml:"grant-types"`
	Scopes                 []string `yaml:"scopes"`
	// Audiences the client may request (RFC 8707 resource / audience); the
	// first is the default audience of its access tokens.
	Audiences []string `yaml:"audiences"`
	// AccessTokens overrides the profile's policy for this client.
	AccessTokens AccessTokenPolicy `yaml:"access-tokens"`
	Consent      bool              `yaml:"consent"`
	// IntrospectAllTokens lets a resource server learn the claims of every
	// access token of its profile at introspection; without it a client
	// learns only those of tokens issued to it or naming it in aud
	// (RFC 7662 §4).
	IntrospectAllTokens bool `yaml:"introspect-all-tokens"`
	// LoopbackRedirectAnyPort: a native app's redirect URI on a loopback
	// IP literal (http://127.0.0.1/… or http://[::1]/…) matches whatever
	// port the app listens on (RFC 8252 §7.3); path and query still match
	// exactly.
	LoopbackRedirectAnyPort bool `yaml:"loopback-redirect-any-port"`
	// AllowedOrigins are the browser origins (scheme://host[:port]) that
	// may call the token, revocation and userinfo endpoints cross-origin
	// (CORS), e.g. a single-page app exchanging its code.
	AllowedOrigins []string `yaml:"allowed-origins"`
	// RequirePushedAuthorizationRequests: the client's authorization
	// requests must come through the par endpoint (RFC 9126 §6); a
	// profile that requires them for everyone overrides false.
	RequirePushedAuthorizationRequests bool `yaml:"require-pushed-authorization-requests"`
	// TokenExchange is what the client may do with the token-exchange
	// grant; required with it.
	TokenExchange *TokenExchangePolicy `yaml:"token-exchange"`
	// DPoP is allowed (default), required or off: whether the client's
	// token requests may, must or must not carry a DPoP proof (RFC 9449).
	DPoP string `yaml:"dpop"`
}

// ExchangeIssuers are a token profile's trusted issuers for token
// exchange.
type ExchangeIssuers struct {
	TrustedIssuers map[string]*TrustedIssuer `yaml:"trusted-issuers"`
}

// TrustedIssuer is another OAuth/OpenID issuer whose signed JWTs a client
// may present as a subject_token: verified with the keys at JWKSURI, and
// standing for the local user (in the profile's zone) whose username is
// the token's UsernameClaim (default preferred_username).
type TrustedIssuer struct {
	Name          string   `yaml:"-"`
	Pos           Position `yaml:"-"`
	Issuer        string   `yaml:"issuer"`
	JWKSURI       string   `yaml:"jwks-uri"`
	UsernameClaim string   `yaml:"username-claim"`
}

// TokenExchangePolicy says which of RFC 8693's two uses a client may make
// of the token-exchange grant (§1.1). Neither is on by default: each lets
// the client act for the users whose tokens it holds.
type TokenExchangePolicy struct {
	// Delegation: with an actor_token, a token for the subject that names
	// the actor in its act claim (§4.1), nested after the subject token's
	// own act. Needs JWT access tokens, which carry the claim.
	Delegation bool `yaml:"delegation"`
	// Impersonation: without an actor_token, a token for the subject that
	// is indistinguishable from one issued to the subject.
	Impersonation bool `yaml:"impersonation"`
	// TrustedIssuers names the profile's token-exchange.trusted-issuers
	// whose tokens this client may present; this issuer's own are always
	// accepted.
	TrustedIssuers []string `yaml:"trusted-issuers"`
}

// Duration is a time.Duration written as a Go duration string ("5m", "720h").
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText renders the duration for config render.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
