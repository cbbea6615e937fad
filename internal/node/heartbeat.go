package node

// Heartbeats: every KEYGATE_HEARTBEAT_INTERVAL a runtime node writes a row
// about itself (model.NodeStatus) to its zone's data source, which the admin
// node reads for GET /admin/v1/cluster. Runtime nodes never call the admin
// node; the database is the only channel.

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/reload"
	"github.com/keygate/keygate/internal/storage/model"
)

// DefaultHeartbeatInterval applies when Settings.HeartbeatInterval is zero
// (settings built in code rather than by settings.Load).
const DefaultHeartbeatInterval = 5 * time.Second

// HeartbeatTTL is how many intervals a heartbeat row stays fresh: a node
// whose row expired has missed two beats in a row.
const HeartbeatTTL = 3

// Heartbeat states, in Details["state"].
const (
	StateServing  = "serving"
	StateStopping = "stopping"
)

// maxErrorSummary bounds the last reload error copied into a heartbeat.
const maxErrorSummary = 300

// statusCheckPeriod is how often the heartbeat goroutine looks at the
// reloader's status (an atomic load) to beat at once after a reload.
const statusCheckPeriod = 100 * time.Millisecond

// heartbeater owns the heartbeat goroutine of one node.
type heartbeater struct {
	n        *Node
	log      *slog.Logger
	interval time.Duration
	started  time.Time
	stop     chan struct{}
	done     chan struct{}
	failing  bool // only the goroutine (then Stop, after it ended) touches it
	// instance tells this run of the node from another process that
	// writes heartbeats under the same id; conflict: one was seen at the
	// last beat.
	instance string
	conflict bool
}

// heartbeatSlot holds a node's heartbeater: Serve sets it, Shutdown
// (another goroutine) takes it.
type heartbeatSlot struct{ p atomic.Pointer[heartbeater] }

// startHeartbeat starts the goroutine that writes a heartbeat at once,
// then every interval and after each reload (success or failure). Stop it
// with stopHeartbeat.
func (n *Node) startHeartbeat() {
	iv := n.settings.HeartbeatInterval
	if iv <= 0 {
		iv = DefaultHeartbeatInterval
	}
	h := &heartbeater{n: n, log: n.log.With("component", "heartbeat"), interval: iv,
		started: time.Now().UTC(), stop: make(chan struct{}), done: make(chan struct{}), instance: model.NewID()}
	n.heartbeat.p.Store(h)
	go h.run()
}

// stopHeartbeat stops the goroutine and writes a last heartbeat that marks
// the node stopping and already expired, so the cluster view shows the node
// gone at once instead of after HeartbeatTTL intervals. Call it before the
// last served set and the data source pools are closed.
func (n *Node) stopHeartbeat(ctx context.Context) {
	h := n.heartbeat.p.Swap(nil)
	if h == nil {
		return
	}
	close(h.stop)
	<-h.done
	now := time.Now().UTC()
	h.write(ctx, h.row(n.reloader.Status(), now, now, StateStopping))
}

func (h *heartbeater) run() {
	defer close(h.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-h.stop:
			cancel() // a write in flight gives up at shutdown
		case <-ctx.Done():
		}
	}()

	beat := func() reload.Status {
		st := h.n.reloader.Status()
		now := time.Now().UTC()
		h.write(ctx, h.row(st, now, now.Add(HeartbeatTTL*h.interval), StateServing))
		return st
	}
	last := beat()
	every := time.NewTicker(h.interval)
	defer every.Stop()
	check := time.NewTicker(min(statusCheckPeriod, h.interval))
	defer check.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-every.C:
			last = beat()
		case <-check.C:
			// A reload that loaded or failed bumps one of the counters
			// ("unchanged" checks bump neither and need no beat).
			if st := h.n.reloader.Status(); st.Reloads != last.Reloads || st.Failures != last.Failures {
				last = beat()
				every.Reset(h.interval)
			}
		}
	}
}

// row builds the heartbeat from the reload status. Nothing in it is a
// secret: config errors never carry secret values (README, security notes).
func (h *heartbeater) row(st reload.Status, now, expires time.Time, state string) model.NodeStatus {
	details := map[string]any{
		"state":             state,
		"last_reload":       lastReload(st),
		"last_check":        st.LastResult,
		"reloads":           st.Reloads,
		"failures":          st.Failures,
		"config_schema_max": config.SchemaVersion,
		"config_schemas":    config.SupportedSchemas,
		"storage_schema":    []int{model.SchemaMin, model.SchemaMax},
		"instance":          h.instance,
	}

	if !st.LastAttemptAt.IsZero() {
		details["last_reload_at"] = st.LastAttemptAt.Format(time.RFC3339Nano)
	}
	if !st.LoadedAt.IsZero() {
		details["loaded_at"] = st.LoadedAt.Format(time.RFC3339Nano)
	}
	if st.LastError != "" {
		details["last_error"] = errorSummary(st.LastError)
	}
	if cur := h.n.holder.Current(); cur != nil && cur.DataSource() != "" {
		details["data_source"] = cur.DataSource() // its name, never its URL
	}
	return model.NodeStatus{
		ID:            h.n.settings.NodeID,
		Role:          st.Role,
		Zone:          st.Zone,
		BinaryVersion: Version,
		ConfigVersion: st.ConfigVersion,
		ConfigHash:    st.ConfigHash,
		StartedAt:     h.started,
		HeartbeatAt:   now,
		ExpiresAt:     expires,
		Details:       details,
	}
}

// lastReload is the result of the last reload that did something:
// "unchanged" (a check that found the served config still on disk) only
// follows a success, since a failure leaves the disk differing from what
// is served until it is fixed (and the fix is recorded as a success).
func lastReload(st reload.Status) string {
	if st.LastResult == string(reload.Unchanged) {
		return string(reload.Success)
	}
	return st.LastResult
}

// errorSummary keeps the first error line (config errors are one per line)
// within maxErrorSummary bytes, and says how many more there were.
func errorSummary(msg string) string {
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	s := lines[0]
	if len(s) > maxErrorSummary {
		cut := maxErrorSummary
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	if len(lines) > 1 {
		s += " (and " + strconv.Itoa(len(lines)-1) + " more)"
	}
	return s
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// DetailIDConflict, in a heartbeat's details, says that the node saw
// another live process write heartbeats under its id.
const DetailIDConflict = "id_conflict"

// sharedID reports whether the row under this node's id was last written,
// recently, by another process that is still serving.
func (h *heartbeater) sharedID(ctx context.Context, st model.Store, now time.Time) bool {
	rows, err := st.Nodes().List(ctx)
	if err != nil {
		return false
	}
	for _, r := range rows {
		if r.ID != h.n.settings.NodeID {
			continue
		}
		other, _ := r.Details["instance"].(string)
		state, _ := r.Details["state"].(string)
		return other != "" && other != h.instance && state == StateServing && now.Sub(r.HeartbeatAt) < HeartbeatTTL*h.interval
	}
	return false
}

// write stores one heartbeat, logging a failure once until a write succeeds
// again (a database outage must not flood the log every interval).
func (h *heartbeater) write(ctx context.Context, row model.NodeStatus) {
	ctx, cancel := context.WithTimeout(ctx, min(h.interval, 5*time.Second))
	defer cancel()
	// n.withStore holds a reference on the live pool, never a closed store.
	_, err := h.n.withStore(ctx, func(st model.Store) error {
		shared := h.sharedID(ctx, st, row.HeartbeatAt)
		if shared && !h.conflict {
			h.log.Error("another running node writes heartbeats under this node id; give each node its own KEYGATE_NODE_ID",
				"node_id", row.ID)
		}
		h.conflict = shared
		if shared {
			row.Details[DetailIDConflict] = true
		}
		return st.Nodes().Heartbeat(ctx, row)
	})
	switch {
	case errors.Is(err, errNoDataSource):
	case err != nil && !h.failing:
		h.failing = true
		// Storage errors name the data source, never its URL.
		h.log.Warn("cannot write heartbeat; retrying every interval", "error", err.Error())
	case err == nil && h.failing:
		h.failing = false
		h.log.Info("heartbeat written again")
	}
}
