package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/testkit"
)

// heartbeatNode starts a node on a SQLite config in a temporary directory
// and opens a second store on the same database, as the admin node would.
func heartbeatNode(t *testing.T, interval time.Duration) (r *testNode, cfg string, st model.Store, body func(issuer string) string) {
	t.Helper()
	dir := t.TempDir()
	cfgDir := filepath.Join(dir, "config.d")
	if err := os.Mkdir(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	keys := testkit.KeysConfig(map[string]string{"k1": testkit.KeyFile(t, dir, "k1")})
	db := filepath.Join(dir, "keygate.db")
	body = func(issuer string) string { return testkit.TokenConfig(testkit.SQLiteYAML(db), issuer, "k1") + keys }
	cfg = filepath.Join(cfgDir, "config.yaml")
	testkit.WriteAtomic(t, cfg, body("http://localhost/gen-1/oauth"))

	s := testSettings(cfgDir, 5*time.Millisecond, 0)
	s.HeartbeatInterval = interval
	r = startTestNode(t, s, nil, nil)
	return r, cfg, testkit.SQLiteAt(t, db), body
}

// row returns the node's heartbeat row, or nil.
func heartbeatRow(t *testing.T, st model.Store, id string) *model.NodeStatus {
	t.Helper()
	rows, err := st.Nodes().List(context.Background())
	if err != nil {
		t.Fatalf("Nodes().List: %v", err)
	}
	for i := range rows {
		if rows[i].ID == id {
			return &rows[i]
		}
	}
	return nil
}

// waitRow polls until the row satisfies cond and returns it.
func waitRow(t *testing.T, st model.Store, what string, cond func(*model.NodeStatus) bool) model.NodeStatus {
	t.Helper()
	var got *model.NodeStatus
	deadline := time.Now().Add(10 * time.Second)
	for {
		got = heartbeatRow(t, st, "node-test")
		if got != nil && cond(got) {
			return *got
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for the heartbeat row: %s; last row: %+v", what, got)
	return model.NodeStatus{}
}

func TestHeartbeatRowAndReloads(t *testing.T) {
	// An hour: every beat in this test comes from start, a reload or
	// shutdown, never from the ticker.
	r, cfg, st, body := heartbeatNode(t, time.Hour)

	first := r.StatusSnapshot()
	row := waitRow(t, st, "first beat", func(n *model.NodeStatus) bool { return n.ConfigHash == first.ConfigHash })
	if row.Role != "default" || row.Zone != "local" || row.BinaryVersion != Version ||
		row.ConfigVersion != first.ConfigVersion || row.ConfigHash == "" {
		t.Errorf("row = %+v; want role default, zone local, binary %q, config %q", row, Version, first.ConfigVersion)
	}
	if want := row.HeartbeatAt.Add(HeartbeatTTL * time.Hour); !row.ExpiresAt.Equal(want) {
		t.Errorf("expires_at = %s, want heartbeat_at + 3 intervals = %s", row.ExpiresAt, want)
	}
	if row.StartedAt.IsZero() || row.StartedAt.After(row.HeartbeatAt) {
		t.Errorf("started_at = %s, heartbeat_at = %s", row.StartedAt, row.HeartbeatAt)
	}
	d := row.Details
	if d["state"] != StateServing || d["last_reload"] != "success" || d["data_source"] != "db" {
		t.Errorf("details = %v", d)
	}
	if d["config_schema_max"] != float64(config.SchemaVersion) {
		t.Errorf("config_schema_max = %v, want %d", d["config_schema_max"], config.SchemaVersion)
	}
	if ss, _ := d["storage_schema"].([]any); len(ss) != 2 || ss[0] != float64(model.SchemaMin) || ss[1] != float64(model.SchemaMax) {
		t.Errorf("storage_schema = %v, want [%d %d]", d["storage_schema"], model.SchemaMin, model.SchemaMax)
	}
	if _, ok := d["last_error"]; ok {
		t.Errorf("last_error = %v after a successful load", d["last_error"])
	}

	// A reload that loads a new config beats at once with the new hash.
	testkit.WriteAtomic(t, cfg, body("http://localhost/gen-2/oauth"))
	r.Reload()
	var second string
	row2 := waitRow(t, st, "a beat with the reloaded config", func(n *model.NodeStatus) bool {
		second = r.StatusSnapshot().ConfigHash
		return second != first.ConfigHash && n.ConfigHash == second
	})
	if !row2.HeartbeatAt.After(row.HeartbeatAt) || !row2.StartedAt.Equal(row.StartedAt) {
		t.Errorf("after reload: heartbeat_at %s (before %s), started_at %s (before %s)",
			row2.HeartbeatAt, row.HeartbeatAt, row2.StartedAt, row.StartedAt)
	}

	// A reload that fails beats too: same config, the failure in Details.
	testkit.WriteAtomic(t, cfg, body("http://localhost/gen-3/oauth")+"unknown-section: {}\n")
	r.Reload()
	row3 := waitRow(t, st, "a beat reporting the failed reload", func(n *model.NodeStatus) bool {
		return n.Details["last_reload"] == "failure"
	})
	if row3.ConfigHash != second {
		t.Errorf("config hash after a failed reload = %s, want the one still served %s", row3.ConfigHash, second)
	}
	if e, _ := row3.Details["last_error"].(string); !strings.Contains(e, "unknown-section") {
		t.Errorf("last_error = %q, want the load error", e)
	}

	// Shutdown writes a last beat: stopping, already expired.
	if err := r.shutdown(t); err != nil {
		t.Fatal(err)
	}
	last := heartbeatRow(t, st, "node-test")
	if last == nil || last.Details["state"] != StateStopping || last.ExpiresAt.After(last.HeartbeatAt) {
		t.Fatalf("row after shutdown = %+v; want state stopping, expired", last)
	}
}

func TestHeartbeatEveryInterval(t *testing.T) {
	_, _, st, _ := heartbeatNode(t, 20*time.Millisecond)
	first := waitRow(t, st, "first beat", func(*model.NodeStatus) bool { return true })
	for i := 0; i < 3; i++ {
		prev := first.HeartbeatAt
		first = waitRow(t, st, "a periodic beat", func(n *model.NodeStatus) bool { return n.HeartbeatAt.After(prev) })
		if want := first.HeartbeatAt.Add(HeartbeatTTL * 20 * time.Millisecond); !first.ExpiresAt.Equal(want) {
			t.Errorf("expires_at = %s, want %s", first.ExpiresAt, want)
		}
	}
}

func TestErrorSummary(t *testing.T) {
	long := strings.Repeat("é", 400)
	for _, tt := range []struct{ in, want string }{
		{"a.yaml:1:1: x: bad", "a.yaml:1:1: x: bad"},
		{"a.yaml:1:1: x: bad\nb.yaml:2:2: y: bad\nc.yaml:3:3: z: bad\n", "a.yaml:1:1: x: bad (and 2 more)"},
	} {
		if got := errorSummary(tt.in); got != tt.want {
			t.Errorf("errorSummary(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := errorSummary(long); len(got) > maxErrorSummary+len("…") || !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "éé") {
		t.Errorf("errorSummary(long) = %q (%d bytes)", got, len(got))
	}
}
