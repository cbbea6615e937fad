package tests

// Issue 4, "what must be shown": a cluster on loopback (admin node + three
// runtime nodes, two service roles, two zones on two PostgreSQL databases)
// follows publishes and a rollback within 2 s and shows it in the cluster
// view; and the admin listener with mutual TLS.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/storage/postgres/pgtest"
	"github.com/keygate/keygate/internal/testkit"
)

const clusterToken = "admin-token-cluster-0123456789"

// zoneDatabase returns the URL of a fresh PostgreSQL database, dropped at
// cleanup. pgtest.URL skips loudly (or fails with CI=true) when the server
// is unreachable. Where the test role may not create databases, it falls
// back to a fresh schema (still a data source of its own), and says so.
func zoneDatabase(t testing.TB, zone string) string {
	t.Helper()
	base := pgtest.URL(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "kg_test_zone_" + zone + "_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Logf("zone %s: cannot create a database (%v); using a fresh schema on the test database instead", zone, err)
		return pgtest.SchemaURL(t, pgtest.Schema(t))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// twoZoneConfig: roles edge-a (zone a, data source zone-a-db at
// $ZONE_A_DB_URL) and edge-b (zone b, zone-b-db at $ZONE_B_DB_URL), both
// serving one token profile at /oauth/v2 with the given issuer.
func twoZoneConfig(t *testing.T, issuer, keys string) string {
	t.Helper()
	return testkit.ConfigDir(t, map[string]string{
		"00-cluster.yaml": `schema: 1
service-roles:
  edge-a: {zone: a, profiles: [token]}
  edge-b: {zone: b, profiles: [token]}
zones:
  a: {data-source: zone-a-db}
  b: {data-source: zone-b-db}
data-sources:
  zone-a-db: {type: postgres, url: $ZONE_A_DB_URL, max-connections: 4}
  zone-b-db: {type: postgres, url: $ZONE_B_DB_URL, max-connections: 4}
`,
		"10-keys.yaml": keys,
		"20-token.yaml": `profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: ` + issuer + `
    signing-keys: [k1]
    endpoints: [discovery, jwks]
`,
	})
}

type clusterNode struct {
	ID            string `json:"id"`
	Role          string `json:"role"`
	Zone          string `json:"zone"`
	DataSource    string `json:"data_source"`
	ConfigVersion string `json:"config_version"`
	ConfigHash    string `json:"config_hash"`
	State         string `json:"state"`
	Stale         bool   `json:"stale"`
}

type clusterView struct {
	Nodes  []clusterNode `json:"nodes"`
	Errors []string      `json:"errors"`
}

func (a *adminNode) cluster(t *testing.T) clusterView {
	t.Helper()
	code, body := a.call(t, "GET", "/admin/v1/cluster", clusterToken, nil)
	var v clusterView
	if code != http.StatusOK || json.Unmarshal(body, &v) != nil {
		t.Fatalf("GET /admin/v1/cluster: %d %s", code, body)
	}
	return v
}

func (v clusterView) node(id string) (clusterNode, bool) {
	i := slices.IndexFunc(v.Nodes, func(n clusterNode) bool { return n.ID == id })
	if i < 0 {
		return clusterNode{}, false
	}
	return v.Nodes[i], true
}

// TestClusterTwoZonesPublishRollback: admin node + three runtime nodes
// (edge-a ×2 in zone a, edge-b ×1 in zone b; each zone its own PostgreSQL
// database) mounting the admin's publish directory. Every publish and the
// rollback is served by every node within 2 s of the call returning, and
// GET /admin/v1/cluster shows each node on it with its role and zone. A
// node stopped cleanly shows as stopping and stale; a killed one goes
// stale when its heartbeat expires.
func TestClusterTwoZonesPublishRollback(t *testing.T) {
	zoneA, zoneB := zoneDatabase(t, "a"), zoneDatabase(t, "b")

	secrets := t.TempDir()
	signFile, verifyFile, _ := testkit.BundleKeys(t, secrets)
	tokenFile := filepath.Join(secrets, "token")
	check(t, os.WriteFile(tokenFile, []byte(clusterToken+"\n"), 0o600))
	keys := testkit.KeysConfig(map[string]string{"k1": testkit.KeyFile(t, secrets, "k1")})

	pubDir := t.TempDir()
	adm := startAdmin(t, "KEYGATE_PUBLISH_DIR="+pubDir, "KEYGATE_BUNDLE_SIGNING_KEY_FILE="+signFile, "KEYGATE_ADMIN_TOKEN_FILE="+tokenFile,
		"KEYGATE_CONFIG_DIR="+t.TempDir(), "ZONE_A_DB_URL="+zoneA, "ZONE_B_DB_URL="+zoneB)

	publish := func(issuer, want string) {
		t.Helper()
		code, v, stderr := publishCLI(t, adm.url, twoZoneConfig(t, issuer, keys), tokenFile, "--message", issuer)
		if code != 0 || v != want {
			t.Fatalf("publish %s: exit %d %q, want %s\n%s", issuer, code, v, want, stderr)
		}
	}

	// v1 goes first: a node that verifies bundles refuses to start on a
	// publish directory without a signed one.
	publish("http://localhost/one", "v1")

	type member struct {
		id, role, zone, ds string
		n                  *node
	}
	members := []*member{
		{id: "a1", role: "edge-a", zone: "a", ds: "zone-a-db"},
		{id: "a2", role: "edge-a", zone: "a", ds: "zone-a-db"},
		{id: "b1", role: "edge-b", zone: "b", ds: "zone-b-db"},
	}
	for _, m := range members {
		env := []string{"KEYGATE_SERVICE_ROLE=" + m.role, "KEYGATE_NODE_ID=" + m.id, "KEYGATE_BUNDLE_VERIFY_KEY_FILE=" + verifyFile,
			"KEYGATE_HEARTBEAT_INTERVAL=500ms"}
		// Each node gets only its own zone's database URL: variables are
		// resolved per role.
		if m.zone == "a" {
			env = append(env, "ZONE_A_DB_URL="+zoneA)
		} else {
			env = append(env, "ZONE_B_DB_URL="+zoneB)
		}
		m.n = launch(t, pubDir, env...) // started together: the two zone-a nodes migrate one database at once
	}
	for _, m := range members {
		m.n.AwaitServing(30 * time.Second)
		m.n.waitReady(t)
	}

	var nodes []*node
	for _, m := range members {
		nodes = append(nodes, m.n)
	}
	servedBy := func(issuer string) func() bool {
		return func() bool {
			for _, m := range members {
				if m.n.Issuer("/oauth/v2") != issuer {
					return false
				}
			}
			return true
		}
	}
	// clusterOn polls the cluster view until every node reports version
	// with its role, zone and data source, fresh; it returns the view.
	clusterOn := func(version string) clusterView {
		t.Helper()
		var v clusterView
		var why string
		deadline := time.Now().Add(15 * time.Second)
		for {
			v, why = adm.cluster(t), ""
			if len(v.Errors) > 0 {
				why = fmt.Sprintf("errors %q", v.Errors)
			}
			for _, m := range members {
				n, ok := v.node(m.id)
				switch {
				case !ok:
					why = m.id + " missing"
				case n.Role != m.role || n.Zone != m.zone || n.DataSource != m.ds:
					t.Fatalf("node %s in the cluster view: %+v; want role %s zone %s data source %s", m.id, n, m.role, m.zone, m.ds)
				case n.ConfigVersion != version || n.ConfigHash == "" || n.Stale || n.State != "serving":
					why = fmt.Sprintf("%s: %+v", m.id, n)
				}
			}
			if why == "" && len(v.Nodes) == len(members) {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster view not all on %s after 15s (%s): %+v", version, why, v)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	hashes := func(v clusterView) map[string]string {
		out := map[string]string{}
		for _, n := range v.Nodes {
			out[n.ID] = n.ConfigHash
		}
		return out
	}

	testkit.WaitFor(t, 15*time.Second, "v1 on every node", servedBy("http://localhost/one"))
	onV1 := hashes(clusterOn("v1"))

	// Publish v2: every node serves it within 2 s of the command returning.
	publish("http://localhost/two", "v2")
	waitPublished(t, "v2 on every node", "v2", time.Now(), nodes, servedBy("http://localhost/two"))
	onV2 := hashes(clusterOn("v2"))
	for id, h := range onV2 {
		if h == onV1[id] {
			t.Errorf("node %s reports the same config hash on v1 and v2", id)
		}
	}

	// Roll back to v1: every node returns within 2 s.
	if code, body := adm.call(t, "POST", "/admin/v1/bundles/v1/activate", clusterToken, nil); code != http.StatusOK {
		t.Fatalf("activate v1: %d %s", code, body)
	}
	waitPublished(t, "rollback to v1 on every node", "v1", time.Now(), nodes, servedBy("http://localhost/one"))
	if back := hashes(clusterOn("v1")); !mapsEqual(back, onV1) {
		t.Errorf("config hashes after the rollback %v, on v1 they were %v", back, onV1)
	}
	for _, m := range members {
		if st := m.n.Status(); st.ConfigVersion != "v1" || st.Role != m.role {
			t.Errorf("node %s /status: %+v", m.id, st)
		}
	}

	// A clean stop: the node says so at once (stopping, stale).
	a1, a2, b1 := members[0], members[1], members[2]
	a2.n.Signal(syscall.SIGTERM)
	if code := a2.n.WaitExit(15 * time.Second); code != 0 {
		t.Fatalf("a2 exit code %d", code)
	}
	testkit.WaitFor(t, 15*time.Second, "a2 stopping and stale in the cluster view", func() bool {
		n, ok := adm.cluster(t).node("a2")
		return ok && n.Stale && n.State == "stopping"
	})
	// A crash: the heartbeat expires after three intervals (1.5 s).
	check(t, b1.n.Cmd.Process.Kill())
	b1.n.WaitExit(5 * time.Second)
	testkit.WaitFor(t, 15*time.Second, "killed b1 stale in the cluster view", func() bool {
		n, ok := adm.cluster(t).node("b1")
		return ok && n.Stale
	})
	// a1 beats every 500ms and goes stale after 1.5s without a beat: on a
	// loaded machine one can be late, so wait for a fresh one.
	testkit.WaitFor(t, 15*time.Second, "a1, still running, fresh on v1 in the cluster view", func() bool {
		n, ok := adm.cluster(t).node("a1")
		return ok && !n.Stale && n.ConfigVersion == "v1"
	})
	if a1.n.Issuer("/oauth/v2") != "http://localhost/one" {
		t.Error("a1 stopped serving v1")
	}

	for _, m := range members {
		for _, s := range []string{zoneA, zoneB, clusterToken} {
			if m.n.Logs.Contains(s) {
				t.Errorf("node %s logged a secret", m.id)
			}
		}
	}
	for _, s := range []string{zoneA, zoneB, clusterToken} {
		if adm.Logs.Contains(s) {
			t.Error("the admin node logged a secret")
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestAdminMutualTLS: with KEYGATE_ADMIN_TLS_* the admin serves HTTPS and
// requires a client certificate from its CA; the bearer token is still
// required. `keygate bundle publish --cacert --cert --key` publishes.
func TestAdminMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, other := testkit.NewCA(t, "admin-ca"), testkit.NewCA(t, "other-ca")
	caFile := ca.WriteCert(t, dir, "admin-ca")
	srvCert, srvKey := ca.Issue(t, dir, "admin", true)
	cliCert, cliKey := ca.Issue(t, dir, "ci", false)
	strangerCert, strangerKey := other.Issue(t, dir, "stranger", false)
	tokenFile := filepath.Join(dir, "token")
	check(t, os.WriteFile(tokenFile, []byte(clusterToken), 0o600))
	signFile, _, _ := testkit.BundleKeys(t, dir)

	adm := startAdmin(t, "KEYGATE_PUBLISH_DIR="+t.TempDir(), "KEYGATE_BUNDLE_SIGNING_KEY_FILE="+signFile, "KEYGATE_ADMIN_TOKEN_FILE="+tokenFile,
		"KEYGATE_CONFIG_DIR="+t.TempDir(),
		"KEYGATE_ADMIN_TLS_CERT_FILE="+srvCert, "KEYGATE_ADMIN_TLS_KEY_FILE="+srvKey, "KEYGATE_ADMIN_TLS_CLIENT_CA_FILE="+caFile)
	base := "https://" + strings.TrimPrefix(adm.url, "http://")

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	do := func(certFile, keyFile, token string, body any) (int, []byte, error) {
		t.Helper()
		cfg := &tls.Config{RootCAs: roots}
		if certFile != "" {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			check(t, err)
			cfg.Certificates = []tls.Certificate{c}
		}
		tr := &http.Transport{TLSClientConfig: cfg}
		defer tr.CloseIdleConnections()
		data, _ := json.Marshal(body)
		req, err := http.NewRequest("POST", base+"/admin/v1/bundles", strings.NewReader(string(data)))
		check(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		var out json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out, nil
	}
	upload := map[string]any{"files": map[string]string{"00-token.yaml": testkit.TokenConfig(unusedDB, "http://localhost/tls", "k1"),
		"10-keys.yaml": testkit.KeysConfig(map[string]string{"k1": testkit.KeyFile(t, dir, "k1")})}, "author": "tls"}

	// No client certificate, or one from another CA: the handshake fails.
	if code, _, err := do("", "", clusterToken, upload); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("no client certificate: %d %v, want a handshake failure", code, err)
	}
	if code, _, err := do(strangerCert, strangerKey, clusterToken, upload); err == nil {
		t.Errorf("client certificate from another CA: %d, want a handshake failure", code)
	}
	// Plain HTTP on the TLS port gets no API.
	if code, _ := testkit.Get(adm.url + "/admin/v1/bundles"); code == http.StatusOK {
		t.Error("plain HTTP answered 200")
	}
	// A certificate without the token: 401.
	if code, body, err := do(cliCert, cliKey, "", upload); err != nil || code != http.StatusUnauthorized {
		t.Errorf("client certificate, no token: %d %s %v, want 401", code, body, err)
	}
	// Certificate and token: 201.
	if code, body, err := do(cliCert, cliKey, clusterToken, upload); err != nil || code != http.StatusCreated {
		t.Fatalf("client certificate and token: %d %s %v, want 201", code, body, err)
	}

	// The CLI: --cacert --cert --key publishes; without --cert it fails.
	src := testkit.ConfigDir(t, map[string]string{"00-token.yaml": testkit.TokenConfig(unusedDB, "http://localhost/cli", "k1"),
		"10-keys.yaml": testkit.KeysConfig(map[string]string{"k1": testkit.KeyFile(t, dir, "k2")})})
	if code, v, stderr := publishCLI(t, base, src, tokenFile, "--cacert", caFile, "--cert", cliCert, "--key", cliKey); code != 0 || v != "v2" {
		t.Fatalf("bundle publish with a client certificate: exit %d %q\n%s", code, v, stderr)
	}
	if code, _, stderr := publishCLI(t, base, src, tokenFile, "--cacert", caFile); code != 1 || !strings.Contains(stderr, "certificate") {
		t.Fatalf("bundle publish without a client certificate: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := publishCLI(t, base, src, tokenFile, "--cacert", caFile, "--cert", cliCert); code != 2 {
		t.Fatalf("bundle publish --cert without --key: exit %d, want 2\n%s", code, stderr)
	}
	if adm.Logs.Contains(clusterToken) {
		t.Error("the admin token was logged")
	}
}
