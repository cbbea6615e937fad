package node

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/keygate/keygate/internal/storage/model"
)

// The periodic storage GC: every KEYGATE_GC_INTERVAL the node deletes the
// expired rows of its zone's data source, through the store of whichever
// served set is current, so a reload that changes the data source moves
// the GC with it.

// gcGrace is how long after its expiry a row is deleted. Nodes of one zone
// share the data source but not a clock: a node whose clock runs ahead
// must not forget a revocation (or an assertion jti) that a node with a
// correct clock still needs to refuse a token (or a replay).
const gcGrace = 5 * time.Minute

// gcMinTimeout bounds one GC run from below (it is otherwise bounded by the
// interval, so runs never overlap).
const gcMinTimeout = time.Minute

// gcLoop is the running GC goroutine.
type gcLoop struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startGC starts the goroutine that runs Store.GC on the current set's
// data source every KEYGATE_GC_INTERVAL ±20% (0 disables). It ends with
// serving (Shutdown cancels serving's ctx), so a Shutdown that overtakes
// Serve between its hand-over and this call leaves no GC running.
func (n *Node) startGC(serving context.Context) {
	every := n.settings.GCInterval
	if every <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(serving)
	l := &gcLoop{cancel: cancel, done: make(chan struct{})}
	n.gc.Store(l)
	go func() {
		defer close(l.done)
		t := time.NewTimer(jitter(every, rand.Float64()))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			n.collect(ctx, every)
			t.Reset(jitter(every, rand.Float64()))
		}
	}()
}

// stopGC stops the GC goroutine (a run in flight is cancelled) and waits
// for it, so no GC uses a pool after Shutdown closes it.
func (n *Node) stopGC() {
	if l := n.gc.Swap(nil); l != nil {
		l.cancel()
		<-l.done
	}
}

// auditRetention is the current data source's audit-retention (0: none
// known, nothing pruned).
func (n *Node) auditRetention() time.Duration {
	cur := n.holder.Current()
	if cur == nil {
		return 0
	}
	if ds := cur.Snapshot().DataSources[cur.DataSource()]; ds != nil {
		return ds.AuditRetention.D()
	}
	return 0
}

// collect runs one GC on the current set's data source, counts it and
// logs it (info when it deleted rows, debug when there was nothing to do).
func (n *Node) collect(ctx context.Context, every time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, max(every, gcMinTimeout))
	defer cancel()
	start := time.Now()
	var stats model.GCStats
	ds, err := n.withStore(ctx, func(st model.Store) error {
		var err error
		if stats, err = st.GC(ctx, time.Now().Add(-gcGrace)); err != nil {
			return err
		}
		if retention := n.auditRetention(); retention > 0 {
			stats.AuditEvents, err = st.Audit().Prune(ctx, time.Now().Add(-retention))
		}
		return err
	})
	switch {
	case errors.Is(err, errNoDataSource):
		return
	case err != nil && errors.Is(ctx.Err(), context.Canceled):
		n.log.Debug("storage GC interrupted by shutdown", "data_source", ds, "deleted", stats.Total())
		return
	}
	n.metrics.StorageGC(ds, stats.Total(), err)
	attrs := []any{"data_source", ds, "deleted", stats.Total(),
		"access_tokens", stats.AccessTokens, "revocations", stats.Revocations, "assertions", stats.Assertions,
		"refresh_tokens", stats.RefreshTokens, "auth_codes", stats.AuthCodes, "sessions", stats.Sessions,
		"pushed_requests", stats.PushedRequests, "device_codes", stats.DeviceCodes,
		"nodes", stats.Nodes, "audit_events", stats.AuditEvents, "duration", time.Since(start).Round(time.Microsecond)}
	switch {
	case err != nil:
		// Storage errors name the data source, never its URL.
		n.log.Warn("storage GC failed; retrying at the next interval", append(attrs, "error", err.Error())...)
	case stats.Total() > 0:
		n.log.Info("storage GC", attrs...)
	default:
		n.log.Debug("storage GC", attrs...)
	}
}

// jitter spreads d by ±20% (u in [0,1)), so a fleet sharing a database
// does not GC in lockstep.
func jitter(d time.Duration, u float64) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*u))
}
