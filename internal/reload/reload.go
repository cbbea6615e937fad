// Package reload owns the swap: one goroutine turns change hints (fsnotify,
// the periodic check, SIGHUP) into "load, build, swap", so a node never
// serves a half-loaded or invalid configuration.
package reload

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/served"
	"github.com/keygate/keygate/internal/watch"
)

// Builder turns a snapshot into a served set (served.Build with the node's deps).
type Builder func(*config.Snapshot) (*served.Set, error)

// Metrics is what the reloader reports; internal/metrics implements it.
type Metrics interface {
	ReloadSucceeded(hash, version, role string, d time.Duration)
	ReloadFailed(d time.Duration)
	ReloadUnchanged()
}

// Status is the reload state shown by /status. It never holds a secret:
// config errors are written without secret values by construction.
type Status struct {
	Role          string    `json:"role"`
	Zone          string    `json:"zone"`
	ConfigHash    string    `json:"config_hash"`
	ConfigVersion string    `json:"config_version"`
	LoadedAt      time.Time `json:"loaded_at"`
	LastAttemptAt time.Time `json:"last_attempt_at"`
	LastResult    string    `json:"last_result"` // success | failure | unchanged
	LastError     string    `json:"last_error,omitempty"`
	LastTrigger   string    `json:"last_trigger,omitempty"`
	Reloads       int64     `json:"reloads"`
	Failures      int64     `json:"failures"`
}

// Reloader loads and swaps configurations. Only its Run goroutine (or a
// direct Reload call in tests) touches the holder.
type Reloader struct {
	opts    config.Options
	holder  *served.Holder
	build   Builder
	metrics Metrics
	log     *slog.Logger
	// OnLoaded is told the non-config inputs of each new snapshot, so the
	// watcher can follow env files and ${file:} targets.
	onLoaded func(*config.Snapshot)
	status   atomic.Pointer[Status]
	// cache keeps decoded config files between reloads; nil once Run ended.
	cache atomic.Pointer[config.Cache]
}

// Config wires a Reloader.
type Config struct {
	Load     config.Options
	Holder   *served.Holder
	Build    Builder
	Metrics  Metrics
	Logger   *slog.Logger
	OnLoaded func(*config.Snapshot)
}

// New returns a reloader; call Start for the first load.
func New(c Config) *Reloader {
	r := &Reloader{opts: c.Load, holder: c.Holder, build: c.Build, metrics: c.Metrics, log: c.Logger, onLoaded: c.OnLoaded}
	// Kept for the node's life (dropped when Run ends): a reload decodes
	// again only the files that changed, or whose variables or ${file:}
	// targets did.
	cache := r.opts.Cache
	if cache == nil {
		cache = config.NewCache()
	}
	r.cache.Store(cache)
	r.status.Store(&Status{Role: c.Load.Role})
	return r
}

// Start performs the first load. An invalid config at start-up is fatal for
// the caller: it returns every error and installs nothing.
func (r *Reloader) Start() error {
	res, err := r.Reload("start")
	if err != nil {
		return err
	}
	if res != Success {
		return errors.New("reload: no configuration loaded")
	}
	return nil
}

// Result of one reload attempt.
type Result string

const (
	Success   Result = "success"
	Failure   Result = "failure"
	Unchanged Result = "unchanged"
)

// Reload checks the inputs and, if they changed, loads, builds and swaps.
// On failure the current set keeps serving.
func (r *Reloader) Reload(trigger string) (Result, error) {
	start := time.Now()
	cur := r.holder.Current()
	if cur != nil {
		fp, err := config.Fingerprint(r.opts.Dir, r.opts.EnvFiles, cur.Snapshot())
		if err == nil && fp == cur.Snapshot().Hash {
			if r.status.Load().LastResult == string(Failure) {
				// A broken edit was reverted to what is being served: the
				// config on disk is good again, so clear the failure.
				r.metrics.ReloadSucceeded(cur.Snapshot().Hash, Version(cur.Snapshot()), cur.Snapshot().Role, time.Since(start))
				r.record(trigger, Success, cur.Snapshot(), nil)
				return Success, nil
			}
			r.metrics.ReloadUnchanged()
			r.record(trigger, Unchanged, nil, nil)
			return Unchanged, nil
		}
		// A fingerprint error (a file vanished mid-swap) falls through to a
		// full load, which reports it properly if it persists.
	}
	opts := r.opts
	opts.Cache = r.cache.Load()
	snap, err := config.Load(opts)
	var next *served.Set
	if err == nil {
		next, err = r.build(snap)
	}
	d := time.Since(start)
	if err != nil {
		r.metrics.ReloadFailed(d)
		r.record(trigger, Failure, nil, err)
		if cur != nil { // at start-up the caller reports the errors and exits
			r.log.Error("configuration not loaded; still serving the last good one",
				"trigger", trigger, "error", err.Error(), "duration", d)
		}
		return Failure, err
	}
	r.holder.Swap(next)
	r.metrics.ReloadSucceeded(snap.Hash, Version(snap), snap.Role, d)
	r.record(trigger, Success, snap, nil)
	if r.onLoaded != nil {
		r.onLoaded(snap)
	}
	r.log.Info("configuration loaded", "trigger", trigger, "hash", snap.Hash[:12], "role", snap.Role, "duration", d)
	return Success, nil
}

// Version names a snapshot for humans: the bundle version (from bundle.json)
// when the directory is a published bundle, else the short content hash.
func Version(s *config.Snapshot) string {
	if s.BundleVersion != "" {
		return s.BundleVersion
	}
	return s.Hash[:12]
}

func (r *Reloader) record(trigger string, res Result, snap *config.Snapshot, err error) {
	prev := r.status.Load()
	next := *prev
	next.LastAttemptAt = time.Now().UTC()
	next.LastResult = string(res)
	next.LastTrigger = trigger
	switch res {
	case Success:
		next.Reloads++
		next.LastError = ""
		next.ConfigHash = snap.Hash
		next.ConfigVersion = Version(snap)
		next.LoadedAt = next.LastAttemptAt
		next.Role = snap.Role
		next.Zone = snap.ServiceRoles[snap.Role].Zone
	case Failure:
		next.Failures++
		next.LastError = err.Error()
	}
	r.status.Store(&next)
}

// Status returns the current reload status (a copy).
func (r *Reloader) Status() Status { return *r.status.Load() }

// Run reloads on every change hint and SIGHUP until ctx is done. Hints are
// coalesced by the watcher; this goroutine is the only writer of the holder.
func (r *Reloader) Run(ctx context.Context, changes <-chan watch.Reason, hup <-chan os.Signal) {
	defer r.cache.Store(nil) // the node is stopping: free the decoded files
	for {
		var trigger string
		select {
		case <-ctx.Done():
			return
		case reason, ok := <-changes:
			if !ok {
				changes = nil // watcher closed; SIGHUP still works
				continue
			}
			trigger = string(reason)
		case <-hup:
			trigger = "sighup"
		}
		r.Reload(trigger) //nolint:errcheck // failures are logged, counted and shown in /status
	}
}
