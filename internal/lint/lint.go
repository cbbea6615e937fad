// Package lint judges a loaded configuration for go-live: secrets written
// in the files, URLs that only make sense locally, entries that must not
// reach a stage, unused parts and weak settings. It is pure: it reads what
// config.Load gave and returns findings; it never reads files or the
// environment itself.
package lint

import (
	"cmp"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/placeholder"
)

// Severity of a finding: an error fails the lint, a warning does not.
type Severity string

const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Rule ids.
const (
	RuleLiteralSecret      = "literal-secret"
	RuleSecretDefault      = "secret-default"
	RuleHTTPURL            = "http-url"
	RuleLoopbackRedirect   = "loopback-redirect"
	RuleExcludedTag        = "excluded-tag"
	RuleUnusedEndpoint     = "unused-endpoint"
	RuleUnservedProfile    = "unserved-profile"
	RuleUnusedKey          = "unused-key"
	RuleWeakRSA            = "weak-rsa"
	RuleLongAccessToken    = "long-access-token"
	RuleRefreshRotationOff = "refresh-rotation-off"
	RuleConsentOff         = "consent-off"
	RuleDemoProfile        = "demo-profile"
	RuleFAPIRotation       = "fapi-refresh-rotation"
	RuleUnknownRule        = "unknown-rule"
)

// Rules lists every rule id.
var Rules = []string{RuleLiteralSecret, RuleSecretDefault, RuleHTTPURL, RuleLoopbackRedirect, RuleExcludedTag,
	RuleUnusedEndpoint, RuleUnservedProfile, RuleUnusedKey, RuleWeakRSA, RuleLongAccessToken,
	RuleRefreshRotationOff, RuleConsentOff, RuleDemoProfile, RuleFAPIRotation, RuleUnknownRule}

// Finding is one problem, at the value (or entry) it concerns.
type Finding struct {
	Pos      config.Position
	Path     string // key path, e.g. clients.web-app.secret
	Rule     string
	Severity Severity
	Msg      string
	// Silenced is the reason given in the entry's lint-ignore, if any; a
	// silenced finding is reported but does not fail the lint.
	Silenced string
}

func (f Finding) String() string {
	s := fmt.Sprintf("%s:%d:%d: %s: %s [%s]: %s", f.Pos.File, f.Pos.Line, f.Pos.Column, f.Path, f.Severity, f.Rule, f.Msg)
	if f.Silenced != "" {
		s += " (silenced: " + f.Silenced + ")"
	}
	return s
}

// Failing reports whether any finding is an error that is not silenced.
func Failing(fs []Finding) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return f.Severity == Error && f.Silenced == "" })
}

// Options say what stage the configuration is judged for.
type Options struct {
	// Stage is the stage's name; "local" and "dev" (or empty) are local.
	Stage string
	// ForbidTags are tags that must not reach the stage; nil means the
	// default: under-test in production, none elsewhere. Entries that
	// KEYGATE_EXCLUDE_TAGS dropped are not in the snapshot, so they pass.
	ForbidTags []string
}

// IsLocal reports whether a stage is a developer's machine, where http and
// loopback URLs are expected.
func IsLocal(stage string) bool { return stage == "" || stage == "local" || stage == "dev" }

// DefaultForbidTags is what must never reach a stage when --forbid-tags is
// not given: the demo page outside a local stage, and under-test entries
// in production.
func DefaultForbidTags(stage string) []string {
	switch {
	case stage == "production":
		return []string{"demo", "under-test"}
	case !IsLocal(stage):
		return []string{"demo"}
	}
	return nil
}

// Check judges every entry the files define, of every role (what
// config.LoadWritten returned).
func Check(w *config.Written, opts Options) []Finding {
	c := &checker{def: w, opts: opts}
	if c.opts.ForbidTags == nil {
		c.opts.ForbidTags = DefaultForbidTags(opts.Stage)
	}
	c.secrets()
	if !IsLocal(opts.Stage) {
		c.urls()
		c.tags()
		c.demo()
	}
	c.unused()
	c.weak()
	c.fapi()
	c.ignores()
	slices.SortFunc(c.out, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Pos.File, b.Pos.File), cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Column, b.Pos.Column), cmp.Compare(a.Path, b.Path), cmp.Compare(a.Rule, b.Rule))
	})
	return c.out
}

type checker struct {
	def  *config.Written
	opts Options
	out  []Finding
}

// add records a finding on the entry section/name (whose meta holds its
// lint-ignore) at the value path, or at the entry when path is not written.
func (c *checker) add(section string, m *config.Meta, path, rule string, sev Severity, format string, args ...any) {
	pos := m.Pos
	if v, ok := c.def.Value(section, m.Name, path); ok {
		pos = v.Pos
	}
	c.out = append(c.out, Finding{Pos: pos, Path: path, Rule: rule, Severity: sev,
		Msg: fmt.Sprintf(format, args...), Silenced: m.LintIgnore[rule]})
}

// secretField is one value of type secret.String.
type secretField struct {
	section string
	meta    *config.Meta
	path    string
}

func (c *checker) secretFields() []secretField {
	var fs []secretField
	for _, name := range sorted(c.def.Clients) {
		fs = append(fs, secretField{"clients", &c.def.Clients[name].Meta, "clients." + name + ".secret"})
	}
	for _, name := range sorted(c.def.Keys) {
		fs = append(fs, secretField{"keys", &c.def.Keys[name].Meta, "keys." + name + ".private-key"})
	}
	for _, name := range sorted(c.def.DataSources) {
		fs = append(fs, secretField{"data-sources", &c.def.DataSources[name].Meta, "data-sources." + name + ".url"})
	}
	for _, name := range sorted(c.def.Profiles) {
		p := c.def.Profiles[name]
		for _, a := range sorted(p.Authenticators) {
			fs = append(fs, secretField{"profiles", &p.Meta, "profiles." + name + ".authenticators." + a + ".client-secret"})
		}
	}
	return fs
}

// secrets: a secret belongs in the vault; one written in config.d (or as
// a placeholder's default, which is the same) is in every copy of the repo.
func (c *checker) secrets() {
	for _, f := range c.secretFields() {
		v, ok := c.def.Value(f.section, f.meta.Name, f.path)
		if !ok {
			continue // not set
		}
		switch {
		case !v.Placeholder:
			c.add(f.section, f.meta, f.path, RuleLiteralSecret, Error,
				"a secret field holds a literal value; secrets belong in the vault (write $VAR or ${file:PATH})")
		case hasDefault(v.Text):
			c.add(f.section, f.meta, f.path, RuleSecretDefault, Error,
				"a secret's placeholder has a default, so the secret is written in the file when the variable is unset; drop the default")
		}
	}
}

// hasDefault reports whether text resolves with no variable set and no file
// read: then a ${VAR:-default} supplies the value.
func hasDefault(text string) bool {
	if !strings.Contains(text, ":-") {
		return false
	}
	res, err := placeholder.Expand(text, nil, nil)
	return err == nil && len(res.Missing) == 0 && res.Value != ""
}

func (c *checker) urls() {
	for _, name := range sorted(c.def.Profiles) {
		p := c.def.Profiles[name]
		if p.Type == config.ProfileToken {
			c.httpURL("profiles", &p.Meta, "profiles."+name+".issuer", p.Issuer)
		}
		for _, a := range sorted(p.Authenticators) {
			if iss := p.Authenticators[a].Issuer; iss != "" {
				c.httpURL("profiles", &p.Meta, "profiles."+name+".authenticators."+a+".issuer", iss)
			}
		}
	}
	for _, name := range sorted(c.def.Clients) {
		cl := c.def.Clients[name]
		for i, u := range cl.RedirectURIs {
			path := fmt.Sprintf("clients.%s.redirect-uris[%d]", name, i)
			c.httpURL("clients", &cl.Meta, path, u)
			// A native app that opted in listens on the user's own loopback
			// (RFC 8252 §7.3); that is its real redirect, in every stage.
			if pu, err := url.Parse(u); err == nil && isLocalHost(pu.Hostname()) && !(cl.LoopbackRedirectAnyPort && isLoopbackIP(pu.Hostname())) {
				c.add("clients", &cl.Meta, path, RuleLoopbackRedirect, Error,
					"a redirect URI on a loopback or private address cannot be a real client outside a developer's machine")
			}
		}
		for i, u := range cl.PostLogoutRedirectURIs {
			c.httpURL("clients", &cl.Meta, fmt.Sprintf("clients.%s.post-logout-redirect-uris[%d]", name, i), u)
		}
	}
}

func (c *checker) httpURL(section string, m *config.Meta, path, u string) {
	if pu, err := url.Parse(u); err == nil && strings.EqualFold(pu.Scheme, "http") {
		c.add(section, m, path, RuleHTTPURL, Error, "an http URL outside a local stage sends codes and tokens in the clear; use https")
	}
}

var privateNets = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fc00::/7"),
}

func isLocalHost(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	return slices.ContainsFunc(privateNets, func(p netip.Prefix) bool { return p.Contains(ip) })
}

func isLoopbackIP(host string) bool {
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// demo: a demo profile signs anyone in as a user whose password is in
// the repository's env file; it is for a developer's machine only.
func (c *checker) demo() {
	for _, name := range sorted(c.def.Profiles) {
		// One tagged with a forbidden tag is excluded-tag's finding.
		if p := c.def.Profiles[name]; p.Type == config.ProfileDemo && !slices.ContainsFunc(p.Tags, c.forbidden) {
			c.add("profiles", &p.Meta, "profiles."+name+".type", RuleDemoProfile, Error,
				"a demo profile must not reach stage %s (its user's password is in the repository); tag it demo and add demo to KEYGATE_EXCLUDE_TAGS there", c.opts.Stage)
		}
	}
}

func (c *checker) forbidden(tag string) bool { return slices.Contains(c.opts.ForbidTags, tag) }

func (c *checker) tags() {
	if len(c.opts.ForbidTags) == 0 {
		return
	}
	check := func(section string, m *config.Meta) {
		for i, t := range m.Tags {
			if slices.Contains(c.opts.ForbidTags, t) {
				c.add(section, m, fmt.Sprintf("%s.%s.tags[%d]", section, m.Name, i), RuleExcludedTag, Error,
					"tag %q must not reach stage %s; add it to KEYGATE_EXCLUDE_TAGS there", t, c.opts.Stage)
			}
		}
	}
	for _, name := range sorted(c.def.Clients) {
		check("clients", &c.def.Clients[name].Meta)
	}
	for _, name := range sorted(c.def.Profiles) {
		check("profiles", &c.def.Profiles[name].Meta)
	}
}

func (c *checker) unused() {
	served := map[string]bool{}
	for _, r := range c.def.ServiceRoles {
		for _, p := range r.Profiles {
			served[p] = true
		}
	}
	signs := map[string]bool{}
	for _, name := range sorted(c.def.Profiles) {
		p := c.def.Profiles[name]
		for _, k := range p.SigningKeys {
			signs[k] = true
		}
		if !served[name] {
			c.add("profiles", &p.Meta, "profiles."+name, RuleUnservedProfile, Warning, "no service role serves this profile")
		}
		if i := slices.Index(p.Endpoints, config.EndpointAuthorize); p.Type == config.ProfileToken && i >= 0 {
			code := false
			for _, cl := range c.def.Clients {
				code = code || cl.Profile == name && slices.Contains(cl.GrantTypes, config.GrantAuthorizationCode)
			}
			if !code {
				c.add("profiles", &p.Meta, fmt.Sprintf("profiles.%s.endpoints[%d]", name, i), RuleUnusedEndpoint, Warning,
					"the profile serves authorize but none of its clients has the authorization_code grant")
			}
		}
	}
	for _, name := range sorted(c.def.Keys) {
		if !signs[name] {
			c.add("keys", &c.def.Keys[name].Meta, "keys."+name, RuleUnusedKey, Warning, "no profile lists this key in signing-keys")
		}
	}
}

func (c *checker) weak() {
	for _, name := range sorted(c.def.Keys) {
		k := c.def.Keys[name]
		if k.Algorithm != config.AlgRS256 {
			continue
		}
		// Only a key whose value resolved here: a vault's key is judged
		// where it is mounted.
		bits := rsaBits(k.PrivateKey.Reveal())
		path := "keys." + name + ".private-key"
		// The loader already refuses RSA keys under 2048 bits.
		if bits > 0 && bits < 3072 {
			c.add("keys", &k.Meta, path, RuleWeakRSA, Warning, "an RSA key of %d bits is below the 3072 bits recommended beyond 2030", bits)
		}
	}
	for _, name := range sorted(c.def.Profiles) {
		p := c.def.Profiles[name]
		if p.Type != config.ProfileToken {
			continue
		}
		if d := p.AccessTokens.Lifetime.D(); d > time.Hour {
			c.add("profiles", &p.Meta, "profiles."+name+".access-tokens.lifetime", RuleLongAccessToken, Warning,
				"access tokens living %s outlast a revocation that resource servers checking JWTs offline cannot see; keep them at 1h or less", d)
		}
		// Under FAPI 2.0 no rotation is the advice (fapi).
		if r := p.RefreshTokens.Rotate; r != nil && !*r && p.SecurityProfile != config.SecurityProfileFAPI2 {
			c.add("profiles", &p.Meta, "profiles."+name+".refresh-tokens.rotate", RuleRefreshRotationOff, Warning,
				"without rotation a stolen refresh token works until it expires and its reuse goes unnoticed")
		}
	}
	for _, name := range sorted(c.def.Clients) {
		cl := c.def.Clients[name]
		if d := cl.AccessTokens.Lifetime.D(); d > time.Hour {
			c.add("clients", &cl.Meta, "clients."+name+".access-tokens.lifetime", RuleLongAccessToken, Warning,
				"access tokens living %s outlast a revocation that resource servers checking JWTs offline cannot see; keep them at 1h or less", d)
		}
		c.consent(name, cl)
	}
}

// fapi: a FAPI 2.0 profile's refresh tokens are bound to their client
// (client authentication, DPoP), and FAPI 2.0 §5.3.2.1 asks that they not
// rotate: a client that loses a refresh response would lose the grant,
// and reuse detection would end it. Keygate rotates by default.
func (c *checker) fapi() {
	for _, name := range sorted(c.def.Profiles) {
		p := c.def.Profiles[name]
		if p.Type != config.ProfileToken || p.SecurityProfile != config.SecurityProfileFAPI2 {
			continue
		}
		if r := p.RefreshTokens.Rotate; r == nil || *r {
			c.add("profiles", &p.Meta, "profiles."+name+".refresh-tokens.rotate", RuleFAPIRotation, Warning,
				"security-profile fapi-2.0 asks that refresh tokens not rotate (they are bound to their client); set refresh-tokens.rotate: false")
		}
	}
}

// consent: a client redirecting to another host than its issuer looks like
// a third party, whose users should see what it asks for.
func (c *checker) consent(name string, cl *config.Client) {
	p := c.def.Profiles[cl.Profile]
	if cl.Consent || p == nil || len(cl.RedirectURIs) == 0 {
		return
	}
	iss, err := url.Parse(p.Issuer)
	if err != nil || iss.Hostname() == "" {
		return
	}
	for i, u := range cl.RedirectURIs {
		pu, err := url.Parse(u)
		if err != nil || pu.Hostname() == "" || strings.EqualFold(pu.Hostname(), iss.Hostname()) {
			continue
		}
		if ip := net.ParseIP(pu.Hostname()); ip != nil && ip.IsLoopback() {
			continue // a native app on the user's machine
		}
		c.add("clients", &cl.Meta, fmt.Sprintf("clients.%s.redirect-uris[%d]", name, i), RuleConsentOff, Warning,
			"the client redirects to another host than the issuer and has consent: false; a third-party client should ask users for consent")
		return
	}
}

// ignores: a misspelt rule id in lint-ignore silences nothing, silently.
func (c *checker) ignores() {
	c.def.EachMeta(func(section string, m *config.Meta) {
		for _, rule := range sorted(m.LintIgnore) {
			if !slices.Contains(Rules, rule) {
				c.add(section, m, section+"."+m.Name+".lint-ignore."+rule, RuleUnknownRule, Warning,
					"lint-ignore names rule %q, which does not exist (rules: %s)", rule, strings.Join(Rules, ", "))
			}
		}
	})
}

// rsaBits is the size of a PEM RSA private key, or 0 if it is not one.
func rsaBits(pemText string) int {
	b, _ := pem.Decode([]byte(pemText))
	if b == nil {
		return 0
	}
	if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
		return k.N.BitLen()
	}
	if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		if rk, ok := k.(*rsa.PrivateKey); ok {
			return rk.N.BitLen()
		}
	}
	return 0
}

// sorted is m's keys in order, for output and errors that must not
// depend on map iteration.
func sorted[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
