// Package served builds what a runtime node serves for one config
// snapshot, a Set (parsed keys, the role's profiles, one fiber app), and
// swaps Sets atomically under the public listener.
//
// A request acquires the current Set, is served wholly by it and
// releases it; a swap retires the previous Set, which is closed when
// its last request ends. See Holder.
package served

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/clientip"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/datasource"
	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/password"
	"github.com/keygate/keygate/internal/profile/authn"
	"github.com/keygate/keygate/internal/profile/demo"
	"github.com/keygate/keygate/internal/profile/token"
	"github.com/keygate/keygate/internal/profile/usermgmt"
	"github.com/keygate/keygate/internal/storage/model"
)

// Observer receives one call per request. internal/metrics implements it.
// It runs on the request path and must not block.
type Observer interface {
	ObserveRequest(profile, endpoint string, status int, d time.Duration)
}

// Metric labels for requests that match no endpoint: EndpointOther, with
// the profile whose path prefix matched, or with NoProfile.
const (
	EndpointOther = "other"
	NoProfile     = ""
)

// Deps are the long-lived dependencies a Set uses but does not own.
type Deps struct {
	Logger   *slog.Logger // nil: discard
	Observer Observer     // nil: no per-request observation
	// Stores hands out the store of the role's zone's data source. nil: the
	// set has no store (config validate, tests), Store returns nil.
	Stores *datasource.Pools
	// StoreTimeout bounds opening (and migrating) a new data source in
	// Build. 0: DefaultStoreTimeout.
	StoreTimeout time.Duration
	// Metrics counts tokens issued and OAuth errors (internal/metrics
	// implements it). nil: not counted.
	Metrics token.Metrics
	// Previous is the set being replaced (nil at start): unchanged
	// clients' derived state is reused from it. The reloader is the only
	// builder and swapper, so Previous cannot be closed during Build.
	Previous *Set
	// IPLimiter counts failed logins per client IP for authentication
	// profiles; pass one that outlives sets so a reload keeps the
	// counts. nil: each set has its own.
	IPLimiter *authn.IPLimiter
	// ClientIP finds a request's client address for authentication
	// profiles (KEYGATE_TRUSTED_PROXIES). nil: the connection's peer.
	ClientIP *clientip.Resolver
	// StandInKeys builds with a freshly generated key of the declared
	// algorithm for each key whose value a Lenient load left unresolved
	// (a vault secret), so the profiles that sign with it are still built
	// and checked. Only for checking a configuration, never to serve.
	StandInKeys bool
}

// DefaultStoreTimeout bounds opening a data source during Build.
const DefaultStoreTimeout = 30 * time.Second

// Set is everything built from one snapshot: parsed keys, profiles,
// one fiber.App with every profile of snap.Role mounted. It is immutable
// once built.
type Set struct {
	snap    *config.Snapshot
	log     *slog.Logger
	obs     Observer
	store   model.Store // nil without Deps.Stores
	dsName  string      // the data source of the role's zone
	handler fasthttp.RequestHandler
	closers []func() error // run in reverse order by Close
	// tokens are the token profiles by name, for the next Build to reuse
	// their per-client work (Deps.Previous).
	tokens map[string]*token.Profile

	// refs counts in-flight requests; retiredBit is set once a Holder has
	// swapped the set out. See Holder.
	refs      atomic.Int64
	closeOnce sync.Once
	closeErr  error
	done      chan struct{}
}

// retiredBit is the high bit of Set.refs (below the sign bit, so the
// count stays positive and readable in a debugger).
const retiredBit = int64(1) << 62

func newSet(snap *config.Snapshot, deps Deps) *Set {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Set{snap: snap, log: log, obs: deps.Observer, done: make(chan struct{}), tokens: map[string]*token.Profile{}}
}

// Build builds the set for snap.Role: the profiles listed in
// snap.ServiceRoles[snap.Role].Profiles, each mounted at its path.
// A user-management profile (SCIM, not built yet) is refused rather than
// silently not served. Build reports every problem it finds at once.
//
// With deps.Stores, Build acquires the store of the role's zone's data
// source: the pool already open when the data source is unchanged, else a
// new one, opened (and pinged) here, before any swap, so an unreachable
// database fails the reload. Close releases it. Without deps.Stores, Build
// has no side effects on the world (it opens no listener, file or
// connection), so "validate" is Build with empty Deps and without Swap.
//
// The error, if any, is config.Errors: each problem with the position and
// key path of the entry it concerns, sorted, as Load reports its own.
func Build(snap *config.Snapshot, deps Deps) (rt *Set, err error) {
	if snap == nil {
		return nil, errors.New("runtime: nil snapshot")
	}
	r := newSet(snap, deps)
	defer func() {
		if err != nil {
			// Release whatever was opened before the failure.
			if cerr := r.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
			rt = nil
		}
	}()

	role := snap.ServiceRoles[snap.Role]
	if role == nil {
		return nil, config.Errors{{Path: "service-roles", Msg: fmt.Sprintf("role %q is not defined", snap.Role)}}
	}
	var errs config.Errors
	if err := r.acquireStore(snap, role, deps); err != nil {
		errs = append(errs, asConfigErrors(err, config.Position{}, "")...)
	}
	var (
		profiles []*token.Profile
		authns   []*authn.Profile
		signers  = map[string]*keys.Signer{} // parsed once per snapshot, shared by profiles
		bad      = map[string]bool{}         // keys whose error is already reported
		userMgmt []*config.Profile
		demos    []*config.Profile
		paths    = map[string]string{} // mount path → profile, to catch shadowing
		// RFC 8414 metadata path → token profile: the host-root route of
		// each must be its own.
		metadataPaths = map[string]string{}
	)
	for i, name := range role.Profiles {
		p := snap.Profiles[name]
		if p == nil {
			errs = append(errs, at(role.Pos, fmt.Sprintf("service-roles.%s.profiles[%d]", snap.Role, i), fmt.Errorf("profile %q is not defined", name)))
			continue
		}
		switch p.Type {
		case config.ProfileToken, config.ProfileAuthentication, config.ProfileUserManagement, config.ProfileDemo:
		default:
			errs = append(errs, at(p.Pos, "profiles."+name+".type", fmt.Errorf("unknown profile type %q", p.Type)))
			continue
		}
		mount := strings.TrimSuffix(p.Path, "/")
		if other, dup := paths[mount]; dup {
			errs = append(errs, at(p.Pos, "profiles."+name+".path", fmt.Errorf("profile %q is already mounted at %q in role %q", other, p.Path, snap.Role)))
			continue
		}
		paths[mount] = name
		switch p.Type {
		case config.ProfileUserManagement:
			userMgmt = append(userMgmt, p) // built after the token profiles, whose tokens it accepts
			continue
		case config.ProfileDemo:
			demos = append(demos, p) // built after the token profiles, whose client it is
			continue
		}

		if p.Type == config.ProfileAuthentication {
			ap, err := authn.New(snap, p, authn.Deps{Store: r.store, Zone: role.Zone, Logger: r.log, Metrics: deps.Metrics, IPLimiter: deps.IPLimiter, ClientIP: deps.ClientIP})
			if err != nil {
				errs = append(errs, asConfigErrors(err, p.Pos, "profiles."+name)...)
				continue
			}
			authns = append(authns, ap)
			continue
		}
		ks, kerrs := keySet(snap, p, signers, bad, deps.StandInKeys)
		if len(kerrs) > 0 {
			errs = append(errs, kerrs...)
			continue
		}
		var prev *token.Profile
		if deps.Previous != nil {
			prev = deps.Previous.tokens[name]
		}
		tp, err := token.New(snap, p, ks, token.Deps{Store: r.store, Zone: role.Zone, Metrics: deps.Metrics, Logger: r.log, Previous: prev})
		if err != nil {
			errs = append(errs, asConfigErrors(err, p.Pos, "profiles."+name)...)
			continue
		}
		if mp := tp.MetadataPath(); mp != "" {
			if other, dup := metadataPaths[mp]; dup {
				errs = append(errs, at(p.Pos, "profiles."+name+".issuer", fmt.Errorf("its metadata URL %s is already profile %q's in role %q; give the issuers different paths", mp, other, snap.Role)))
				continue
			}
			metadataPaths[mp] = name
		}
		profiles = append(profiles, tp)
		r.tokens[name] = tp
	}
	var scims []*usermgmt.Profile
	for _, p := range userMgmt {
		tp := r.tokens[p.TokenProfile]
		if tp == nil {
			errs = append(errs, at(p.Pos, "profiles."+p.Name+".token-profile",
				fmt.Errorf("token profile %q must be served by service role %q too: its access tokens guard this profile", p.TokenProfile, snap.Role)))
			continue
		}
		others, oerr := r.zoneStores(snap, role, p, deps)
		if oerr != nil {
			errs = append(errs, oerr)
			continue
		}
		up, err := usermgmt.New(p, usermgmt.Deps{Store: r.store, Zone: role.Zone, Zones: others, Tokens: tp, Hash: password.ForRole(snap, role), Logger: r.log, Metrics: deps.Metrics})
		if err != nil {
			errs = append(errs, asConfigErrors(err, p.Pos, "profiles."+p.Name)...)
			continue
		}
		scims = append(scims, up)
	}
	var pages []*demo.Profile
	for _, p := range demos {
		if r.tokens[p.TokenProfile] == nil {
			errs = append(errs, at(p.Pos, "profiles."+p.Name+".token-profile",
				fmt.Errorf("token profile %q must be served by service role %q too: the demo page signs in there", p.TokenProfile, snap.Role)))
			continue
		}
		dp, err := demo.New(snap, p)
		if err != nil {
			errs = append(errs, asConfigErrors(err, p.Pos, "profiles."+p.Name)...)
			continue
		}
		pages = append(pages, dp)
	}
	if len(errs) > 0 {
		return nil, errs.Sorted()
	}
	r.ensureDemoUsers(pages, role, snap)
	r.handler = r.mount(appendMounted(appendMounted(appendMounted(appendMounted(nil, profiles), authns), scims), pages))
	return r, nil
}

// acquireStore takes the store of the role's zone's data source from
// deps.Stores and registers its release as a closer.
func (r *Set) acquireStore(snap *config.Snapshot, role *config.ServiceRole, deps Deps) error {
	zone := snap.Zones[role.Zone]
	if zone != nil {
		r.dsName = zone.DataSource
	}
	if deps.Stores == nil {
		return nil // config.Load has checked the references
	}
	if zone == nil {
		return at(role.Pos, "service-roles."+snap.Role+".zone", fmt.Errorf("zone %q is not defined", role.Zone))
	}
	ds := snap.DataSources[zone.DataSource]
	if ds == nil {
		return at(zone.Pos, "zones."+zone.Name+".data-source", fmt.Errorf("data source %q is not defined", zone.DataSource))
	}
	timeout := deps.StoreTimeout
	if timeout <= 0 {
		timeout = DefaultStoreTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, release, err := deps.Stores.Acquire(ctx, ds)
	if err != nil {
		// The error names the data source (never its URL); the position
		// points at its entry.
		if ds.Pos.File != "" {
			return fmt.Errorf("%s:%d:%d: %w", ds.Pos.File, ds.Pos.Line, ds.Pos.Column, err)
		}
		return err
	}
	r.store = st
	r.closers = append(r.closers, func() error { release(); return nil })
	return nil
}

// zoneStores acquires the stores of the other zones a user-management
// profile serves (none without deps.Stores: a check opens nothing).
func (r *Set) zoneStores(snap *config.Snapshot, role *config.ServiceRole, p *config.Profile, deps Deps) (map[string]model.Store, *config.Error) {
	out := map[string]model.Store{}
	for i, zn := range p.Zones {
		if zn == role.Zone {
			continue
		}
		z := snap.Zones[zn]
		if z == nil || snap.DataSources[z.DataSource] == nil {
			return nil, at(p.Pos, fmt.Sprintf("profiles.%s.zones[%d]", p.Name, i), fmt.Errorf("zone %q or its data source is not defined", zn))
		}
		if deps.Stores == nil {
			out[zn] = nil
			continue
		}
		timeout := deps.StoreTimeout
		if timeout <= 0 {
			timeout = DefaultStoreTimeout
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		st, release, err := deps.Stores.Acquire(ctx, snap.DataSources[z.DataSource])
		cancel()
		if err != nil {
			return nil, at(p.Pos, fmt.Sprintf("profiles.%s.zones[%d]", p.Name, i), fmt.Errorf("zone %s: %w", zn, err))
		}
		r.closers = append(r.closers, func() error { release(); return nil })
		out[zn] = st
	}
	return out, nil
}

// keySet parses the profile's signing keys (each key once per snapshot)
// and builds its set. With standIn, a key whose value is unresolved gets
// a generated stand-in (see Deps.StandInKeys).
func keySet(snap *config.Snapshot, p *config.Profile, signers map[string]*keys.Signer, bad map[string]bool, standIn bool) (*keys.Set, config.Errors) {
	var (
		errs config.Errors
		set  []*keys.Signer
	)
	for i, name := range p.SigningKeys {
		if s := signers[name]; s != nil {
			set = append(set, s)
			continue
		}
		path := fmt.Sprintf("profiles.%s.signing-keys[%d]", p.Name, i)
		if bad[name] {
			errs = append(errs, at(p.Pos, path, fmt.Errorf("key %q is invalid (see above)", name)))
			continue
		}
		k := snap.Keys[name]
		if k == nil {
			errs = append(errs, at(p.Pos, path, fmt.Errorf("key %q is not defined", name)))
			continue
		}
		var (
			s   *keys.Signer
			err error
		)
		if standIn && len(snap.UnresolvedEntry("keys."+name)) > 0 {
			s, err = keys.StandIn(k)
		} else {
			s, err = keys.Parse(k)
		}
		if err != nil {
			bad[name] = true
			// keys.Error names the field, so the path reads
			// keys.NAME.private-key: message.
			var ke *keys.Error
			if errors.As(err, &ke) {
				errs = append(errs, at(k.Pos, "keys."+name+"."+ke.Field, errors.New(ke.Msg)))
			} else {
				errs = append(errs, at(k.Pos, "keys."+name, err))
			}
			continue
		}
		signers[name] = s
		set = append(set, s)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	ks, err := keys.NewSet(set)
	if err != nil {
		return nil, config.Errors{at(p.Pos, "profiles."+p.Name+".signing-keys", err)}
	}
	return ks, nil
}

func at(pos config.Position, path string, err error) *config.Error {
	return &config.Error{Pos: pos, Path: path, Msg: err.Error()}
}

// asConfigErrors keeps the config errors in err (joined or single) as
// they are and places any other error at the entry (pos, path).
func asConfigErrors(err error, pos config.Position, path string) config.Errors {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out config.Errors
		for _, e := range joined.Unwrap() {
			out = append(out, asConfigErrors(e, pos, path)...)
		}
		return out
	}
	var ces config.Errors
	if errors.As(err, &ces) {
		return ces
	}
	var ce *config.Error
	if errors.As(err, &ce) {
		return config.Errors{ce}
	}
	if path == "" && pos.File == "" {
		return config.Errors{{Msg: err.Error()}}
	}
	return config.Errors{at(pos, path, err)}
}

// mounted is what every profile type offers the app: its name and path,
// and its routes behind a wrap that labels each endpoint.
type mounted interface {
	Name() string
	Path() string
	MountWith(r fiber.Router, wrap func(endpoint string) fiber.Handler)
}

func appendMounted[P mounted](to []mounted, ps []P) []mounted {
	for _, p := range ps {
		to = append(to, p)
	}
	return to
}

// mount builds the fiber app with every profile and returns its handler.
func (r *Set) mount(profiles []mounted) fasthttp.RequestHandler {
	app := fiber.New(fiber.Config{
		// Paths are exact: OAuth clients and discovery use them verbatim.
		CaseSensitive:         true,
		DisableStartupMessage: true,
		ErrorHandler:          r.handleError,
		// Server settings (timeouts, body limit, Server header) belong to
		// the public listener's fasthttp.Server: fiber's copies of them
		// only apply to app.Listen, which Keygate does not use.
	})
	for _, p := range profiles {
		name := p.Name()
		p.MountWith(app, func(endpoint string) fiber.Handler { return r.instrument(name, endpoint) })
	}
	// Unmatched paths: labelled with the profile whose path is the longest
	// matching prefix (registered longest first, since fiber matches in
	// order), then with NoProfile.
	sorted := slices.Clone(profiles)
	sort.SliceStable(sorted, func(i, j int) bool { return len(sorted[i].Path()) > len(sorted[j].Path()) })
	for _, p := range sorted {
		prefix := p.Path()
		if prefix == "" {
			prefix = "/"
		}
		app.Use(prefix, r.instrument(p.Name(), EndpointOther), notFound)
	}
	app.Use(r.instrument(NoProfile, EndpointOther), notFound)

	h := app.Handler() // builds the route tree now, not on the first request
	return func(ctx *fasthttp.RequestCtx) {
		if !knownMethod(ctx.Method()) {
			r.unknownMethod(ctx)
			return
		}
		h(ctx)
	}
}

func notFound(*fiber.Ctx) error { return fiber.ErrNotFound }

// knownMethod reports whether fiber routes method; fiber answers others
// with a plain-text 400 of its own.
func knownMethod(m []byte) bool {
	switch string(m) {
	case fasthttp.MethodGet, fasthttp.MethodHead, fasthttp.MethodPost, fasthttp.MethodPut, fasthttp.MethodDelete,
		fasthttp.MethodConnect, fasthttp.MethodOptions, fasthttp.MethodTrace, fasthttp.MethodPatch:
		return true
	}
	return false
}

// unknownMethod answers 501 (RFC 9110 §15.6.2) in JSON.
func (r *Set) unknownMethod(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	writeError(&ctx.Response, fasthttp.StatusNotImplemented)
	if r.obs != nil {
		r.obs.ObserveRequest(NoProfile, EndpointOther, fasthttp.StatusNotImplemented, time.Since(start))
	}
}

// instrument is the first handler of every route. profile and endpoint are
// captured once, at registration, so the request path does not allocate.
// It turns a returned error or a panic into the JSON error response here,
// not in fiber's error handler, so the observed status is the one sent.
func (r *Set) instrument(profile, endpoint string) fiber.Handler {
	obs := r.obs
	return func(c *fiber.Ctx) (err error) {
		var start time.Time
		if obs != nil {
			start = time.Now()
		}
		defer func() {
			if v := recover(); v != nil {
				r.log.Error("handler panicked", "profile", profile, "endpoint", endpoint, "panic", v, "stack", string(stackTrace()))
				err = fiber.ErrInternalServerError
			}
			if err != nil {
				err = r.handleError(c, err)
			}
			if obs != nil {
				obs.ObserveRequest(profile, endpoint, c.Response().StatusCode(), time.Since(start))
			}
		}()
		return c.Next()
	}
}

// Close releases what the set opened. It is safe on a partly built
// set and idempotent. A Holder closes the sets it retires; call
// Close yourself only on a set never installed in a Holder.
func (r *Set) Close() error {
	r.closeOnce.Do(func() {
		var errs []error
		for i := len(r.closers) - 1; i >= 0; i-- {
			errs = append(errs, r.closers[i]())
		}
		r.closeErr = errors.Join(errs...)
		if r.done != nil {
			close(r.done)
		}
	})
	return r.closeErr
}

// Done is closed when Close has finished: for a retired set, after
// its last request.
func (r *Set) Done() <-chan struct{} { return r.done }

// Store is the store of the role's zone's data source (nil when built
// without Deps.Stores). It is valid until the set is closed; readiness
// pings it.
func (r *Set) Store() model.Store { return r.store }

// DataSource names the data source of the role's zone (for /status).
func (r *Set) DataSource() string { return r.dsName }

// Snapshot is the snapshot the set was built from.
func (r *Set) Snapshot() *config.Snapshot { return r.snap }

// ensureDemoUsers creates each demo page's user in the role's zone when
// it is missing (the local stage's first start). A failure is logged and
// does not hold the configuration back: the page still shows, and the
// next reload tries again.
func (r *Set) ensureDemoUsers(pages []*demo.Profile, role *config.ServiceRole, snap *config.Snapshot) {
	if r.store == nil || len(pages) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, p := range pages {
		// The name and password came from the stage's env file: not logged.
		switch created, err := p.EnsureUser(ctx, r.store, role.Zone, password.ForRole(snap, role)); {
		case err != nil:
			r.log.Warn("demo: the demo user could not be made; the next reload tries again", "profile", p.Name(), "error", err.Error())
		case created:
			r.log.Info("demo: created the demo user", "profile", p.Name(), "zone", role.Zone)
		}
	}
}
