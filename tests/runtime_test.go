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
)

// A changed file is served without a restart; a broken edit is not, and
// /status and the metrics say why.
func TestReloadOnChangeAndKeepLastGoodConfig(t *testing.T) {
	secrets := t.TempDir()
	k1 := newKeyFile(t, secrets, "k1")
	dir := configDir(t, map[string]string{
		"profiles.yaml": tokenConfig("http://localhost/one", "k1"),
		"keys.yaml":     keysConfig(map[string]string{"k1": k1}),
	})
	n := startNode(t, dir)
	if got := n.issuer("/oauth/v2"); got != "http://localhost/one" {
		t.Fatalf("issuer = %q", got)
	}
	// Hints with nothing changed (the periodic check) must not rebuild.
	waitFor(t, 10*time.Second, "a periodic check", func() bool {
		return strings.Contains(n.metrics(), `keygate_config_reloads_total{result="unchanged"}`) &&
			!strings.Contains(n.metrics(), `keygate_config_reloads_total{result="unchanged"} 0`)
	})
	if m := grep(n.metrics(), `keygate_config_reloads_total{result="success"}`); m != `keygate_config_reloads_total{result="success"} 1` {
		t.Errorf("an unchanged config was rebuilt: %s", m)
	}
	before := n.status()

	writeAtomic(t, filepath.Join(dir, "profiles.yaml"), tokenConfig("http://localhost/two", "k1"))
	waitFor(t, 15*time.Second, "the new issuer", func() bool { return n.issuer("/oauth/v2") == "http://localhost/two" })
	// The reloader swaps the runtime in, then records the status: wait for it.
	if s := n.waitLoaded(t, before); s.ConfigHash == before.ConfigHash || !s.loadedSince(before) {
		t.Errorf("status after reload: %+v", s)
	}

	// A broken edit: an unknown key. The old config keeps serving.
	writeAtomic(t, filepath.Join(dir, "profiles.yaml"), strings.Replace(tokenConfig("http://localhost/three", "k1"), "endpoints:", "endpoint:", 1))
	waitFor(t, 15*time.Second, "the failed reload in /status", func() bool { return n.status().LastResult == "failure" })
	s := n.status()
	if !strings.Contains(s.LastError, `profiles.yaml:14:5: profiles.token.endpoint: unknown key "endpoint" (did you mean "endpoints"?)`) {
		t.Errorf("last_error = %q", s.LastError)
	}
	if got := n.issuer("/oauth/v2"); got != "http://localhost/two" {
		t.Errorf("after a broken edit the issuer is %q, want the last good one", got)
	}
	if m := n.metrics(); !strings.Contains(m, `keygate_config_reloads_total{result="failure"}`) ||
		!strings.Contains(m, `keygate_config_last_reload_successful 0`) {
		t.Errorf("metrics do not show the failure:\n%s", grep(m, "keygate_config"))
	}
	// Logged after /status records the failure, and read through a pipe.
	waitFor(t, 15*time.Second, "the error log of the failed reload", func() bool {
		return n.logs.contains("configuration not loaded; still serving the last good one")
	})

	// Fixing it loads it.
	broken := n.status()
	writeAtomic(t, filepath.Join(dir, "profiles.yaml"), tokenConfig("http://localhost/three", "k1"))
	waitFor(t, 15*time.Second, "the fixed config", func() bool { return n.issuer("/oauth/v2") == "http://localhost/three" })
	if s := n.waitLoaded(t, broken); !s.loadedSince(broken) {
		t.Errorf("status after the fix: %+v", s)
	}
}

// Kubernetes mounts a ConfigMap as hidden timestamped directories, a ..data
// symlink swapped by rename, and top-level symlinks into ..data.
func TestKubernetesConfigMapSwap(t *testing.T) {
	secrets := t.TempDir()
	k1 := newKeyFile(t, secrets, "k1")
	dir := t.TempDir()
	kube := &kubeVolume{t: t, dir: dir}
	kube.write(map[string]string{
		"profiles.yaml": tokenConfig("http://localhost/v1", "k1"),
		"keys.yaml":     keysConfig(map[string]string{"k1": k1}),
	})
	n := startNode(t, dir)
	if got := n.issuer("/oauth/v2"); got != "http://localhost/v1" {
		t.Fatalf("issuer = %q", got)
	}
	kube.write(map[string]string{
		"profiles.yaml": tokenConfig("http://localhost/v2", "k1"),
		"keys.yaml":     keysConfig(map[string]string{"k1": k1}),
	})
	waitFor(t, 15*time.Second, "the swapped ConfigMap", func() bool { return n.issuer("/oauth/v2") == "http://localhost/v2" })
}

// A key rotation through config: a new key listed last is published in
// JWKS beside the old one; dropping the old one unpublishes it.
func TestKeyRotationPublishesBothKeys(t *testing.T) {
	secrets := t.TempDir()
	keys := map[string]string{"k1": newKeyFile(t, secrets, "k1"), "k2-ed": newKeyFile(t, secrets, "k2-ed")}
	dir := configDir(t, map[string]string{
		"profiles.yaml": tokenConfig("http://localhost/id", "k1"),
		"keys.yaml":     keysConfig(keys),
	})
	n := startNode(t, dir)
	first := n.kids("/oauth/v2")
	if len(first) != 1 {
		t.Fatalf("kids = %v", first)
	}
	writeAtomic(t, filepath.Join(dir, "profiles.yaml"), tokenConfig("http://localhost/id", "k1", "k2-ed"))
	waitFor(t, 15*time.Second, "two keys in JWKS", func() bool { return len(n.kids("/oauth/v2")) == 2 })
	both := n.kids("/oauth/v2")
	if !slices.Contains(both, first[0]) {
		t.Errorf("the old key %s left JWKS during rotation: %v", first[0], both)
	}
	writeAtomic(t, filepath.Join(dir, "profiles.yaml"), tokenConfig("http://localhost/id", "k2-ed"))
	waitFor(t, 15*time.Second, "the old key to leave JWKS", func() bool {
		k := n.kids("/oauth/v2")
		return len(k) == 1 && k[0] != first[0]
	})

	// Rotating the key file itself (a Kubernetes Secret update) reloads too.
	old := n.kids("/oauth/v2")[0]
	replacement := newKeyFile(t, t.TempDir(), "k2-ed")
	data, err := os.ReadFile(replacement)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, keys["k2-ed"], string(data))
	waitFor(t, 15*time.Second, "the rotated key file", func() bool {
		k := n.kids("/oauth/v2")
		return len(k) == 1 && k[0] != old
	})
}

// SIGHUP asks for a reload: with nothing changed, it is recorded as such.
func TestSIGHUPReloads(t *testing.T) {
	secrets := t.TempDir()
	dir := configDir(t, map[string]string{
		"profiles.yaml": tokenConfig("http://localhost/id", "k1"),
		"keys.yaml":     keysConfig(map[string]string{"k1": newKeyFile(t, secrets, "k1")}),
	})
	n := startNode(t, dir, "KEYGATE_RELOAD_POLL_INTERVAL=0")
	unchanged := func() string { return grep(n.metrics(), `keygate_config_reloads_total{result="unchanged"}`) }
	before := unchanged()
	n.signal(syscall.SIGHUP)
	waitFor(t, 15*time.Second, "a SIGHUP reload in /status", func() bool {
		s := n.status()
		return s.LastTrigger == "sighup" && s.LastResult == "unchanged"
	})
	if after := unchanged(); after == before {
		t.Errorf("the unchanged-reload counter did not move: %s", after)
	}
}

// SIGTERM stops accepting connections but finishes the request in flight.
func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	secrets := t.TempDir()
	dir := configDir(t, map[string]string{
		"profiles.yaml": tokenConfig("http://localhost/id", "k1"),
		"keys.yaml":     keysConfig(map[string]string{"k1": newKeyFile(t, secrets, "k1")}),
	})
	n := startNode(t, dir)
	addr := strings.TrimPrefix(n.public, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A request whose headers are still arriving when SIGTERM comes.
	fmt.Fprintf(conn, "GET /oauth/v2/jwks HTTP/1.1\r\nHost: %s\r\n", addr)
	waitFor(t, 15*time.Second, "the request to be in flight", func() bool {
		return strings.Contains(n.metrics(), "keygate_") // the server is up; the partial request is read
	})
	n.signal(syscall.SIGTERM)
	waitFor(t, 15*time.Second, "shutdown to begin", func() bool { return n.logs.contains("shutting down") })
	waitFor(t, 15*time.Second, "the listener to close", func() bool {
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
	if code := n.waitExit(15 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}

// An invalid config at start-up: exit non-zero with every error.
func TestInvalidConfigAtStartExits(t *testing.T) {
	dir := configDir(t, map[string]string{
		"profiles.yaml": strings.Replace(tokenConfig("$ISSUER", "k9"), "endpoints: [discovery, jwks]", "endpoints: [discovery, jwk]", 1),
	})
	n := launch(t, dir)
	if code := n.waitExit(10 * time.Second); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	logs := n.logs.String()
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

func check(t *testing.T, err error) {
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
	k1 := newKeyFile(t, secrets, "k1")
	fifo := filepath.Join(secrets, "fifo.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(secrets, "big.pem")
	if err := os.WriteFile(big, make([]byte, 100<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := configDir(t, map[string]string{
		"profiles.yaml": tokenConfig("http://localhost/one", "k1"),
		"keys.yaml":     keysConfig(map[string]string{"k1": k1}),
	})
	n := startNode(t, dir)
	for _, target := range []string{fifo, "/dev/zero", big} {
		before := n.status().Failures
		writeAtomic(t, filepath.Join(dir, "keys.yaml"), keysConfig(map[string]string{"k1": target}))
		waitFor(t, 15*time.Second, "the failed reload of "+target, func() bool { return n.status().Failures > before })
		if s := n.status(); !strings.Contains(s.LastError, "read ${file:"+target+"}") {
			t.Errorf("last_error does not name %s: %q", target, s.LastError)
		}
		if got := n.issuer("/oauth/v2"); got != "http://localhost/one" {
			t.Fatalf("after a failed reload the issuer is %q", got)
		}
	}
	writeAtomic(t, filepath.Join(dir, "keys.yaml"), keysConfig(map[string]string{"k1": k1}))
	writeAtomic(t, filepath.Join(dir, "profiles.yaml"), tokenConfig("http://localhost/two", "k1"))
	waitFor(t, 15*time.Second, "the next good edit", func() bool { return n.issuer("/oauth/v2") == "http://localhost/two" })
	n.signal(syscall.SIGTERM)
	if code := n.waitExit(15 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}
