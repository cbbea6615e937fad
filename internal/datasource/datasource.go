// Package datasource owns a node's database pools across reloads.
//
// A served set built from a snapshot acquires the store of its zone's data
// source and releases it when the set is closed (after its last
// request). Pools are keyed by the data source's name and effective
// settings, so a reload that leaves a data source alone reuses its pool (no
// reconnect per reload), and one that changes it opens a new pool before the
// swap — an unreachable database fails the reload — while the old pool is
// closed when the last set using it releases it.
package datasource

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/storage/model"
)

// ErrClosed is returned by Acquire after Close.
var ErrClosed = errors.New("data source pools are closed")

// Options configure Pools.
type Options struct {
	// Migrate applies migrations when a pool is opened (KEYGATE_MIGRATE_ON_START).
	// Without it, a pool whose schema is older than this binary needs fails.
	Migrate bool
	Logger  *slog.Logger // nil: discard
	// Open opens a store; nil means Open. For tests.
	Open func(context.Context, *config.DataSource) (model.Store, error)
}

// Pools hands out reference-counted stores, one pool per data source
// setting. It is safe for concurrent use.
type Pools struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	pools  map[key]*pool
	closed bool
}

// key identifies a pool: the data source's name and every setting that
// shapes the connection. The URL is held only as a SHA-256, so the map
// never keeps a second copy of a password and equality is not a string
// compare of the secret.
type key struct {
	name, typ, path string
	url             [sha256.Size]byte
	maxConns        int
	timeout         config.Duration
}

func keyOf(ds *config.DataSource) key {
	k := key{name: ds.Name, typ: ds.Type, path: ds.Path, maxConns: ds.MaxConnections, timeout: ds.Timeout}
	if !ds.URL.IsZero() {
		k.url = sha256.Sum256([]byte(ds.URL.Reveal()))
	}
	return k
}

type pool struct {
	key   key
	refs  int           // guarded by Pools.mu
	ready chan struct{} // closed when store/err are set
	store model.Store
	err   error
}

// New returns empty pools.
func New(opts Options) *Pools {
	if opts.Open == nil {
		opts.Open = Open
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pools{opts: opts, log: log, pools: map[key]*pool{}}
}

// Acquire returns the store for ds and a release func (idempotent) that
// must be called once the caller is done with it. A data source already
// open with the same settings is shared; otherwise a new pool is opened
// (Open pings it) and migrated when Options.Migrate is set (a
// schema too old is otherwise only logged: readiness reports it, see
// Pools.CheckSchema). Errors name the data source,
// never its URL.
func (p *Pools) Acquire(ctx context.Context, ds *config.DataSource) (model.Store, func(), error) {
	if ds == nil {
		return nil, nil, errors.New("data source: none configured")
	}
	k := keyOf(ds)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, nil, fmt.Errorf("data source %s: %w", ds.Name, ErrClosed)
	}
	e := p.pools[k]
	if e == nil {
		e = &pool{key: k, refs: 1, ready: make(chan struct{})}
		p.pools[k] = e
		p.mu.Unlock()
		e.store, e.err = p.open(ctx, ds)
		close(e.ready)
		if e.err != nil {
			p.release(e)
			return nil, nil, e.err
		}
		p.log.Info("data source opened", "data_source", ds.Name, "type", ds.Type, "max_connections", ds.MaxConnections)
		return e.store, p.releaser(e), nil
	}
	e.refs++
	p.mu.Unlock()
	select {
	case <-e.ready:
	case <-ctx.Done():
		p.release(e)
		return nil, nil, fmt.Errorf("data source %s: %w", ds.Name, ctx.Err())
	}
	if e.err != nil {
		p.release(e)
		return nil, nil, e.err
	}
	if ds.Type == config.DataSourceSQLite {
		// A reload must not carry on with a file that was deleted under
		// the pool: its writes would go to a file nobody else can see.
		if err := e.store.Ping(ctx); errors.Is(err, model.ErrFileReplaced) {
			p.release(e)
			return nil, nil, fmt.Errorf("data source %s: %w", ds.Name, model.ErrFileReplaced)
		}
	}
	return e.store, p.releaser(e), nil
}

// open opens, then migrates or checks the schema.
func (p *Pools) open(ctx context.Context, ds *config.DataSource) (model.Store, error) {
	s, err := p.opts.Open(ctx, ds)
	if err != nil {
		return nil, err // Open names the data source
	}
	if p.opts.Migrate {
		if err = s.Migrate(ctx); err != nil {
			err = fmt.Errorf("data source %s: migrate: %w", ds.Name, err)
		}
	} else if v, verr := s.SchemaVersion(ctx); verr == nil && model.CheckSchemaVersion(v) != nil {
		// Not fatal: during a phased upgrade the node waits, not ready,
		// until `keygate migrate` has run (see Pools.CheckSchema).
		p.log.Warn("data source schema is too old for this binary; not ready until `keygate migrate` runs",
			"data_source", ds.Name, "applied", v, "needs", model.SchemaMin)
	}
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func (p *Pools) releaser(e *pool) func() {
	var once sync.Once
	return func() { once.Do(func() { p.release(e) }) }
}

// release drops one reference; the last one closes the pool.
func (p *Pools) release(e *pool) {
	p.mu.Lock()
	e.refs--
	last := e.refs == 0
	if last && p.pools[e.key] == e {
		delete(p.pools, e.key)
	}
	p.mu.Unlock()
	if last && e.store != nil {
		if err := e.store.Close(); err != nil {
			p.log.Error("closing data source", "data_source", e.key.name, "error", err)
		} else {
			p.log.Info("data source closed", "data_source", e.key.name)
		}
	}
}

// Open lists the names of the open pools, sorted (a name appears twice
// while an old and a new setting are both open). For status and tests.
func (p *Pools) Open() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var names []string
	for k, e := range p.pools {
		if e.store != nil || e.err == nil {
			names = append(names, k.name)
		}
	}
	sort.Strings(names)
	return names
}

// Close closes every pool, whether or not released (node shutdown, after
// the last served set is closed), and makes Acquire fail. Idempotent.
func (p *Pools) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	pools := p.pools
	p.pools = map[key]*pool{}
	inUse := map[*pool]int{}
	for _, e := range pools {
		inUse[e] = e.refs
	}
	p.mu.Unlock()
	var errs []error
	for _, e := range pools {
		<-e.ready
		if e.store == nil {
			continue
		}
		if inUse[e] > 0 {
			p.log.Warn("closing a data source still in use", "data_source", e.key.name, "references", inUse[e])
		}
		if err := e.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("data source %s: close: %w", e.key.name, err))
		}
	}
	return errors.Join(errs...)
}

// CheckSchema reports, naming the data source, whether st answers and
// holds a schema this binary can serve (readiness). The error is fit for
// /readyz: the driver's error, which may name hosts, is only logged.
func (p *Pools) CheckSchema(ctx context.Context, name string, st model.Store) error {
	if err := st.Ping(ctx); err != nil {
		switch {
		case errors.Is(err, model.ErrReadOnly), errors.Is(err, model.ErrFileReplaced):
			return fmt.Errorf("data source %s: %w", name, errors.Unwrap(err))
		}
		p.log.Warn("data source does not answer", "data_source", name, "error", err)
		return fmt.Errorf("data source %s does not answer", name)
	}
	v, err := st.SchemaVersion(ctx)
	if err != nil {
		p.log.Warn("data source does not answer", "data_source", name, "error", err)
		return fmt.Errorf("data source %s does not answer", name)
	}
	if err := model.CheckSchemaVersion(v); err != nil {
		return fmt.Errorf("data source %s: %w (run `keygate migrate`, or set KEYGATE_MIGRATE_ON_START=true)", name, err)
	}
	return nil
}
