package tests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testkit"
)

// rolloutCLI runs `keygate bundle rollout VERB` against the admin node.
func rolloutCLI(t *testing.T, adminURL, tokenFile, verb string, extra ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"bundle", "rollout", verb, "--admin", adminURL, "--token-file", tokenFile}, extra...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		check(t, err)
	}
	return code, out.String(), errb.String()
}

// A staged rollout on PostgreSQL with an admin node and runtime nodes of
// two roles, each reading its role's channel of the publish directory:
// the canary role serves a bundle first and the other role only after the
// soak; a bundle the canary's nodes refuse never reaches the other role;
// one rollback call brings every node back within 2 s.
func TestStagedRolloutAcrossRoles(t *testing.T) {
	zoneA, zoneB := zoneDatabase(t, "a"), zoneDatabase(t, "b")
	secrets := t.TempDir()
	signFile, verifyFile, _ := testkit.BundleKeys(t, secrets)
	tokenFile := filepath.Join(secrets, "token")
	check(t, os.WriteFile(tokenFile, []byte(clusterToken+"\n"), 0o600))
	keys := testkit.KeysConfig(map[string]string{"k1": testkit.KeyFile(t, secrets, "k1")})

	pubDir := t.TempDir()
	adm := startAdmin(t, "KEYGATE_PUBLISH_DIR="+pubDir, "KEYGATE_BUNDLE_SIGNING_KEY_FILE="+signFile, "KEYGATE_ADMIN_TOKEN_FILE="+tokenFile,
		"KEYGATE_CONFIG_DIR="+t.TempDir(), "ZONE_A_DB_URL="+zoneA, "ZONE_B_DB_URL="+zoneB)
	publish := func(dir, want string, extra ...string) {
		t.Helper()
		code, v, stderr := publishCLI(t, adm.url, dir, tokenFile, extra...)
		if code != 0 || v != want {
			t.Fatalf("publish: exit %d %q, want %s\n%s", code, v, want, stderr)
		}
	}
	publish(twoZoneConfig(t, "http://localhost/one", keys), "v1")

	a1, a2, b1 := "a1", "a2", "b1"
	nodes := map[string]*node{}
	for _, id := range []string{a1, a2, b1} {
		role, db := "edge-a", "ZONE_A_DB_URL="+zoneA
		if id == b1 {
			role, db = "edge-b", "ZONE_B_DB_URL="+zoneB
		}
		// Each node reads its role's channel, not the top level.
		nodes[id] = launch(t, filepath.Join(pubDir, "roles", role), "KEYGATE_SERVICE_ROLE="+role, "KEYGATE_NODE_ID="+id,
			"KEYGATE_BUNDLE_VERIFY_KEY_FILE="+verifyFile, "KEYGATE_HEARTBEAT_INTERVAL=300ms", db)
	}
	for _, n := range nodes {
		n.AwaitServing(30 * time.Second)
	}
	all := []*node{nodes[a1], nodes[a2], nodes[b1]}
	servedBy := func(issuer string, ns ...*node) func() bool {
		return func() bool {
			for _, n := range ns {
				if n.Issuer("/oauth/v2") != issuer {
					return false
				}
			}
			return true
		}
	}
	testkit.WaitFor(t, 15*time.Second, "v1 on every node", servedBy("http://localhost/one", all...))

	// v2 to edge-a first, with a 2 s soak.
	const soak = 2 * time.Second
	publish(twoZoneConfig(t, "http://localhost/two", keys), "v2", "--first", "edge-a", "--soak", soak.String(), "--rollout-timeout", "1m")
	if code, out, stderr := rolloutCLI(t, adm.url, tokenFile, "wait", "--timeout", "1m"); code != 0 || !strings.HasPrefix(out, "v2: complete") {
		t.Fatalf("rollout wait: exit %d\n%s%s", code, out, stderr)
	}
	testkit.WaitFor(t, 15*time.Second, "v2 on every node", servedBy("http://localhost/two", all...))
	var canaryLoaded time.Time
	for _, id := range []string{a1, a2} {
		if st := nodes[id].Status(); st.ConfigVersion != "v2" {
			t.Fatalf("%s: %+v", id, st)
		} else if st.LoadedAt.After(canaryLoaded) {
			canaryLoaded = st.LoadedAt
		}
	}
	// Judged on the nodes' own clocks (one host): edge-b loaded v2 only
	// after every edge-a node had served it for the soak.
	if st := nodes[b1].Status(); st.ConfigVersion != "v2" || st.LoadedAt.Sub(canaryLoaded) < soak {
		t.Errorf("edge-b loaded v2 %s after the last edge-a node, want at least the %s soak", st.LoadedAt.Sub(canaryLoaded), soak)
	} else {
		t.Logf("edge-b loaded v2 %s after the last edge-a node (soak %s)", st.LoadedAt.Sub(canaryLoaded).Round(time.Millisecond), soak)
	}
	for _, role := range []string{"edge-a", "edge-b"} {
		testkit.WaitFor(t, 15*time.Second, role+" converged on v2 in the cluster view", func() bool {
			v := adm.roleView(t, role)
			return v.Converged && v.Nodes == map[string]int{"edge-a": 2, "edge-b": 1}[role]
		})
	}

	// One call rolls every role back to v1 within 2 s.
	since := time.Now()
	if code, out, stderr := rolloutCLI(t, adm.url, tokenFile, "rollback"); code != 0 || !strings.HasPrefix(out, "v2: rolled_back") {
		t.Fatalf("rollback: exit %d\n%s%s", code, out, stderr)
	}
	waitPublished(t, "rollback to v1 on every node", "v1", since, all, servedBy("http://localhost/one", all...))
	bOnV1 := nodes[b1].Status()

	// v3 needs a secret edge-a's nodes do not have: they refuse it, the
	// rollout stops, and edge-b never sees v3.
	v3 := twoZoneConfig(t, "http://localhost/three", keys)
	check(t, os.WriteFile(filepath.Join(v3, "20-token.yaml"), []byte(`profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: http://localhost/three
    signing-keys: [k1]
    endpoints: [discovery, jwks, token]
clients:
  svc: {profile: token, secret: $NEW_SECRET, grant-types: [client_credentials], scopes: [read]}
`), 0o644))
	publish(v3, "v3", "--first", "edge-a", "--soak", "1s", "--rollout-timeout", "1m")
	code, out, stderr := rolloutCLI(t, adm.url, tokenFile, "wait", "--timeout", "1m")
	if code != 1 || !strings.HasPrefix(out, "v3: stopped") || !strings.Contains(out, "of service role edge-a failed to load v3") ||
		!strings.Contains(out, "variable NEW_SECRET is not set") {
		t.Fatalf("rollout wait on a refused bundle: exit %d\n%s%s", code, out, stderr)
	}
	for _, id := range []string{a1, a2} {
		testkit.WaitFor(t, 15*time.Second, id+" reports the refusal", func() bool {
			st := nodes[id].Status()
			return st.ConfigVersion == "v1" && st.LastResult == "failure" && strings.Contains(st.LastError, "NEW_SECRET")
		})
	}
	if st := nodes[b1].Status(); st.ConfigVersion != "v1" || !st.LoadedAt.Equal(bOnV1.LoadedAt) || st.Failures != bOnV1.Failures {
		t.Errorf("edge-b moved during a stopped rollout: %+v, before %+v", st, bOnV1)
	}
	if got, err := os.Readlink(filepath.Join(pubDir, "roles", "edge-b", "..data")); err != nil || !strings.Contains(got, "..v1_") {
		t.Errorf("edge-b's channel points at %q (%v), want v1", got, err)
	}
	if !servedBy("http://localhost/one", all...)() {
		t.Error("a node stopped serving v1 during the refused rollout")
	}
	// Roll the canary back too: edge-a's channel is v1 again and its nodes
	// report a good reload.
	if code, out, stderr := rolloutCLI(t, adm.url, tokenFile, "rollback"); code != 0 {
		t.Fatalf("rollback of v3: exit %d\n%s%s", code, out, stderr)
	}
	testkit.WaitFor(t, 15*time.Second, "edge-a converged on v1 after the rollback", func() bool {
		v := adm.roleView(t, "edge-a")
		return v.Converged && v.Nodes == 2
	})

	for id, n := range nodes {
		for _, s := range []string{zoneA, zoneB, clusterToken} {
			if n.Logs.Contains(s) {
				t.Errorf("node %s logged a secret", id)
			}
		}
	}
	for _, s := range []string{zoneA, zoneB, clusterToken} {
		if adm.Logs.Contains(s) {
			t.Error("the admin node logged a secret")
		}
	}
}
