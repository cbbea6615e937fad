// Package node assembles a runtime node: the reloader, the watcher, the
// public listener serving the current served set, and the ops listener. It is
// what `keygate runtime` runs, and what in-process tests and benchmarks start.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/bundle"
	"github.com/keygate/keygate/internal/clientip"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/datasource"
	"github.com/keygate/keygate/internal/httpframe"
	"github.com/keygate/keygate/internal/metrics"
	"github.com/keygate/keygate/internal/ops"
	"github.com/keygate/keygate/internal/profile/authn"
	"github.com/keygate/keygate/internal/reload"
	"github.com/keygate/keygate/internal/served"
	"github.com/keygate/keygate/internal/settings"
	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/watch"
)

// Node is one runtime node.
type Node struct {
	settings settings.Settings
	log      *slog.Logger
	metrics  *metrics.Metrics
	holder   *served.Holder
	pools    *datasource.Pools
	reloader *reload.Reloader
	watcher  *watch.Watcher
	public   *fasthttp.Server
	ops      *ops.Server
	hup      chan os.Signal
	done     chan struct{} // closed when the reloader goroutine ends

	mu       sync.Mutex // guards the Serve/Shutdown hand-over below
	closing  bool
	stop     context.CancelFunc
	publicLn net.Listener
	// heartbeat writes the cluster heartbeat row (heartbeat.go).
	heartbeat heartbeatSlot
	// gc is the periodic storage GC (gc.go), set by Serve, taken by Shutdown.
	gc atomic.Pointer[gcLoop]
}

// New loads the configuration and builds the first served set, opening (and,
// with KEYGATE_MIGRATE_ON_START, migrating) its data source. An invalid
// configuration or an unreachable data source returns every error and
// starts nothing.
func New(s settings.Settings, environ []string, log *slog.Logger) (_ *Node, err error) {
	n := &Node{
		settings: s,
		log:      log,
		metrics:  metrics.New(),
		holder:   &served.Holder{},
		pools:    datasource.New(datasource.Options{Migrate: s.MigrateOnStart, Logger: log}),
		hup:      make(chan os.Signal, 1),
		done:     make(chan struct{}),
	}
	defer func() {
		if err != nil {
			n.holder.Swap(nil)
			_ = n.pools.Close()
		}
	}()
	verify, err := bundleVerifier(s.BundleVerifyKeyFile)
	if err != nil {
		return nil, err
	}
	// Settings are validated by settings.Load; this reports a Settings
	// built in code.
	clientIPs, err := clientip.New(s.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("%sTRUSTED_PROXIES: %w", settings.Prefix, err)
	}
	if len(s.TrustedProxies) > 0 {
		log.Info("client addresses of logins come from X-Forwarded-For when the peer is a trusted proxy", "trusted_proxies", s.TrustedProxies)
	}
	// One per-IP login limiter for the node's life, so a reload keeps its counts.
	deps := served.Deps{Logger: log, Observer: n.metrics, Stores: n.pools, Metrics: n.metrics, IPLimiter: authn.NewIPLimiter(), ClientIP: clientIPs}
	n.reloader = reload.New(reload.Config{
		Load: config.Options{
			Dir:         s.ConfigDir,
			EnvFiles:    s.EnvFiles,
			Environ:     environ,
			Role:        s.ServiceRole,
			ExcludeTags: s.ExcludeTags,
			FileDirs:    s.FileDirs,
			Verify:      verify,
		},
		Holder: n.holder,
		Build: func(snap *config.Snapshot) (*served.Set, error) {
			d := deps
			d.Previous = n.holder.Current() // only the reloader builds and swaps
			return served.Build(snap, d)
		},
		Metrics:  n.metrics,
		Logger:   log,
		OnLoaded: n.follow,
	})
	// Watch before the first load, so a change made during it is not missed.
	w, err := watch.New(s.ConfigDir, watch.Options{Debounce: s.ReloadDebounce, Poll: s.ReloadPoll, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("watch config directory: %w", err)
	}
	n.watcher = w
	if err := n.reloader.Start(); err != nil {
		w.Close()
		return nil, err
	}
	n.public = &fasthttp.Server{
		Handler:               httpframe.Handler(n.holder.Serve),
		ErrorHandler:          httpframe.ErrorHandler,
		ReadBufferSize:        httpframe.HeaderLimit,
		Name:                  "keygate",
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           2 * time.Minute,
		MaxRequestBodySize:    64 << 10, // OAuth requests are small; refuse large bodies early
		NoDefaultServerHeader: true,
		NoDefaultDate:         false,
		Logger:                fasthttpLogger{log},
	}
	n.ops = ops.New(n.metrics.Registry(), n.ready, n.status)
	n.metrics.Ready(func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), ops.ReadyTimeout)
		defer cancel()
		return n.ready(ctx) == nil
	})
	return n, nil
}

// follow tells the watcher about the snapshot's env files and ${file:}
// targets, so a rotated Kubernetes Secret reloads the node too.
func (n *Node) follow(snap *config.Snapshot) {
	if n.watcher == nil || snap == nil {
		return
	}
	if err := n.watcher.SetExtra(snap.Inputs); err != nil {
		n.log.Warn("cannot watch config inputs; the periodic check still covers them", "error", err)
	}
}

// Serve serves on the given listeners until Shutdown. It returns when both
// listeners have stopped.
func (n *Node) Serve(public, opsLn net.Listener) error {
	ctx, cancel := context.WithCancel(context.Background())
	n.mu.Lock()
	if n.closing {
		// Shutdown came first: serve nothing.
		n.mu.Unlock()
		cancel()
		return errors.Join(public.Close(), opsLn.Close())
	}
	n.stop, n.publicLn = cancel, public
	if n.settings.NodeIDFromHost {
		// Two nodes on one host must not share a heartbeat row: the
		// default id is the host name and the public listener's port.
		if _, port, err := net.SplitHostPort(public.Addr().String()); err == nil {
			n.settings.NodeID += ":" + port
		}
	}
	n.mu.Unlock()
	go func() {
		defer close(n.done)
		n.reloader.Run(ctx, n.watcher.Changes(), n.hup)
	}()
	n.startHeartbeat()
	n.startGC(ctx)
	errc := make(chan error, 2)
	go func() { errc <- n.public.Serve(public) }()
	go func() { errc <- n.ops.Serve(opsLn) }()
	n.log.Info("runtime node serving", "public", public.Addr().String(), "ops", opsLn.Addr().String(),
		"role", n.settings.ServiceRole, "config_dir", n.settings.ConfigDir)
	n.announce(public.Addr(), opsLn.Addr())
	err := <-errc
	if err2 := <-errc; err == nil {
		err = err2
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closing {
		return nil // a listener closed by Shutdown is not a serving error
	}
	return err
}

// Reload asks for a reload now, as SIGHUP does.
func (n *Node) Reload() {
	select {
	case n.hup <- os.Interrupt: // the value is ignored; the channel is a one-slot trigger
	default:
	}
}

// Shutdown stops accepting, lets in-flight requests finish (within ctx),
// then stops the reloader and watcher, closes the last served set and, once it
// has drained (or ctx is done), the data source pools.
func (n *Node) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	n.closing = true
	stop, publicLn := n.stop, n.publicLn
	n.mu.Unlock()
	err := n.public.ShutdownWithContext(ctx)
	if publicLn != nil {
		// fasthttp only closes listeners its Serve has registered; one that
		// Serve has not reached yet would keep accepting.
		_ = publicLn.Close()
	}
	err = errors.Join(err, n.ops.Shutdown(ctx))
	if stop != nil {
		stop()
		<-n.done
	}
	// Both use the pools: stop them before the last served set and the pools close.
	n.stopGC()
	n.stopHeartbeat(ctx)
	err = errors.Join(err, n.watcher.Close())
	if old := n.holder.Swap(nil); old != nil {
		n.log.Debug("closing the last runtime")
		select {
		case <-old.Done():
		case <-ctx.Done():
			n.log.Warn("requests still in flight at the shutdown deadline; closing the data sources under them")
		}
	}
	return errors.Join(err, n.pools.Close())
}

// errNoDataSource: no set is loaded, or its role has no store.
var errNoDataSource = errors.New("no data source")

// withStore runs fn with the store of the current set's data source and
// returns the data source's name. Holder.Current takes no reference on the
// set, so fn holds one on the pool instead, taken through the Pools the
// set took its own from; it is kept only if that set was still
// current afterwards, i.e. the pool taken is the live one and not one a
// swap has retired (and Acquire reopened). A reload cannot close the store
// under fn.
func (n *Node) withStore(ctx context.Context, fn func(model.Store) error) (string, error) {
	for {
		cur := n.holder.Current()
		if cur == nil || cur.Store() == nil {
			return "", errNoDataSource
		}
		snap := cur.Snapshot()
		role := snap.ServiceRoles[snap.Role]
		if role == nil || snap.Zones[role.Zone] == nil {
			return "", errNoDataSource
		}
		name := snap.Zones[role.Zone].DataSource
		ds := snap.DataSources[name]
		if ds == nil {
			return "", errNoDataSource
		}
		st, release, err := n.pools.Acquire(ctx, ds)
		if err != nil {
			return name, err
		}
		if n.holder.Current() != cur {
			release() // swapped meanwhile: use the new set's store
			if err := ctx.Err(); err != nil {
				return name, err
			}
			continue
		}
		defer release()
		return name, fn(st)
	}
}

// Status is what /status shows.
type Status struct {
	reload.Status
	DataSource string `json:"data_source,omitempty"` // its name; the URL is never shown
	NodeID     string `json:"node_id"`
	ConfigDir  string `json:"config_dir"`
	Version    string `json:"version"`
	Schema     int    `json:"schema_supported"`
	ServingFor string `json:"serving_for"`
}

// Version is the binary's version, set by cmd/keygate.
var Version = "dev"

func (n *Node) status() any {
	st := n.reloader.Status()
	since := ""
	if !st.LoadedAt.IsZero() {
		since = time.Since(st.LoadedAt).Round(time.Second).String()
	}
	dir, _ := filepath.Abs(n.settings.ConfigDir)
	ds := ""
	if cur := n.holder.Current(); cur != nil {
		ds = cur.DataSource()
	}
	return Status{Status: st, DataSource: ds, NodeID: n.settings.NodeID, ConfigDir: dir, Version: Version,
		Schema: config.SchemaVersion, ServingFor: since}
}

// ready: a snapshot is loaded and its data source answers within ctx (the
// ops listener's readiness timeout) with a schema this binary can serve.
func (n *Node) ready(ctx context.Context) error {
	for {
		cur := n.holder.Current()
		if cur == nil {
			return errors.New("no configuration loaded")
		}
		st := cur.Store()
		if st == nil {
			return nil
		}
		// The error text is shown on /readyz: it names the data source
		// only (drivers may echo connection details).
		err := n.pools.CheckSchema(ctx, cur.DataSource(), st)
		if err == nil {
			return nil
		}
		// Holder.Current takes no reference: a swap may have closed the
		// pool under the check. Only the current set's answer counts.
		if n.holder.Current() != cur && ctx.Err() == nil {
			continue
		}
		return err
	}
}

// StatusSnapshot returns the current status (for tests).
func (n *Node) StatusSnapshot() reload.Status { return n.reloader.Status() }

type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Warn(fmt.Sprintf(format, args...), "component", "http")
}

// bundleVerifier is the load hook of a node with KEYGATE_BUNDLE_VERIFY_KEY_FILE:
// every load (start and reload) must find a bundle signed by that key whose
// files are exactly the ones loaded; nil without the setting (plain file drops).
func bundleVerifier(keyFile string) (func([]config.File, []byte) error, error) {
	if keyFile == "" {
		return nil, nil
	}
	pub, err := bundle.LoadPublicKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("KEYGATE_BUNDLE_VERIFY_KEY_FILE: %w", err)
	}
	return bundle.Verifier(pub), nil
}
