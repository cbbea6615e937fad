package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/storage/model"
)

func TestJudge(t *testing.T) {
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	base := Rollout{Version: "v2", Schema: 1, First: []string{"canary"}, Soak: Duration(10 * time.Second), Timeout: Duration(time.Minute), StartedAt: start, State: RolloutCanary}
	serving := func(id, version string) NodeInfo {
		return NodeInfo{ID: id, Role: "canary", ConfigVersion: version, LastReload: "success", LastReloadAt: start.Add(time.Second), SchemaMax: 1}
	}
	failed := func(id string, at time.Time) NodeInfo {
		n := serving(id, "v1")
		n.LastReload, n.LastReloadAt, n.LastError = "failure", at, "variable NEW_SECRET is not set"
		return n
	}
	for _, tc := range []struct {
		name         string
		nodes        []NodeInfo
		healthySince time.Duration // > 0: already healthy since start+this
		at           time.Duration // judged at start+at
		want         verdict
		reason       string
	}{
		{name: "converging", nodes: []NodeInfo{serving("c1", "v2"), serving("c2", "v1")}, at: 5 * time.Second, want: verdictWait},
		{name: "converged, soaking", nodes: []NodeInfo{serving("c1", "v2"), serving("c2", "v2")}, at: 5 * time.Second, want: verdictWait},
		{name: "soaked", nodes: []NodeInfo{serving("c1", "v2"), serving("c2", "v2")}, healthySince: 2 * time.Second, at: 12 * time.Second, want: verdictPromote},
		{name: "other roles do not count", nodes: []NodeInfo{serving("c1", "v2"), {ID: "x", Role: "rest", ConfigVersion: "v1", LastReload: "failure", LastReloadAt: start.Add(time.Second)}},
			healthySince: time.Second, at: 12 * time.Second, want: verdictPromote},
		{name: "stale nodes do not count", nodes: []NodeInfo{serving("c1", "v2"), func() NodeInfo { n := failed("old", start.Add(time.Second)); n.Stale = true; return n }()},
			healthySince: time.Second, at: 12 * time.Second, want: verdictPromote},
		{name: "refused", nodes: []NodeInfo{serving("c1", "v2"), failed("c2", start.Add(2*time.Second))}, at: 3 * time.Second, want: verdictStop,
			reason: "node c2 of service role canary failed to load v2: variable NEW_SECRET is not set"},
		{name: "a failure from before the rollout is not a refusal", nodes: []NodeInfo{failed("c2", start.Add(-time.Minute))}, at: 3 * time.Second, want: verdictWait},
		{name: "unsupported schema", nodes: []NodeInfo{func() NodeInfo { n := serving("c1", "v1"); n.SchemaMax = 0; return n }()}, at: time.Second, want: verdictStop,
			reason: "node c1 of service role canary supports config schema up to 0; v2 needs 1"},
		{name: "never converges", nodes: []NodeInfo{serving("c1", "v1")}, at: 61 * time.Second, want: verdictStop,
			reason: "v2 was not served by canary within 1m0s (waiting on: c1)"},
		{name: "no live node", at: 61 * time.Second, want: verdictStop, reason: "waiting on: service role canary has no live node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := base
			if tc.healthySince > 0 {
				r.HealthySince = ptr(start.Add(tc.healthySince))
			}
			got := judge(&r, tc.nodes, start.Add(tc.at))
			if got != tc.want || !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("judge = %v %q, want %v %q", got, r.Reason, tc.want, tc.reason)
			}
			if got == verdictStop && r.State != RolloutStopped {
				t.Errorf("stopped with state %q", r.State)
			}
		})
	}
}

// twoRoles is a bundle with the roles canary and main on one data source.
func twoRoles(dbPath, issuerPath, extra string) map[string]string {
	return map[string]string{"a.yaml": fmt.Sprintf(`schema: 1
service-roles:
  canary: {zone: z, profiles: [authn]}
  main: {zone: z, profiles: [authn]}
zones:
  z: {data-source: d}
data-sources:
  d: {type: sqlite, path: "${DB_DIR}/%s"}
profiles:
  authn: {type: authentication, path: /%s, authenticators: {password: {type: password}}}
%s`, filepath.Base(dbPath), issuerPath, extra)}
}

func (f *fixture) channels(t *testing.T) map[string]string {
	t.Helper()
	ch, err := f.api.c.Publisher.Channels()
	if err != nil {
		t.Fatal(err)
	}
	if top, ok, _ := f.api.c.Publisher.Active(); ok {
		ch["(top)"] = top.Manifest.Version
	}
	return ch
}

func (f *fixture) beat(t *testing.T, nodes ...model.NodeStatus) {
	t.Helper()
	ctx := context.Background()
	st := f.st
	for _, n := range nodes {
		if err := st.Nodes().Heartbeat(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
}

func heartbeat(id, role, version, reload string, at time.Time) model.NodeStatus {
	now := time.Now()
	return model.NodeStatus{ID: id, Role: role, Zone: "z", ConfigVersion: version, HeartbeatAt: now, ExpiresAt: now.Add(time.Hour),
		Details: map[string]any{"config_schema_max": 1, "last_reload": reload, "last_reload_at": at.Format(time.RFC3339Nano), "last_error": "variable NEW_SECRET is not set"}}
}

func (f *fixture) rollout(t *testing.T) Rollout {
	t.Helper()
	code, _, body := f.do(t, "GET", "/admin/v1/rollout", token, nil)
	var v rolloutView
	if code != http.StatusOK || json.Unmarshal(body, &v) != nil || v.Rollout == nil {
		t.Fatalf("GET /admin/v1/rollout: %d %s", code, body)
	}
	return *v.Rollout
}

// A staged rollout moves the first roles' channels, promotes the rest once
// the first roles' nodes serve it, stops on a refusal with the rest kept
// where they were, and rolls back with one call.
func TestStagedRollout(t *testing.T) {
	f := newFixture(t)
	same := func(got, want map[string]string) {
		t.Helper()
		if !maps.Equal(got, want) {
			t.Fatalf("channels %v, want %v", got, want)
		}
	}
	staged := &RolloutSpec{First: []string{"canary"}, Soak: ptr(Duration(0))}
	if code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: twoRoles(f.db, "one", "")}); code != http.StatusCreated {
		t.Fatalf("publish v1: %d %s", code, body)
	}
	same(f.channels(t), map[string]string{"(top)": "v1", "canary": "v1", "main": "v1"})

	code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: twoRoles(f.db, "two", ""), Rollout: staged})
	if code != http.StatusCreated {
		t.Fatalf("staged v2: %d %s", code, body)
	}
	same(f.channels(t), map[string]string{"(top)": "v1", "canary": "v2", "main": "v1"})
	if r := f.rollout(t); r.State != RolloutCanary || r.Previous["main"] != "v1" || r.Previous["canary"] != "v1" {
		t.Fatalf("rollout %+v", r)
	}
	// Nothing else is published while the canary runs.
	if code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: twoRoles(f.db, "three", "")}); code != http.StatusConflict || !strings.Contains(string(body), "rollout_in_progress") {
		t.Fatalf("publish during the canary: %d %s", code, body)
	}
	// The canary's node still on v1: no promotion.
	started := f.rollout(t).StartedAt
	f.beat(t, heartbeat("c1", "canary", "v1", "success", started.Add(-time.Minute)), heartbeat("m1", "main", "v1", "success", started.Add(-time.Minute)))
	f.api.Check(context.Background())
	same(f.channels(t), map[string]string{"(top)": "v1", "canary": "v2", "main": "v1"})
	// It loads v2: promoted (soak 0).
	f.beat(t, heartbeat("c1", "canary", "v2", "success", time.Now()))
	f.api.Check(context.Background())
	same(f.channels(t), map[string]string{"(top)": "v2", "canary": "v2", "main": "v2"})
	if r := f.rollout(t); r.State != RolloutComplete || r.FinishedAt == nil {
		t.Fatalf("rollout after promotion %+v", r)
	}

	// One call puts every role back on v1.
	if code, _, body := f.do(t, "POST", "/admin/v1/rollout/rollback", token, nil); code != http.StatusOK {
		t.Fatalf("rollback: %d %s", code, body)
	}
	same(f.channels(t), map[string]string{"(top)": "v1", "canary": "v1", "main": "v1"})
	if code, _, _ := f.do(t, "POST", "/admin/v1/rollout/rollback", token, nil); code != http.StatusConflict {
		t.Errorf("a second rollback: %d", code)
	}

	// v3 needs a secret the canary's nodes lack: the node refuses, the
	// rollout stops, main never gets v3.
	if code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: twoRoles(f.db, "three", ""), Rollout: staged}); code != http.StatusCreated {
		t.Fatalf("staged v3: %d %s", code, body)
	}
	f.beat(t, heartbeat("c1", "canary", "v1", "failure", time.Now()))
	f.api.Check(context.Background())
	r := f.rollout(t)
	if r.State != RolloutStopped || !strings.Contains(r.Reason, "node c1 of service role canary failed to load v3: variable NEW_SECRET is not set") {
		t.Fatalf("rollout after a refusal %+v", r)
	}
	same(f.channels(t), map[string]string{"(top)": "v1", "canary": "v3", "main": "v1"})
	if code, _, _ := f.do(t, "POST", "/admin/v1/rollout/promote", token, nil); code != http.StatusConflict {
		t.Errorf("promote a stopped rollout: %d", code)
	}
	if code, _, body := f.do(t, "POST", "/admin/v1/rollout/rollback", token, nil); code != http.StatusOK {
		t.Fatalf("rollback v3: %d %s", code, body)
	}
	same(f.channels(t), map[string]string{"(top)": "v1", "canary": "v1", "main": "v1"})

	// A staged rollout promoted by hand; the bundle list shows who serves what.
	if code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: twoRoles(f.db, "four", ""), Rollout: staged}); code != http.StatusCreated {
		t.Fatalf("staged v4: %d %s", code, body)
	}
	code, _, body = f.do(t, "GET", "/admin/v1/bundles", token, nil)
	var list struct{ Bundles []BundleInfo }
	if code != http.StatusOK || json.Unmarshal(body, &list) != nil {
		t.Fatalf("list: %d %s", code, body)
	}
	roles := map[string]string{}
	for _, b := range list.Bundles {
		roles[b.Version] = fmt.Sprint(b.Active, b.Roles)
	}
	if want := map[string]string{"v4": "false [canary]", "v3": "false []", "v2": "false []", "v1": "true [main]"}; !maps.Equal(roles, want) {
		t.Errorf("bundle list roles %v, want %v", roles, want)
	}
	if code, _, body := f.do(t, "POST", "/admin/v1/rollout/promote", token, nil); code != http.StatusOK {
		t.Fatalf("promote: %d %s", code, body)
	}
	same(f.channels(t), map[string]string{"(top)": "v4", "canary": "v4", "main": "v4"})
}

// A staged rollout request names roles of the bundle and a timeout longer
// than the soak; otherwise nothing is written.
func TestRolloutSpecRefused(t *testing.T) {
	f := newFixture(t)
	before := listing(t, f.pubDir)
	for _, tc := range []struct {
		spec RolloutSpec
		want string
	}{
		{RolloutSpec{}, "rollout.first: name the service roles"},
		{RolloutSpec{First: []string{"canry"}}, `rollout.first: "canry" is not a service role of the bundle (it has canary, main)`},
		{RolloutSpec{First: []string{"canary"}, Soak: ptr(Duration(time.Hour)), Timeout: ptr(Duration(time.Minute))}, "rollout.timeout: 1m0s must be longer than the soak, 1h0m0s"},
	} {
		code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: twoRoles(f.db, "one", ""), Rollout: &tc.spec})
		var p problem
		_ = json.Unmarshal(body, &p)
		if code != http.StatusUnprocessableEntity || !strings.Contains(body2(p), tc.want) {
			t.Errorf("%+v: %d %s, want 422 %q", tc.spec, code, body, tc.want)
		}
	}
	if after := listing(t, f.pubDir); !slicesEqual(before, after) {
		t.Errorf("a refused rollout wrote %v → %v", before, after)
	}
	// A duration that does not parse is a 400.
	code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, json.RawMessage(`{"files":{"a.yaml":"schema: 1\n"},"rollout":{"first":["x"],"soak":"soon"}}`))
	var p problem
	_ = json.Unmarshal(body, &p)
	if code != http.StatusBadRequest || !strings.Contains(p.Description, `"soon" is not a duration`) {
		t.Errorf("bad soak: %d %s", code, body)
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// A restarted admin node finishes a move its record describes.
func TestResumeFinishesTheRecordedMove(t *testing.T) {
	f := newFixture(t)
	for _, issuer := range []string{"one", "two"} {
		if code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: twoRoles(f.db, issuer, "")}); code != http.StatusCreated {
			t.Fatalf("publish: %d %s", code, body)
		}
	}
	// As if the admin crashed after recording a rollback to v1 and before
	// moving any channel.
	r := f.rollout(t)
	r.State = RolloutRolledBack
	data, _ := json.Marshal(r)
	if err := f.api.c.Publisher.SaveRollout(data); err != nil {
		t.Fatal(err)
	}
	restarted := New(f.api.c)
	if err := restarted.Resume(); err != nil {
		t.Fatal(err)
	}
	if got := f.channels(t); !maps.Equal(got, map[string]string{"(top)": "v1", "canary": "v1", "main": "v1"}) {
		t.Errorf("channels after resume %v", got)
	}
}

// Publishes and rollbacks are audit events in the zones' own data sources.
func TestBundleEventsAreAudited(t *testing.T) {
	f := newFixture(t)
	if code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: twoRoles(f.db, "one", ""), Author: "ci"}); code != http.StatusCreated {
		t.Fatalf("publish: %d %s", code, body)
	}
	if code, _, body := f.do(t, "POST", "/admin/v1/rollout/rollback", token, nil); code != http.StatusOK {
		t.Fatalf("rollback: %d %s", code, body)
	}
	st := f.st
	deadline := time.Now().Add(10 * time.Second)
	for {
		var types []string
		if evs, err := st.Audit().List(context.Background(), model.AuditQuery{Zone: "z"}); err == nil {
			for _, e := range evs {
				types = append(types, e.Type+":"+fmt.Sprint(e.Details["actor"]))
			}
		}
		if strings.Contains(strings.Join(types, ","), "bundle_published:ci") && strings.Contains(strings.Join(types, ","), "rollout_rollback:admin API") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit events %v", types)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
