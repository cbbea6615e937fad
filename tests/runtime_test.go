package tests

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testkit"
)

// A changed file is served without a restart; a broken edit is not, and
// /status and the metrics say why.
func TestReloadOnChangeAndKeepLastGoodConfig(t *testing.T) {
	secrets := t.TempDir()
	k1 := testkit.KeyFile(t, secrets, "k1")
	dir := testkit.ConfigDir(t, map[string]string{
		"profiles.yaml": testkit.TokenConfig(unusedDB, "http://localhost/one", "k1"),
		"keys.yaml":     testkit.KeysConfig(map[string]string{"k1": k1}),
	})
	n := startNode(t, dir)
	if got := n.Issuer("/oauth/v2"); got != "http://localhost/one" {
		t.Fatalf("issuer = %q", got)
	}
	// Hints with nothing changed (the periodic check) must not rebuild.
	testkit.WaitFor(t, 10*time.Second, "a periodic check", func() bool {
		return strings.Contains(n.Metrics(), `keygate_config_reloads_total{result="unchanged"}`) &&
			!strings.Contains(n.Metrics(), `keygate_config_reloads_total{result="unchanged"} 0`)
	})
	if m := grep(n.Metrics(), `keygate_config_reloads_total{result="success"}`); m != `keygate_config_reloads_total{result="success"} 1` {
		t.Errorf("an unchanged config was rebuilt: %s", m)
	}
	before := n.Status()

	testkit.WriteAtomic(t, filepath.Join(dir, "profiles.yaml"), testkit.TokenConfig(unusedDB, "http://localhost/two", "k1"))
	testkit.WaitFor(t, 15*time.Second, "the new issuer", func() bool { return n.Issuer("/oauth/v2") == "http://localhost/two" })
	// The reloader swaps the runtime in, then records the status: wait for it.
	if s := n.WaitLoaded(before); s.ConfigHash == before.ConfigHash || !s.LoadedSince(before) {
		t.Errorf("status after reload: %+v", s)
	}

	// A broken edit: an unknown key. The old config keeps serving.
	testkit.WriteAtomic(t, filepath.Join(dir, "profiles.yaml"), strings.Replace(testkit.TokenConfig(unusedDB, "http://localhost/three", "k1"), "endpoints:", "endpoint:", 1))
	testkit.WaitFor(t, 15*time.Second, "the failed reload in /status", func() bool { return n.Status().LastResult == "failure" })
	s := n.Status()
	if !strings.Contains(s.LastError, `profiles.yaml:14:5: profiles.token.endpoint: unknown key "endpoint" (did you mean "endpoints"?)`) {
		t.Errorf("last_error = %q", s.LastError)
	}
	if got := n.Issuer("/oauth/v2"); got != "http://localhost/two" {
		t.Errorf("after a broken edit the issuer is %q, want the last good one", got)
	}
	if m := n.Metrics(); !strings.Contains(m, `keygate_config_reloads_total{result="failure"}`) ||
		!strings.Contains(m, `keygate_config_last_reload_successful 0`) {
		t.Errorf("metrics do not show the failure:\n%s", grep(m, "keygate_config"))
	}
	// Logged after /status records the failure, and read through a pipe.
	testkit.WaitFor(t, 15*time.Second, "the error log of the failed reload", func() bool {
		return n.Logs.Contains("configuration not loaded; still serving the last good one")
	})

	// Fixing it loads it.
	broken := n.Status()
	testkit.WriteAtomic(t, filepath.Join(dir, "profiles.yaml"), testkit.TokenConfig(unusedDB, "http://localhost/three", "k1"))
	testkit.WaitFor(t, 15*time.Second, "the fixed config", func() bool { return n.Issuer("/oauth/v2") == "http://localhost/three" })
	if s := n.WaitLoaded(broken); !s.LoadedSince(broken) {
		t.Errorf("status after the fix: %+v", s)
	}
}

// Kubernetes mounts a ConfigMap as hidden timestamped directories, a ..data
// symlink swapped by rename, and top-level symlinks into ..data.
func TestKubernetesConfigMapSwap(t *testing.T) {
	secrets := t.TempDir()
	k1 := testkit.KeyFile(t, secrets, "k1")
	dir := t.TempDir()
	kube := &kubeVolume{t: t, dir: dir}
	kube.write(map[string]string{
		"profiles.yaml": testkit.TokenConfig(unusedDB, "http://localhost/v1", "k1"),
		"keys.yaml":     testkit.KeysConfig(map[string]string{"k1": k1}),
	})
	n := startNode(t, dir)
	if got := n.Issuer("/oauth/v2"); got != "http://localhost/v1" {
		t.Fatalf("issuer = %q", got)
	}
	kube.write(map[string]string{
		"profiles.yaml": testkit.TokenConfig(unusedDB, "http://localhost/v2", "k1"),
		"keys.yaml":     testkit.KeysConfig(map[string]string{"k1": k1}),
	})
	testkit.WaitFor(t, 15*time.Second, "the swapped ConfigMap", func() bool { return n.Issuer("/oauth/v2") == "http://localhost/v2" })
}

// A key rotation through config: a new key listed last is published in
// JWKS beside the old one; dropping the old one unpublishes it.
func TestKeyRotationPublishesBothKeys(t *testing.T) {
	secrets := t.TempDir()
	keys := map[string]string{"k1": testkit.KeyFile(t, secrets, "k1"), "k2-ed": testkit.KeyFile(t, secrets, "k2-ed")}
	dir := testkit.ConfigDir(t, map[string]string{
		"profiles.yaml": testkit.TokenConfig(unusedDB, "http://localhost/id", "k1"),
		"keys.yaml":     testkit.KeysConfig(keys),
	})
	n := startNode(t, dir)
	first := n.KIDs("/oauth/v2")
	if len(first) != 1 {
		t.Fatalf("kids = %v", first)
	}
	testkit.WriteAtomic(t, filepath.Join(dir, "profiles.yaml"), testkit.TokenConfig(unusedDB, "http://localhost/id", "k1", "k2-ed"))
	testkit.WaitFor(t, 15*time.Second, "two keys in JWKS", func() bool { return len(n.KIDs("/oauth/v2")) == 2 })
	both := n.KIDs("/oauth/v2")
	if !slices.Contains(both, first[0]) {
		t.Errorf("the old key %s left JWKS during rotation: %v", first[0], both)
	}
	testkit.WriteAtomic(t, filepath.Join(dir, "profiles.yaml"), testkit.TokenConfig(unusedDB, "http://localhost/id", "k2-ed"))
	testkit.WaitFor(t, 15*time.Second, "the old key to leave JWKS", func() bool {
		k := n.KIDs("/oauth/v2")
		return len(k) == 1 && k[0] != first[0]
	})

	// Rotating the key file itself (a Kubernetes Secret update) reloads too.
	old := n.KIDs("/oauth/v2")[0]
	replacement := testkit.KeyFile(t, t.TempDir(), "k2-ed")
	data, err := os.ReadFile(replacement)
	if err != nil {
		t.Fatal(err)
	}
	testkit.WriteAtomic(t, keys["k2-ed"], string(data))
	testkit.WaitFor(t, 15*time.Second, "the rotated key file", func() bool {
		k := n.KIDs("/oauth/v2")
		return len(k) == 1 && k[0] != old
	})
}

// SIGHUP asks for a reload: with nothing changed, it is recorded as such.
func TestSIGHUPReloads(t *testing.T) {
	secrets := t.TempDir()
	dir := testkit.ConfigDir(t, map[string]string{
		"profiles.yaml": testkit.TokenConfig(unusedDB, "http://localhost/id", "k1"),
		"keys.yaml":     testkit.KeysConfig(map[string]string{"k1": testkit.KeyFile(t, secrets, "k1")}),
	})
	n := startNode(t, dir, "KEYGATE_RELOAD_POLL_INTERVAL=0")
	unchanged := func() string { return grep(n.Metrics(), `keygate_config_reloads_total{result="unchanged"}`) }
	before := unchanged()
	n.Signal(syscall.SIGHUP)
	testkit.WaitFor(t, 15*time.Second, "a SIGHUP reload in /status", func() bool {
		s := n.Status()
		return s.LastTrigger == "sighup" && s.LastResult == "unchanged"
	})
	if after := unchanged(); after == before {
		t.Errorf("the unchanged-reload counter did not move: %s", after)
	}
}

// SIGTERM stops accepting connections but finishes the request in flight.
func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	secrets := t.TempDir()
	dir := testkit.ConfigDir(t, map[string]string{
		"profiles.yaml": testkit.TokenConfig(unusedDB, "http://localhost/id", "k1"),
		"keys.yaml":     testkit.KeysConfig(map[string]string{"k1": testkit.KeyFile(t, secrets, "k1")}),
	})
	n := startNode(t, dir)
	addr := strings.TrimPrefix(n.Public(), "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A request whose headers are still arriving when SIGTERM comes.
	fmt.Fprintf(conn, "GET /oauth/v2/jwks HTTP/1.1\r\nHost: %s\r\n", addr)
	testkit.WaitFor(t, 15*time.Second, "the request to be in flight", func() bool {
		return strings.Contains(n.Metrics(), "keygate_") // the server is up; the partial request is read
	})
	n.Signal(syscall.SIGTERM)
	testkit.WaitFor(t, 15*time.Second, "shutdown to begin", func() bool { return n.Logs.Contains("shutting down") })
	testkit.WaitFor(t, 15*time.Second, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	fmt.Fprint(conn, "\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the in-flight request was dropped: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("in-flight request: status %d", resp.StatusCode)
	}
	if code := n.WaitExit(15 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}

// An invalid config at start-up: exit non-zero with every error.
func TestInvalidConfigAtStartExits(t *testing.T) {
	dir := testkit.ConfigDir(t, map[string]string{
		"profiles.yaml": strings.Replace(testkit.TokenConfig(unusedDB, "$ISSUER", "k9"), "endpoints: [discovery, jwks]", "endpoints: [discovery, jwk]", 1),
	})
	n := launch(t, dir)
	if code := n.WaitExit(10 * time.Second); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	logs := n.Logs.String()
	for _, want := range []string{
		`profiles.yaml:12:13: profiles.token.issuer: variable ISSUER is not set`,
		`profiles.yaml:13:20: profiles.token.signing-keys[0]: refers to key "k9", which is not defined`,
		`profiles.yaml:14:28: profiles.token.endpoints[1]: "jwk" is not one of`,
		`the configuration in ` + dir + ` is invalid; not starting`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("output lacks %q:\n%s", want, logs)
		}
	}
}

func grep(s, substr string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substr) && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// kubeVolume reproduces kubelet's atomic writer for ConfigMap volumes.
type kubeVolume struct {
	t   *testing.T
	dir string
	seq int
	cur string
}

func (k *kubeVolume) write(files map[string]string) {
	t := k.t
	t.Helper()
	k.seq++
	ts := fmt.Sprintf("..2026_11_23_10_00_%02d.%09d", k.seq, k.seq)
	tsDir := filepath.Join(k.dir, ts)
	check(t, os.Mkdir(tsDir, 0o755))
	for name, body := range files {
		check(t, os.WriteFile(filepath.Join(tsDir, name), []byte(body), 0o644))
	}
	tmp := filepath.Join(k.dir, "..data_tmp")
	check(t, os.Symlink(ts, tmp))
	check(t, os.Rename(tmp, filepath.Join(k.dir, "..data")))
	for name := range files {
		link := filepath.Join(k.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			check(t, os.Symlink(filepath.Join("..data", name), link))
		}
	}
	if k.cur != "" {
		check(t, os.RemoveAll(filepath.Join(k.dir, k.cur)))
	}
	k.cur = ts
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A ${file:} target that is a FIFO, a device or far too large is a failed
// reload naming the file: the node keeps serving, later edits and SIGTERM
// still work (a blocking read used to stop the reloader for good).
func TestUnreadableFileTargetFailsTheReload(t *testing.T) {
	secrets := t.TempDir()
	k1 := testkit.KeyFile(t, secrets, "k1")
	fifo := filepath.Join(secrets, "fifo.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(secrets, "big.pem")
	if err := os.WriteFile(big, make([]byte, 100<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := testkit.ConfigDir(t, map[string]string{
		"profiles.yaml": testkit.TokenConfig(unusedDB, "http://localhost/one", "k1"),
		"keys.yaml":     testkit.KeysConfig(map[string]string{"k1": k1}),
	})
	n := startNode(t, dir)
	for _, target := range []string{fifo, "/dev/zero", big} {
		before := n.Status().Failures
		testkit.WriteAtomic(t, filepath.Join(dir, "keys.yaml"), testkit.KeysConfig(map[string]string{"k1": target}))
		testkit.WaitFor(t, 15*time.Second, "the failed reload of "+target, func() bool { return n.Status().Failures > before })
		if s := n.Status(); !strings.Contains(s.LastError, "read ${file:"+target+"}") {
			t.Errorf("last_error does not name %s: %q", target, s.LastError)
		}
		if got := n.Issuer("/oauth/v2"); got != "http://localhost/one" {
			t.Fatalf("after a failed reload the issuer is %q", got)
		}
	}
	testkit.WriteAtomic(t, filepath.Join(dir, "keys.yaml"), testkit.KeysConfig(map[string]string{"k1": k1}))
	testkit.WriteAtomic(t, filepath.Join(dir, "profiles.yaml"), testkit.TokenConfig(unusedDB, "http://localhost/two", "k1"))
	testkit.WaitFor(t, 15*time.Second, "the next good edit", func() bool { return n.Issuer("/oauth/v2") == "http://localhost/two" })
	n.Signal(syscall.SIGTERM)
	if code := n.WaitExit(15 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}
