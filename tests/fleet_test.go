package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testkit"
)

// Two runtime nodes of one role on one host are two nodes in the cluster
// view, not one; two live nodes that share an explicit KEYGATE_NODE_ID are
// reported as a conflict.
func TestFleetViewOfNodesOnOneHost(t *testing.T) {
	zoneA, zoneB := zoneDatabase(t, "a"), zoneDatabase(t, "b")
	secrets := t.TempDir()
	tokenFile := filepath.Join(secrets, "token")
	check(t, os.WriteFile(tokenFile, []byte(clusterToken+"\n"), 0o600))
	signFile, _, _ := testkit.BundleKeys(t, secrets)
	dir := twoZoneConfig(t, "http://localhost/fleet", testkit.KeysConfig(map[string]string{"k1": testkit.KeyFile(t, secrets, "k1")}))
	adm := startAdmin(t, "KEYGATE_PUBLISH_DIR="+t.TempDir(), "KEYGATE_BUNDLE_SIGNING_KEY_FILE="+signFile, "KEYGATE_ADMIN_TOKEN_FILE="+tokenFile,
		"KEYGATE_CONFIG_DIR="+dir, "ZONE_A_DB_URL="+zoneA, "ZONE_B_DB_URL="+zoneB)
	env := []string{"KEYGATE_SERVICE_ROLE=edge-a", "ZONE_A_DB_URL=" + zoneA, "KEYGATE_HEARTBEAT_INTERVAL=300ms"}

	startNode(t, dir, env...)
	startNode(t, dir, env...)
	host, _ := os.Hostname()
	var ids []string
	testkit.WaitFor(t, 20*time.Second, "two nodes of edge-a in the cluster view", func() bool {
		ids = nil
		for _, n := range adm.cluster(t).Nodes {
			if n.Role == "edge-a" && !n.Stale {
				ids = append(ids, n.ID)
			}
		}
		return len(ids) == 2
	})
	slices.Sort(ids)
	if ids[0] == ids[1] || !strings.HasPrefix(ids[0], host+":") || !strings.HasPrefix(ids[1], host+":") {
		t.Errorf("default node ids %v, want two distinct %s:<port>", ids, host)
	}
	if v := adm.roleView(t, "edge-a"); !v.Converged || v.Nodes != 2 {
		t.Errorf("edge-a in the cluster view: %+v", v)
	}
	// (zone b has no node, so its database was never migrated: that error is expected.)
	for _, e := range adm.cluster(t).Errors {
		if strings.Contains(e, "reports this id") {
			t.Errorf("a conflict reported for distinct ids: %v", e)
		}
	}

	dup := append(slices.Clone(env), "KEYGATE_NODE_ID=edge-a-1")
	startNode(t, dir, dup...)
	startNode(t, dir, dup...)
	testkit.WaitFor(t, 20*time.Second, "the duplicate id reported", func() bool {
		for _, e := range adm.cluster(t).Errors {
			if strings.Contains(e, "node edge-a-1: more than one running node reports this id") {
				return true
			}
		}
		return false
	})
}

type roleView struct {
	Nodes     int      `json:"nodes"`
	Converged bool     `json:"converged"`
	Behind    []string `json:"behind"`
	Failing   []string `json:"failing"`
}

// roleView is one role of GET /admin/v1/cluster.
func (a *adminNode) roleView(t *testing.T, role string) roleView {
	t.Helper()
	code, body := a.call(t, "GET", "/admin/v1/cluster", clusterToken, nil)
	var v struct {
		Roles map[string]roleView `json:"roles"`
	}
	if code != 200 || json.Unmarshal(body, &v) != nil {
		t.Fatalf("GET /admin/v1/cluster: %d %s", code, body)
	}
	return v.Roles[role]
}

// `keygate bundle plan` shows, per role, what publishing would change
// against the active bundle, and publishes nothing.
func TestBundlePlanCLI(t *testing.T) {
	secrets := t.TempDir()
	tokenFile := filepath.Join(secrets, "token")
	signFile, _, _ := testkit.BundleKeys(t, secrets)
	check(t, os.WriteFile(tokenFile, []byte(clusterToken+"\n"), 0o600))
	keys := testkit.KeysConfig(map[string]string{"k1": testkit.KeyFile(t, secrets, "k1")})
	src := func(issuer string) string {
		return testkit.ConfigDir(t, map[string]string{"00-token.yaml": testkit.TokenConfig(unusedDB, issuer, "k1"), "10-keys.yaml": keys})
	}
	pubDir := t.TempDir()
	adm := startAdmin(t, "KEYGATE_PUBLISH_DIR="+pubDir, "KEYGATE_BUNDLE_SIGNING_KEY_FILE="+signFile, "KEYGATE_ADMIN_TOKEN_FILE="+tokenFile,
		"KEYGATE_CONFIG_DIR="+t.TempDir())
	if code, v, stderr := publishCLI(t, adm.url, src("http://localhost/one"), tokenFile); code != 0 || v != "v1" {
		t.Fatalf("publish: %d %s %s", code, v, stderr)
	}
	before := dirListing(t, pubDir)
	cmd := exec.Command(binary, "bundle", "plan", "--admin", adm.url, "--dir", src("http://localhost/two"), "--token-file", tokenFile)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bundle plan: %v\n%s", err, out)
	}
	for _, want := range []string{"plan against v1", "service role default (now on v1): 1 change(s)",
		`~ profiles.token.issuer: "http://localhost/one" → "http://localhost/two"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	if after := dirListing(t, pubDir); !slices.Equal(before, after) {
		t.Errorf("bundle plan changed the publish dir: %v → %v", before, after)
	}
}
