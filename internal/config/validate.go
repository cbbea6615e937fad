package config

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/suggest"
)

// Defaults, applied inside Load; documented in the README.
const (
	DefaultAccessTokenLifetime  = 5 * time.Minute
	DefaultRefreshTokenLifetime = 720 * time.Hour
	DefaultIDTokenLifetime      = 5 * time.Minute
	DefaultCodeLifetime         = time.Minute
	DefaultPARLifetime          = time.Minute
	DefaultDeviceCodeLifetime   = 10 * time.Minute
	DefaultDeviceInterval       = 5 * time.Second
	DefaultSessionIdle          = time.Hour
	DefaultSessionAbsolute      = 12 * time.Hour
	DefaultPostgresConnections  = 10
	DefaultDataSourceTimeout    = 5 * time.Second
	// MinSecretLength: client secrets are random strings, not passwords;
	// short ones are guessable.
	MinSecretLength = 16
)

// MaxPARLifetime bounds a request_uri's life: RFC 9126 §2.2 expects a
// short one ("between 5 and 600 seconds").
const MaxPARLifetime = 10 * time.Minute

// profileKeys are the keys each profile type may set, beyond type, path, tags, enabled.
var profileKeys = map[string][]string{
	ProfileToken:          {"issuer", "authentication-profile", "signing-keys", "endpoints", "access-tokens", "refresh-tokens", "id-tokens", "authorization-codes", "pushed-authorization-requests", "device-codes", "dpop", "security-profile", "token-exchange", "userinfo-audiences"},
	ProfileAuthentication: {"authenticators", "sessions", "templates"},
	ProfileUserManagement: {"token-profile", "scopes", "max-results", "audiences", "zones"},
	ProfileDemo:           {"token-profile", "client", "user"},
}

var (
	profileTypes       = []string{ProfileToken, ProfileAuthentication, ProfileUserManagement, ProfileDemo}
	dataSourceTypes    = []string{DataSourceSQLite, DataSourcePostgres}
	algorithms         = []string{AlgES256, AlgRS256, AlgEdDSA}
	grantTypes         = []string{GrantAuthorizationCode, GrantClientCredentials, GrantRefreshToken, GrantDeviceCode, GrantTokenExchange}
	authMethods        = []string{AuthSecretBasic, AuthSecretPost, AuthPrivateKeyJWT, AuthNone}
	formats            = []string{FormatJWT, FormatOpaque}
	dpopModes          = []string{DPoPAllowed, DPoPRequired, DPoPOff}
	authenticatorTypes = []string{"password", "oidc"}
)

// checkSection checks a section's complete entries in name order, each
// with its record current (for positions and failed values).
func checkSection[T any](l *loader, section string, m map[string]T, check func(T)) {
	for _, name := range sortedKeys(m) {
		if l.complete(section, name) {
			l.cur = l.recs[section][name]
			check(m[name])
		}
	}
}

// validate applies defaults and checks every entry, with the references
// between entries. A value with a missing variable is not checked (the
// variable is its error, where the role uses the entry); everything else
// about the entry is, in every role and stage (see complete).
func (l *loader) validate() {
	r := &l.raw
	checkSection(l, "service-roles", r.ServiceRoles, l.checkRole)
	checkSection(l, "zones", r.Zones, l.checkZone)
	checkSection(l, "data-sources", r.DataSources, l.checkDataSource)
	checkSection(l, "keys", r.Keys, l.checkKey)
	checkSection(l, "profiles", r.Profiles, l.checkProfile)
	// Clients are many and each one's checks touch nothing of another's,
	// so they are checked in map order (errors are sorted at the end).
	recs := l.recs["clients"]
	for name, c := range r.Clients {
		if rec := recs[name]; !l.broken[rec.key] {
			l.cur = rec
			l.checkClient(c)
		}
	}
	l.cur = nil
}

// failedAt reports whether the value at path could not be decoded.
func (l *loader) failedAt(path string) bool {
	if l.global != nil {
		return l.global.failed[path]
	}
	return l.cur != nil && l.cur.failed[path]
}

// q quotes v, the value at path, for an error: the text as written when
// it came through a placeholder, never the value from the environment or
// a file.
func (l *loader) q(path, v string) string { return shown(l.expanded(), path, v) }

// isExpanded reports whether the value at path came through a placeholder.
func (l *loader) isExpanded(path string) bool {
	_, ok := l.expanded()[path]
	return ok
}

func (l *loader) expanded() map[string]string {
	switch {
	case l.global != nil:
		return l.global.expanded
	case l.cur != nil:
		return l.cur.expanded
	}
	return nil
}

// posAt returns where the value at path was written, if it was.
func (l *loader) posAt(path string) (Position, bool) {
	if l.global != nil {
		p, ok := l.global.pos[path]
		return p, ok
	}
	if l.cur == nil {
		return Position{}, false
	}
	return l.cur.posOf(path)
}

// complete reports whether an entry can be checked: every entry that
// decoded is, whether or not its variables are set here. A value with a
// missing variable is marked failed, so only the checks that need that
// value skip it; structure and references are checked everywhere, so a
// dangling reference is found in every stage, not only the one whose
// secrets happen to be set.
func (l *loader) complete(section, name string) bool {
	return !l.broken[section+"/"+name]
}

// at reports an error at the position of a key path, or of its closest
// written ancestor (a missing required key points at its entry).
func (l *loader) at(path, format string, args ...any) {
	if l.failedAt(path) {
		return // its decode error is already reported
	}
	p := path
	for {
		if pos, ok := l.posAt(p); ok {
			l.fail(pos, path, format, args...)
			return
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			l.fail(Position{File: l.opts.Dir}, path, format, args...)
			return
		}
		p = p[:i]
	}
}

func (l *loader) required(path, value string) bool {
	if value == "" {
		l.at(path, "is required")
		return false
	}
	return true
}

func (l *loader) oneOf(path, value string, allowed []string) bool {
	if slices.Contains(allowed, value) {
		return true
	}
	msg := fmt.Sprintf("%s is not one of %s", l.q(path, value), strings.Join(allowed, ", "))
	if s, ok := suggest.Closest(value, allowed); ok && !l.isExpanded(path) {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	l.at(path, "%s", msg)
	return false
}

func (l *loader) unique(path string, values []string) {
	seen := map[string]bool{}
	for i, v := range values {
		if seen[v] {
			p := fmt.Sprintf("%s[%d]", path, i)
			l.at(p, "%s is listed twice", l.q(p, v))
		}
		seen[v] = true
	}
}

// ref checks that name is an entry of section (and, if want != "", a profile
// of that type). A dropped entry explains why it is gone.
func (l *loader) ref(path, section, name, want string) {
	// The outcome depends on the reference alone (entries are not added,
	// dropped or broken during validation): remember the good ones.
	rk := refKey{section, name, want}
	if rk == l.lastRefOK || l.refOK[rk] { // thousands of clients name one profile
		return
	}
	before := len(l.errs)
	l.checkRef(path, section, name, want)
	if len(l.errs) == before && !l.failedAt(path) {
		if l.refOK == nil {
			l.refOK = map[refKey]bool{}
		}
		l.refOK[rk] = true
		l.lastRefOK = rk
	}
}

type refKey struct{ section, name, want string }

func (l *loader) checkRef(path, section, name, want string) {
	if name == "" { // single references are checked with required first; this is a list item
		l.at(path, "must name a %s, got an empty value", singular(section))
		return
	}
	if why, ok := l.dropped[section+"/"+name]; ok {
		l.at(path, "refers to %s %s, but %s", singular(section), l.q(path, name), why)
		return
	}
	var names func() []string
	exists := false
	switch section {
	case "zones":
		_, exists = l.raw.Zones[name]
		names = func() []string { return sortedKeys(l.raw.Zones) }
	case "data-sources":
		_, exists = l.raw.DataSources[name]
		names = func() []string { return sortedKeys(l.raw.DataSources) }
	case "keys":
		_, exists = l.raw.Keys[name]
		names = func() []string { return sortedKeys(l.raw.Keys) }
	case "profiles":
		var p *Profile
		p, exists = l.raw.Profiles[name]
		names = func() []string { return sortedKeys(l.raw.Profiles) }
		if exists && want != "" && p.Type != want && l.complete("profiles", name) {
			l.at(path, "refers to profile %s of type %s; it must be a %s profile", l.q(path, name), p.Type, want)
			return
		}
	}
	if exists {
		return
	}
	msg := fmt.Sprintf("refers to %s %s, which is not defined", singular(section), l.q(path, name))
	var all []string
	if names != nil && !l.isExpanded(path) {
		all = names()
	}
	if s, ok := suggest.Closest(name, all); ok {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	l.at(path, "%s", msg)
}

func singular(section string) string {
	return map[string]string{"zones": "zone", "data-sources": "data source", "keys": "key", "profiles": "profile"}[section]
}

func (l *loader) checkRole(r *ServiceRole) {
	path := "service-roles." + r.Name
	if l.required(path+".zone", r.Zone) {
		l.ref(path+".zone", "zones", r.Zone, "")
	}
	if len(r.Profiles) == 0 {
		l.at(path+".profiles", "must list at least one profile")
	}
	l.unique(path+".profiles", r.Profiles)
	paths := map[string]string{}
	for i, name := range r.Profiles {
		p := fmt.Sprintf("%s.profiles[%d]", path, i)
		if l.excluded["profiles/"+name] {
			continue // the stage drops it (the demo page, say): the role serves the rest
		}
		l.ref(p, "profiles", name, "")
		if prof, ok := l.raw.Profiles[name]; ok && prof.Path != "" {
			if other, clash := paths[prof.Path]; clash && other != name {
				l.at(p, "profile %q has the same path %s as profile %q; a role serves each path once", name, prof.Path, other)
			}
			paths[prof.Path] = name
		}
	}
}

func (l *loader) checkZone(z *Zone) {
	path := "zones." + z.Name + ".data-source"
	if l.required(path, z.DataSource) {
		l.ref(path, "data-sources", z.DataSource, "")
	}
}

func (l *loader) checkDataSource(ds *DataSource) {
	path := "data-sources." + ds.Name
	if !l.required(path+".type", ds.Type) || !l.oneOf(path+".type", ds.Type, dataSourceTypes) {
		return
	}
	switch ds.Type {
	case DataSourceSQLite:
		l.required(path+".path", ds.Path)
		if !ds.URL.IsZero() {
			l.at(path+".url", "is for postgres data sources; a sqlite data source takes path")
		}
		if ds.MaxConnections == 0 {
			ds.MaxConnections = 4
		}
	case DataSourcePostgres:
		if ds.URL.IsZero() {
			l.at(path+".url", "is required")
		} else if u, err := url.Parse(ds.URL.Reveal()); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			// Never echo the URL: it usually holds a password.
			l.at(path+".url", "must be a postgres:// or postgresql:// URL")
		}
		if ds.Path != "" {
			l.at(path+".path", "is for sqlite data sources; a postgres data source takes url")
		}
		if ds.MaxConnections == 0 {
			ds.MaxConnections = DefaultPostgresConnections
		}
	}
	if ds.MaxConnections < 0 {
		l.at(path+".max-connections", "must be positive")
	}
	if ds.Timeout == 0 {
		ds.Timeout = Duration(DefaultDataSourceTimeout)
	}
	switch {
	case ds.AuditRetention == 0:
		ds.AuditRetention = Duration(DefaultAuditRetention)
	case ds.AuditRetention < Duration(time.Hour):
		l.at(path+".audit-retention", "must be at least 1h, got %s", ds.AuditRetention.D())
	}
}

func (l *loader) checkKey(k *Key) {
	path := "keys." + k.Name
	if l.required(path+".algorithm", k.Algorithm) {
		l.oneOf(path+".algorithm", k.Algorithm, algorithms)
	}
	if k.PrivateKey.IsZero() {
		l.at(path+".private-key", "is required (a PEM private key)")
	}
}

func (l *loader) checkProfile(p *Profile) {
	path := "profiles." + p.Name
	if !l.required(path+".type", p.Type) || !l.oneOf(path+".type", p.Type, profileTypes) {
		return
	}
	for other, keys := range profileKeys {
		if other == p.Type {
			continue
		}
		for _, key := range keys {
			if slices.Contains(profileKeys[p.Type], key) {
				continue
			}
			if _, set := l.posAt(path + "." + key); set {
				l.at(path+"."+key, "is not a key of %s profiles (it belongs to %s profiles)", p.Type, other)
			}
		}
	}
	if l.required(path+".path", p.Path) {
		l.checkMountPath(path+".path", p.Path)
	}
	switch p.Type {
	case ProfileToken:
		l.checkTokenProfile(path, p)
	case ProfileAuthentication:
		if len(p.Authenticators) == 0 {
			l.at(path+".authenticators", "must define at least one authenticator")
		}
		for _, name := range sortedKeys(p.Authenticators) {
			l.checkAuthenticator(path+".authenticators."+name, p.Authenticators[name])
		}
		l.checkAuthnProfile(path, p)
		defaultDuration(&p.Sessions.IdleLifetime, DefaultSessionIdle)
		defaultDuration(&p.Sessions.AbsoluteLifetime, DefaultSessionAbsolute)
		if p.Sessions.IdleLifetime > p.Sessions.AbsoluteLifetime {
			l.at(path+".sessions.idle-lifetime", "is longer than absolute-lifetime (%s)", p.Sessions.AbsoluteLifetime)
		}
	case ProfileDemo:
		l.checkDemoProfile(path, p)
	case ProfileUserManagement:
		if l.required(path+".token-profile", p.TokenProfile) {
			l.ref(path+".token-profile", "profiles", p.TokenProfile, ProfileToken)
		}
		if p.Scopes.Read == "" {
			p.Scopes.Read = DefaultSCIMReadScope
		}
		if p.Scopes.Write == "" {
			p.Scopes.Write = DefaultSCIMWriteScope
		}
		if p.Scopes.Audit == "" {
			p.Scopes.Audit = DefaultAuditScope
		}
		switch {
		case p.MaxResults == 0:
			p.MaxResults = DefaultSCIMMaxResults
		case p.MaxResults < 1 || p.MaxResults > MaxSCIMMaxResults:
			l.at(path+".max-results", "must be between 1 and %d, got %d", MaxSCIMMaxResults, p.MaxResults)
		}
		l.unique(path+".zones", p.Zones)
		for i, z := range p.Zones {
			l.ref(fmt.Sprintf("%s.zones[%d]", path, i), "zones", z, "")
		}
		l.unique(path+".audiences", p.Audiences)
		for i, a := range p.Audiences {
			if u, err := url.Parse(a); err != nil || !u.IsAbs() {
				l.at(fmt.Sprintf("%s.audiences[%d]", path, i), "must be an absolute URI, got %s", l.q(fmt.Sprintf("%s.audiences[%d]", path, i), a))
			}
		}
	}
}

func (l *loader) checkMountPath(path, p string) {
	u, err := url.Parse(p)
	switch {
	case err != nil || !strings.HasPrefix(p, "/") || u.Path != p:
		l.at(path, "must be a URL path starting with /, got %s", l.q(path, p))
	case len(p) > 1 && strings.HasSuffix(p, "/"):
		l.at(path, "must not end with /, got %s", l.q(path, p))
	}
}

func (l *loader) checkTokenProfile(path string, p *Profile) {
	if l.required(path+".issuer", p.Issuer) {
		l.checkIssuer(path+".issuer", p.Issuer)
	}
	if len(p.SigningKeys) == 0 {
		l.at(path+".signing-keys", "must list at least one key (the first signs; all are published in JWKS)")
	}
	l.unique(path+".signing-keys", p.SigningKeys)
	for i, k := range p.SigningKeys {
		l.ref(fmt.Sprintf("%s.signing-keys[%d]", path, i), "keys", k, "")
	}
	if len(p.Endpoints) == 0 {
		l.at(path+".endpoints", "must list at least one endpoint (%s)", strings.Join(TokenEndpoints, ", "))
	}
	l.unique(path+".endpoints", p.Endpoints)
	for i, e := range p.Endpoints {
		l.oneOf(fmt.Sprintf("%s.endpoints[%d]", path, i), e, TokenEndpoints)
	}
	if i := slices.Index(p.Endpoints, EndpointPAR); i >= 0 && !slices.Contains(p.Endpoints, EndpointAuthorize) {
		l.at(fmt.Sprintf("%s.endpoints[%d]", path, i), "par needs the authorize endpoint too: pushed requests are used there (RFC 9126 §4)")
	}
	if p.AuthenticationProfile != "" {
		l.ref(path+".authentication-profile", "profiles", p.AuthenticationProfile, ProfileAuthentication)
	} else if slices.Contains(p.Endpoints, EndpointAuthorize) {
		l.at(path+".authentication-profile", "is required when the authorize endpoint is served")
	}
	l.unique(path+".userinfo-audiences", p.UserinfoAudiences)
	for i, a := range p.UserinfoAudiences {
		if a == "" {
			l.at(fmt.Sprintf("%s.userinfo-audiences[%d]", path, i), "must not be empty")
		}
	}
	l.checkAccessTokens(path+".access-tokens", &p.AccessTokens)
	if p.AccessTokens.Format == "" {
		p.AccessTokens.Format = FormatJWT
	}
	defaultDuration(&p.AccessTokens.Lifetime, DefaultAccessTokenLifetime)
	defaultDuration(&p.RefreshTokens.Lifetime, DefaultRefreshTokenLifetime)
	if p.RefreshTokens.Rotate == nil {
		rotate := true
		p.RefreshTokens.Rotate = &rotate
	}
	defaultDuration(&p.IDTokens.Lifetime, DefaultIDTokenLifetime)
	defaultDuration(&p.AuthorizationCodes.Lifetime, DefaultCodeLifetime)
	if p.AuthorizationCodes.Lifetime.D() > 10*time.Minute {
		// RFC 6749 §4.1.2: "A maximum authorization code lifetime of 10 minutes is RECOMMENDED."
		l.at(path+".authorization-codes.lifetime", "must be at most 10m (RFC 6749 §4.1.2)")
	}
	par := &p.PushedAuthorizationRequests
	defaultDuration(&par.Lifetime, DefaultPARLifetime)
	switch d := par.Lifetime.D(); {
	case d > MaxPARLifetime:
		l.at(path+".pushed-authorization-requests.lifetime", "must be at most 10m: a request_uri is short-lived (RFC 9126 §2.2), got %s", d)
	case d < time.Second:
		l.at(path+".pushed-authorization-requests.lifetime", "must be at least 1s (expires_in counts whole seconds), got %s", d)
	}
	if par.Required && !slices.Contains(p.Endpoints, EndpointPAR) {
		l.at(path+".pushed-authorization-requests.required", "needs the par endpoint: add par to endpoints")
	}
	l.checkDevice(path, p)
	l.checkSecurityProfile(path, p)
	for _, name := range slices.Sorted(maps.Keys(p.TokenExchange.TrustedIssuers)) {
		ti, at := p.TokenExchange.TrustedIssuers[name], path+".token-exchange.trusted-issuers."+name
		if l.required(at+".issuer", ti.Issuer) {
			l.checkIssuer(at+".issuer", ti.Issuer)
		}
		if l.required(at+".jwks-uri", ti.JWKSURI) {
			if u, err := url.Parse(ti.JWKSURI); err != nil || u.Host == "" || u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
				l.at(at+".jwks-uri", "must be an https URL (http for localhost only), got %s", l.q(at+".jwks-uri", ti.JWKSURI))
			}
		}
		if ti.Issuer == p.Issuer && ti.Issuer != "" {
			l.at(at+".issuer", "is this profile's own issuer, whose tokens are always accepted")
		}
	}
}

// checkSecurityProfile: a FAPI 2.0 profile (SecurityProfileFAPI2) serves
// par, signs with no RS256 key and issues codes for at most 60 s (FAPI 2.0
// Security Profile §5.3.2.1, §5.4.1); each error names the key in the way.
// Its clients are checked in checkClient.
func (l *loader) checkSecurityProfile(path string, p *Profile) {
	if p.SecurityProfile == "" || !l.oneOf(path+".security-profile", p.SecurityProfile, []string{SecurityProfileFAPI2}) {
		return
	}
	if !slices.Contains(p.Endpoints, EndpointPAR) {
		l.at(path+".endpoints", "must list par: security-profile fapi-2.0 pushes every authorization request (PAR)")
	}
	if i := slices.Index(p.Endpoints, EndpointDeviceAuthorization); i >= 0 {
		// Its user tokens come without a pushed request, PKCE or redirect.
		l.at(fmt.Sprintf("%s.endpoints[%d]", path, i), "device-authorization is outside security-profile fapi-2.0: serve it from another token profile")
	}
	for i, name := range p.SigningKeys {
		if k := l.raw.Keys[name]; k != nil && k.Algorithm == AlgRS256 {
			l.at(fmt.Sprintf("%s.signing-keys[%d]", path, i), "is key %q, an RS256 key: security-profile fapi-2.0 signs with ES256 or EdDSA (PS256 is not built)", name)
		}
	}
	if d := p.AuthorizationCodes.Lifetime.D(); d > time.Minute {
		l.at(path+".authorization-codes.lifetime", "must be at most 60s under security-profile fapi-2.0, got %s", d)
	}
}

// checkDevice: the device authorization endpoint needs the token endpoint
// (the device polls it) and a login for its verification page; the
// request lives minutes (RFC 8628 §3.2 leaves it to the server) and the
// interval is seconds.
func (l *loader) checkDevice(path string, p *Profile) {
	if i := slices.Index(p.Endpoints, EndpointDeviceAuthorization); i >= 0 {
		at := fmt.Sprintf("%s.endpoints[%d]", path, i)
		if !slices.Contains(p.Endpoints, EndpointToken) {
			l.at(at, "device-authorization needs the token endpoint too: the device polls it (RFC 8628 §3.4)")
		}
		if p.AuthenticationProfile == "" {
			l.at(at, "device-authorization needs an authentication-profile: the user signs in on the verification page")
		}
	}
	dev := &p.DeviceCodes
	defaultDuration(&dev.Lifetime, DefaultDeviceCodeLifetime)
	defaultDuration(&dev.Interval, DefaultDeviceInterval)
	if d := dev.Lifetime.D(); d < time.Minute || d > 30*time.Minute {
		l.at(path+".device-codes.lifetime", "must be between 1m and 30m: long enough to find a second screen, short enough that a guessed user code is useless, got %s", d)
	}
	if d := dev.Interval.D(); d < time.Second || d > time.Minute || d%time.Second != 0 {
		l.at(path+".device-codes.interval", "must be whole seconds from 1s to 1m (the device is told it in seconds), got %s", d)
	}
}

func (l *loader) checkAccessTokens(path string, a *AccessTokenPolicy) {
	if a.Format != "" {
		l.oneOf(path+".format", a.Format, formats)
	}
}

// checkIssuer: OpenID Connect Discovery §3 and RFC 8414 §2 want an https URL
// with no query or fragment; plain http is accepted for loopback hosts only.
func (l *loader) checkIssuer(path, issuer string) {
	u, err := url.Parse(issuer)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		l.at(path, "must be an absolute URL such as https://id.example.com/oauth/v2, got %s", l.q(path, issuer))
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(issuer, "#"):
		l.at(path, "must not have a query or fragment (RFC 8414 §2), got %s", l.q(path, issuer))
	case strings.HasSuffix(u.Path, "/"):
		l.at(path, "must not end with /, got %s", l.q(path, issuer))
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		l.at(path, "must use https (http is allowed for localhost only), got %s", l.q(path, issuer))
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (l *loader) checkAuthenticator(path string, a *Authenticator) {
	if !l.required(path+".type", a.Type) || !l.oneOf(path+".type", a.Type, authenticatorTypes) {
		return
	}
	switch a.Type {
	case "oidc":
		if l.required(path+".issuer", a.Issuer) {
			l.checkIssuer(path+".issuer", a.Issuer)
		}
		l.required(path+".client-id", a.ClientID)
		if a.ClientSecret.IsZero() {
			l.at(path+".client-secret", "is required")
		}
	case "password":
		for _, key := range []string{"issuer", "client-id", "client-secret", "scopes"} {
			if _, set := l.posAt(path + "." + key); set {
				l.at(path+"."+key, "is for oidc authenticators; a password authenticator has no %s", key)
			}
		}
	}
}

// checkClient checks a client: its own values once per decoded entry (the
// result, defaults applied, is kept with the entry and shared read-only by
// later loads that reuse it), its profile reference on every load.
func (l *loader) checkClient(c *Client) {
	path := "clients." + c.Name
	switch r := l.cur; {
	case l.global != nil || r == nil:
		l.checkClientValues(c)
	case r.checked:
		l.errs = appendCopies(l.errs, r.clientErrs)
	default:
		before := len(l.errs)
		l.checkClientValues(c)
		r.clientErrs = slices.Clone(l.errs[before:])
		r.client, r.checked = c, true
	}
	if c.Profile != "" {
		l.ref(path+".profile", "profiles", c.Profile, ProfileToken)
		// Checked on every load: it depends on the profile as well.
		if p := l.raw.Profiles[c.Profile]; c.RequirePushedAuthorizationRequests && p != nil && p.Type == ProfileToken &&
			l.complete("profiles", c.Profile) && !slices.Contains(p.Endpoints, EndpointPAR) {
			l.at(path+".require-pushed-authorization-requests", "needs profile %q to serve the par endpoint: add par to its endpoints", c.Profile)
		}
		if p := l.raw.Profiles[c.Profile]; p != nil && p.Type == ProfileToken && c.TokenExchange != nil {
			for i, name := range c.TokenExchange.TrustedIssuers {
				if _, ok := p.TokenExchange.TrustedIssuers[name]; !ok {
					l.at(fmt.Sprintf("%s.token-exchange.trusted-issuers[%d]", path, i), "names no trusted issuer of profile %q (its token-exchange.trusted-issuers)", c.Profile)
				}
			}
		}
		if p := l.raw.Profiles[c.Profile]; p != nil && p.Type == ProfileToken && p.SecurityProfile == SecurityProfileFAPI2 {
			// FAPI 2.0 §5.3.2.1: confidential clients with private_key_jwt
			// (mTLS is not built), tokens sender-constrained with DPoP.
			if c.TokenEndpointAuthMethod != AuthPrivateKeyJWT {
				l.at(path+".token-endpoint-auth-method", "must be private_key_jwt: profile %q has security-profile fapi-2.0, got %s", c.Profile, c.TokenEndpointAuthMethod)
			}
			if c.DPoP == DPoPOff {
				l.at(path+".dpop", "cannot be off: profile %q has security-profile fapi-2.0, whose tokens are all DPoP-bound", c.Profile)
			}
			for i, g := range c.GrantTypes {
				if g == GrantDeviceCode || g == GrantTokenExchange {
					l.at(fmt.Sprintf("%s.grant-types[%d]", path, i), "%s is outside security-profile fapi-2.0 of profile %q", g, c.Profile)
				}
			}
		}
	}
}

// checkClientValues checks what depends on the client alone and applies its
// defaults.
func (l *loader) checkClientValues(c *Client) {
	path := "clients." + c.Name
	l.required(path+".profile", c.Profile)
	if len(c.GrantTypes) == 0 {
		l.at(path+".grant-types", "must list at least one grant type (%s)", strings.Join(grantTypes, ", "))
	}
	l.unique(path+".grant-types", c.GrantTypes)
	for i, g := range c.GrantTypes {
		l.oneOf(fmt.Sprintf("%s.grant-types[%d]", path, i), g, grantTypes)
	}
	l.unique(path+".scopes", c.Scopes)
	for i, s := range c.Scopes {
		if !validScope(s) {
			sp := fmt.Sprintf("%s.scopes[%d]", path, i)
			l.at(sp, "%s is not a valid scope token (RFC 6749 §3.3)", l.q(sp, s))
		}
	}
	l.unique(path+".audiences", c.Audiences)

	if c.TokenEndpointAuthMethod == "" {
		switch {
		case !c.Secret.IsZero() || l.failedAt(path+".secret"):
			c.TokenEndpointAuthMethod = AuthSecretBasic
		case len(c.PublicKeys) > 0:
			c.TokenEndpointAuthMethod = AuthPrivateKeyJWT
		default:
			c.TokenEndpointAuthMethod = AuthNone
		}
	} else if !l.oneOf(path+".token-endpoint-auth-method", c.TokenEndpointAuthMethod, authMethods) {
		return
	}
	switch c.TokenEndpointAuthMethod {
	case AuthSecretBasic, AuthSecretPost:
		switch {
		case c.Secret.IsZero():
			l.at(path+".secret", "is required for %s", c.TokenEndpointAuthMethod)
		case len(c.Secret.Reveal()) < MinSecretLength:
			l.at(path+".secret", "is too short: use at least %d random characters", MinSecretLength)
		}
	case AuthPrivateKeyJWT:
		if len(c.PublicKeys) == 0 {
			l.at(path+".public-keys", "is required for private_key_jwt")
		}
	case AuthNone:
		if !c.Secret.IsZero() {
			l.at(path+".secret", "is set, but the client authenticates with none; remove it or choose a method")
		}
		if slices.Contains(c.GrantTypes, GrantClientCredentials) {
			l.at(path+".grant-types", "client_credentials needs a confidential client (a secret or public-keys)")
		}
		if slices.Contains(c.GrantTypes, GrantTokenExchange) {
			// RFC 8693 §5: anyone holding a leaked token could exchange it.
			l.at(path+".grant-types", "token exchange needs a confidential client (a secret or public-keys)")
		}
		if c.IntrospectAllTokens {
			// Introspection takes no public clients, so the key would only mislead.
			l.at(path+".introspect-all-tokens", "needs a confidential client (a secret or public-keys): introspection does not accept public clients")
		}
	}
	if c.RequirePushedAuthorizationRequests && !slices.Contains(c.GrantTypes, GrantAuthorizationCode) {
		l.at(path+".require-pushed-authorization-requests", "needs the authorization_code grant: only authorization requests are pushed")
	}
	if slices.Contains(c.GrantTypes, GrantAuthorizationCode) && len(c.RedirectURIs) == 0 {
		l.at(path+".redirect-uris", "is required for the authorization_code grant")
	}
	l.checkTokenExchange(path, c)
	if c.DPoP == "" {
		c.DPoP = DPoPAllowed
	} else {
		l.oneOf(path+".dpop", c.DPoP, dpopModes)
	}
	l.unique(path+".redirect-uris", c.RedirectURIs)
	for i, u := range c.RedirectURIs {
		l.checkRedirectURI(fmt.Sprintf("%s.redirect-uris[%d]", path, i), u)
	}
	if c.LoopbackRedirectAnyPort && !slices.ContainsFunc(c.RedirectURIs, isLoopbackIPURI) {
		l.at(path+".loopback-redirect-any-port", "needs a redirect URI on a loopback IP literal (http://127.0.0.1/… or http://[::1]/…); localhost does not qualify (RFC 8252 §8.3)")
	}
	l.unique(path+".allowed-origins", c.AllowedOrigins)
	for i, o := range c.AllowedOrigins {
		l.checkOrigin(fmt.Sprintf("%s.allowed-origins[%d]", path, i), o)
	}
	l.unique(path+".post-logout-redirect-uris", c.PostLogoutRedirectURIs)
	for i, u := range c.PostLogoutRedirectURIs {
		l.checkRedirectURI(fmt.Sprintf("%s.post-logout-redirect-uris[%d]", path, i), u)
	}
	l.checkAccessTokens(path+".access-tokens", &c.AccessTokens)
}

// checkTokenExchange: the token-exchange grant and its policy come
// together, and the policy allows at least one use (RFC 8693 §1.1).
func (l *loader) checkTokenExchange(path string, c *Client) {
	granted := slices.Contains(c.GrantTypes, GrantTokenExchange)
	te := c.TokenExchange
	switch {
	case granted && te == nil:
		l.at(path+".token-exchange", "is required with the %s grant: set delegation: true (with an actor_token, the token names the actor) or impersonation: true (without one), or both", GrantTokenExchange)
	case granted && !te.Delegation && !te.Impersonation:
		l.at(path+".token-exchange", "allows nothing: set delegation: true or impersonation: true")
	case !granted && te != nil:
		l.at(path+".token-exchange", "is set, but grant-types does not list %s", GrantTokenExchange)
	case te != nil && te.Delegation && c.AccessTokens.Format == FormatOpaque:
		l.at(path+".token-exchange.delegation", "needs JWT access tokens (the act claim is carried in the token); this client's access-tokens.format is opaque")
	}
}

// checkRedirectURI: absolute, no fragment (RFC 6749 §3.1.2); http only for
// loopback (RFC 9700 §2.1, RFC 8252 §7.3); private-use schemes for native apps.
func (l *loader) checkRedirectURI(path, raw string) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs():
		l.at(path, "must be an absolute URI, got %s", l.q(path, raw))
	case u.Fragment != "" || strings.Contains(raw, "#"):
		l.at(path, "must not contain a fragment (RFC 6749 §3.1.2), got %s", l.q(path, raw))
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		l.at(path, "must use https (http is allowed for loopback hosts only), got %s", l.q(path, raw))
	case (u.Scheme == "http" || u.Scheme == "https") && u.Host == "":
		l.at(path, "must name a host, got %s", l.q(path, raw))
	}
}

// checkOrigin: a browser origin as the Origin header sends it,
// scheme://host[:port] and nothing more (RFC 6454 §6.1), https or http on
// loopback; never "*", which would let every site read the responses.
func (l *loader) checkOrigin(path, o string) {
	u, err := url.Parse(o)
	switch {
	case o == "*":
		l.at(path, `must be one origin such as https://app.example.com, not "*"`)
	case err != nil || !u.IsAbs() || u.Host == "" || u.User != nil || u.Opaque != "":
		l.at(path, "must be an origin such as https://app.example.com, got %q", o)
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(o, "?#"):
		l.at(path, "must be an origin (scheme://host[:port]) without a path, query or fragment, got %q", o)
	case u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())):
		l.at(path, "must use https (http is allowed for loopback hosts only), got %q", o)
	}
}

// isLoopbackIPURI: an http URI whose host is 127.0.0.1 or [::1], the
// redirect URIs whose port loopback-redirect-any-port lets vary.
func isLoopbackIPURI(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "http" && u.User == nil && (u.Hostname() == "127.0.0.1" || u.Hostname() == "::1")
}

// validScope: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

func defaultDuration(d *Duration, def time.Duration) {
	if *d == 0 {
		*d = Duration(def)
	}
}

// sortedKeys is m's keys in order, for output and errors that must not
// depend on map iteration.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
