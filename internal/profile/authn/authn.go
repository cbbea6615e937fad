// Package authn is the authentication profile: the login page, the
// password authenticator with failed-login throttling, and the creation of
// SSO sessions (package session).
//
// The token profile's authorize endpoint sends a browser that must sign in
// to {path}/login?return_to=<the authorize request, as a relative URL>. A
// successful login creates the session, sets its cookie and answers 303 to
// return_to. return_to is accepted only when its path is the authorize
// endpoint of a token profile that names this profile as its
// authentication-profile, so the login can never redirect elsewhere.
//
// A Profile is built from one snapshot and never changes. A form rendered
// by one snapshot and posted to the next still works: everything the POST
// needs travels in the CSRF cookie and the form.
package authn

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/clientip"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/password"
	"github.com/keygate/keygate/internal/session"
	"github.com/keygate/keygate/internal/storage/model"
)

// Paths under the profile's path.
const (
	PathLogin  = "/login"
	PathStatic = "/static"
)

// Metric endpoint labels.
const (
	EndpointLogin  = "login"
	EndpointStatic = "static"
)

// Authentication context of a password login: acr is Keygate's name for
// single-factor password login; amr is RFC 8176's "pwd".
const (
	ACRPassword = "urn:keygate:acr:password"
	AMRPassword = "pwd"
)

// Deps are the long-lived dependencies of the profile, owned by the caller.
type Deps struct {
	Store  model.Store  // the role's zone's data source; nil: login answers "unavailable"
	Zone   string       // the role's zone: users are looked up in it
	Logger *slog.Logger // may be nil
	Now    func() time.Time
	// Metrics counts the audit events (sign-ins, lockouts); may be nil.
	Metrics audit.Counter
	// IPLimiter counts failures per client IP. nil: the profile makes its
	// own, which a reload resets; pass one that outlives served sets.
	IPLimiter *IPLimiter
	// ClientIP finds a request's client address for throttling and audit
	// events (KEYGATE_TRUSTED_PROXIES). nil: the connection's peer.
	ClientIP *clientip.Resolver
	// HTTPClient calls partner IdPs (oidc authenticators). nil: a client
	// with a 10s timeout.
	HTTPClient *http.Client
}

// Wrap returns a handler that runs before an endpoint's own (metrics).
type Wrap = func(endpoint string) fiber.Handler

// Profile is one authentication profile built from a snapshot.
type Profile struct {
	// csrfKey signs login form tokens (csrfKey).
	csrfKey []byte
	name    string
	path    string
	zone    string
	store   model.Store
	trail   audit.Trail // the zone's audit table and the log
	log     *slog.Logger
	now     func() time.Time
	ip      *IPLimiter
	ips     *clientip.Resolver // nil: the peer
	ui      *ui

	params  password.Params
	lockout struct {
		max, maxIP int
		window     time.Duration
	}
	policy    session.Policy
	authorize map[string]bool // paths of the authorize endpoints that may be return_to

	oidc      map[string]*oidcAuth // oidc authenticators by name
	oidcOrder []string             // their names, sorted

	dummyOnce sync.Once
	dummy     string // a hash verified for unknown users, so they cost the same
}

// New builds the profile from the snapshot.
func New(snap *config.Snapshot, p *config.Profile, deps Deps) (*Profile, error) {
	if snap == nil || p == nil {
		return nil, errors.New("authentication profile: nil profile or snapshot")
	}
	if p.Type != config.ProfileAuthentication {
		return nil, fmt.Errorf("profile %q is of type %q, not %q", p.Name, p.Type, config.ProfileAuthentication)
	}
	var pw *config.Authenticator
	var oidcs []*config.Authenticator
	for _, name := range slices.Sorted(maps.Keys(p.Authenticators)) {
		a := p.Authenticators[name]
		switch a.Type {
		case "password":
			if pw != nil {
				return nil, fmt.Errorf("authenticators.%s: a profile has at most one password authenticator (%q is the other)", name, pw.Name)
			}
			pw = a
		case "oidc":
			oidcs = append(oidcs, a)
		default:
			return nil, fmt.Errorf("authenticators.%s: type %q is not available in this version of keygate (available: password, oidc)", name, a.Type)
		}
	}
	if pw == nil {
		return nil, errors.New("authenticators: a password authenticator is required")
	}
	u, err := loadUI(p.Templates)
	if err != nil {
		return nil, err
	}
	prof := &Profile{
		name:      p.Name,
		path:      strings.TrimSuffix(p.Path, "/"),
		zone:      deps.Zone,
		store:     deps.Store,
		log:       deps.Logger,
		now:       deps.Now,
		ip:        deps.IPLimiter,
		ips:       deps.ClientIP,
		ui:        u,
		params:    password.FromConfig(pw.Argon2),
		policy:    session.Policy{Idle: p.Sessions.IdleLifetime.D(), Absolute: p.Sessions.AbsoluteLifetime.D()},
		authorize: map[string]bool{},
		oidc:      map[string]*oidcAuth{},
	}
	hc := deps.HTTPClient
	if hc == nil && len(oidcs) > 0 {
		hc = &http.Client{Timeout: oidcTimeout}
	}
	for _, a := range oidcs {
		redirect, err := oidcRedirect(snap, p, a)
		if err != nil {
			return nil, err
		}
		o, err := newOIDC(a, redirect, hc)
		if err != nil {
			return nil, err
		}
		prof.oidc[a.Name] = o
		prof.oidcOrder = append(prof.oidcOrder, a.Name)
	}
	prof.lockout.max = pw.Lockout.MaxFailures
	prof.lockout.maxIP = pw.Lockout.MaxFailuresPerIP
	prof.lockout.window = pw.Lockout.Window.D()
	if prof.lockout.max <= 0 {
		prof.lockout.max = config.DefaultLockoutMaxFailures
	}
	if prof.lockout.maxIP <= 0 {
		prof.lockout.maxIP = config.DefaultLockoutMaxFailuresPerIP
	}
	if prof.lockout.window <= 0 {
		prof.lockout.window = config.DefaultLockoutWindow
	}
	if prof.policy.Absolute <= 0 {
		prof.policy = session.Policy{Idle: config.DefaultSessionIdle, Absolute: config.DefaultSessionAbsolute}
	}
	if prof.log == nil {
		prof.log = slog.New(slog.DiscardHandler)
	}
	if prof.now == nil {
		prof.now = time.Now
	}
	if prof.ip == nil {
		prof.ip = NewIPLimiter()
	}
	prof.trail = audit.Trail{Store: prof.store, Zone: prof.zone, Logger: prof.log, Metrics: deps.Metrics, Now: prof.now}
	for _, tp := range snap.Profiles {
		if tp.Type == config.ProfileToken && tp.AuthenticationProfile == p.Name {
			prof.authorize[strings.TrimSuffix(tp.Path, "/")+"/authorize"] = true
			if slices.Contains(tp.Endpoints, config.EndpointDeviceAuthorization) {
				// The device verification page signs its users in here too.
				prof.authorize[strings.TrimSuffix(tp.Path, "/")+"/device"] = true
			}
		}
	}
	if prof.csrfKey, err = csrfKey(snap, p.Name); err != nil {
		return nil, err
	}
	return prof, nil
}

// csrfKey is the MAC key of login form tokens, derived from the private
// keys of the token profiles that sign in here, which every node of the
// profile shares: a form served by one node posts to another. Without
// such keys (a profile no token profile uses) it is one random key per
// process.
func csrfKey(snap *config.Snapshot, profile string) ([]byte, error) {
	var secret []byte
	for _, name := range slices.Sorted(maps.Keys(snap.Profiles)) {
		tp := snap.Profiles[name]
		if tp.Type != config.ProfileToken || tp.AuthenticationProfile != profile {
			continue
		}
		for _, kn := range tp.SigningKeys {
			if k := snap.Keys[kn]; k != nil {
				secret = append(secret, k.PrivateKey.Reveal()...)
				secret = append(secret, 0)
			}
		}
	}
	if len(secret) == 0 {
		processKeyOnce.Do(func() { _, _ = rand.Read(processKey[:]) })
		secret = processKey[:]
	}
	return hkdf.Key(sha256.New, secret, nil, "keygate login csrf v1", 32)
}

var (
	processKeyOnce sync.Once
	processKey     [32]byte
)

// clientIP is the request's client address, for per-IP throttling and
// audit events: the peer, or with trusted proxies the address they
// forwarded (package clientip). Never c.IP(): fiber's proxy handling
// would believe the leftmost X-Forwarded-For entry, which anyone can set.
func (p *Profile) clientIP(c *fiber.Ctx) string { return p.ips.ClientIP(c.Context()).String() }

// Name is the profile's config name.
func (p *Profile) Name() string { return p.name }

// Path is the mount path, without a trailing slash.
func (p *Profile) Path() string { return p.path }

// Mount registers the routes on r.
func (p *Profile) Mount(r fiber.Router) { p.MountWith(r, nil) }

// MountWith registers the routes on r, each behind wrap(endpoint) if wrap
// is not nil.
func (p *Profile) MountWith(r fiber.Router, wrap Wrap) {
	chain := func(endpoint string, h fiber.Handler) []fiber.Handler {
		if wrap == nil {
			return []fiber.Handler{h}
		}
		return []fiber.Handler{wrap(endpoint), h}
	}
	login := p.path + PathLogin
	r.Get(login, chain(EndpointLogin, p.getLogin)...)
	r.Post(login, chain(EndpointLogin, p.postLogin)...)
	r.All(login, chain(EndpointLogin, methodNotAllowed("GET, HEAD, POST"))...)
	r.Get(p.path+PathStatic+"/*", chain(EndpointStatic, p.serveStatic)...)
	if len(p.oidc) > 0 {
		r.Get(p.path+PathOIDC+"/:name/start", chain(EndpointOIDC, p.oidcStart)...)
		r.Get(p.path+PathOIDC+"/:name/callback", chain(EndpointOIDC, p.oidcCallback)...)
	}
}

func methodNotAllowed(allow string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderAllow, allow)
		return fiber.ErrMethodNotAllowed
	}
}

// validReturnTo reports whether rt is a relative URL of one of the
// authorize endpoints that sign in here: it must start with a single "/",
// carry no scheme, host, user, fragment, backslash or control character,
// and its path must be such an endpoint exactly.
func (p *Profile) validReturnTo(rt string) bool {
	if len(rt) < 2 || len(rt) > 8192 || rt[0] != '/' || rt[1] == '/' || rt[1] == '\\' {
		return false
	}
	for i := 0; i < len(rt); i++ {
		if c := rt[i]; c < 0x21 || c == 0x7f || c == '\\' || c >= 0x80 {
			return false
		}
	}
	u, err := url.Parse(rt)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || u.Fragment != "" || strings.Contains(rt, "#") {
		return false
	}
	if u.RawPath != "" && u.RawPath != u.Path {
		return false // an escaped path (%2F, %2e) is never the endpoint's
	}
	return p.authorize[u.Path]
}

// serveStatic serves a file of the UI's static directory.
func (p *Profile) serveStatic(c *fiber.Ctx) error {
	name := c.Params("*")
	f, ok := p.ui.static[name]
	if !ok || strings.Contains(name, "..") {
		return fiber.ErrNotFound
	}
	c.Set(fiber.HeaderContentType, f.contentType)
	c.Set(fiber.HeaderCacheControl, "public, max-age=300")
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	return c.Send(f.body)
}
