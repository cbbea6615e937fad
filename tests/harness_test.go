// Package tests holds black-box tests of the built keygate binary: they
// start it as a user would, with files and environment variables, and watch
// only what a user can see (HTTP, exit codes, logs).
package tests

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keygate-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "keygate")
	build := exec.Command("go", "build", "-o", binary, "../cmd/keygate")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build keygate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// node is a running keygate runtime process.
type node struct {
	t      *testing.T
	cmd    *exec.Cmd
	public string // http://127.0.0.1:port; set before serving is closed
	ops    string
	logs   *logBuffer
	// serving is closed once the node logged its listeners' addresses.
	serving chan struct{}
	exited  chan error
}

type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) add(line string) {
	b.mu.Lock()
	b.lines = append(b.lines, line)
	b.mu.Unlock()
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

func (b *logBuffer) contains(s string) bool { return strings.Contains(b.String(), s) }

// startNode runs `keygate runtime` on dir with loopback listeners on free
// ports, and waits until it serves.
func startNode(t *testing.T, dir string, env ...string) *node {
	t.Helper()
	n := launch(t, dir, env...)
	select {
	case <-n.serving:
	case err := <-n.exited:
		t.Fatalf("keygate exited early: %v\n%s", err, n.logs)
	case <-time.After(15 * time.Second):
		t.Fatalf("keygate did not start serving within 15s\n%s", n.logs)
	}
	return n
}

func launch(t *testing.T, dir string, env ...string) *node {
	t.Helper()
	cmd := exec.Command(binary, "runtime")
	// Relative data source paths (./unused.db) land in a scratch working
	// directory, not in the repository.
	cmd.Dir = t.TempDir()
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"KEYGATE_CONFIG_DIR=" + dir,
		"KEYGATE_LISTEN_ADDR=127.0.0.1:0",
		"KEYGATE_OPS_LISTEN_ADDR=127.0.0.1:0",
		"KEYGATE_LOG_FORMAT=json",
		"KEYGATE_LOG_LEVEL=debug",
		"KEYGATE_RELOAD_POLL_INTERVAL=2s",
		"KEYGATE_SHUTDOWN_TIMEOUT=10s",
	}, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, cmd: cmd, logs: &logBuffer{}, serving: make(chan struct{}), exited: make(chan error, 1)}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			n.logs.add(line)
			var entry struct{ Msg, Public, Ops string }
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "runtime node serving" && n.public == "" {
				n.public, n.ops = "http://"+entry.Public, "http://"+entry.Ops
				close(n.serving)
			}
		}
	}()
	go func() {
		<-scanned
		n.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-n.exited
		}
		if t.Failed() {
			t.Logf("keygate logs:\n%s", n.logs)
		}
	})
	return n
}

func (n *node) signal(sig syscall.Signal) {
	n.t.Helper()
	if err := n.cmd.Process.Signal(sig); err != nil {
		n.t.Fatal(err)
	}
}

// waitExit waits for the process to exit and returns its exit code.
func (n *node) waitExit(timeout time.Duration) int {
	n.t.Helper()
	select {
	case <-n.exited:
		return n.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		n.t.Fatalf("keygate did not exit within %s", timeout)
		return -1
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var client = &http.Client{Timeout: 5 * time.Second}

// get returns status and body; a transport error is status 0.
func get(url string) (int, []byte) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func getJSON(t *testing.T, url string, into any) {
	t.Helper()
	code, body := get(url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	if err := json.Unmarshal(body, into); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
}

type discovery struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

func (n *node) issuer(path string) string {
	code, body := get(n.public + path + "/.well-known/openid-configuration")
	if code != http.StatusOK {
		return ""
	}
	var d discovery
	_ = json.Unmarshal(body, &d)
	return d.Issuer
}

func (n *node) kids(path string) []string {
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	getJSON(n.t, n.public+path+"/jwks", &set)
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KID)
	}
	return kids
}

type status struct {
	Role          string    `json:"role"`
	ConfigHash    string    `json:"config_hash"`
	ConfigVersion string    `json:"config_version"`
	LoadedAt      time.Time `json:"loaded_at"`
	LastResult    string    `json:"last_result"`
	LastError     string    `json:"last_error"`
	LastTrigger   string    `json:"last_trigger"`
	Reloads       int       `json:"reloads"`
	Failures      int       `json:"failures"`
}

func (n *node) status() status {
	var s status
	getJSON(n.t, n.ops+"/status", &s)
	return s
}

func (n *node) metrics() string {
	_, body := get(n.ops + "/metrics")
	return string(body)
}

// configDir writes a config directory for tests: one token profile at
// /oauth/v2 with the given issuer and keys.
func configDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, files)
	return dir
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		writeAtomic(t, filepath.Join(dir, name), body)
	}
}

// writeAtomic writes like an editor: a temporary file renamed over the target.
func writeAtomic(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp~"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func tokenConfig(issuer string, keys ...string) string {
	return fmt.Sprintf(`schema: 1
service-roles:
  default: {zone: local, profiles: [token]}
zones:
  local: {data-source: db}
data-sources:
  db: {type: sqlite, path: ./unused.db}
profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: %s
    signing-keys: [%s]
    endpoints: [discovery, jwks]
`, issuer, strings.Join(keys, ", "))
}

// keyFile returns a keys section for one key read from a PEM file.
func keysConfig(keys map[string]string) string {
	var b bytes.Buffer
	b.WriteString("keys:\n")
	for name, file := range keys {
		alg := "ES256"
		if strings.Contains(name, "ed") {
			alg = "EdDSA"
		}
		fmt.Fprintf(&b, "  %s: {algorithm: %s, private-key: \"${file:%s}\"}\n", name, alg, file)
	}
	return b.String()
}

// newKeyFile writes a fresh PEM private key and returns its path.
func newKeyFile(t *testing.T, dir, name string) string {
	t.Helper()
	var der []byte
	var err error
	if strings.Contains(name, "ed") {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		der, err = x509.MarshalPKCS8PrivateKey(priv)
	} else {
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err = x509.MarshalPKCS8PrivateKey(priv)
	}
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
