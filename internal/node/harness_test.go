package node

// Helpers shared by the in-process load test and the benchmarks: config
// files (copied from tests/harness_test.go, made deterministic), a node on
// loopback listeners, goroutine accounting.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/settings"
)

// ---- config files (after tests/harness_test.go) ----

// tokenConfig is one token profile at /oauth/v2 serving discovery and jwks,
// with the sections it needs (schema, role, zone, a SQLite data source at
// db, which should be in a test's temporary directory).
func tokenConfig(db, issuer string, keys ...string) string {
	return baseConfig(db) + fmt.Sprintf(`profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: %s
    signing-keys: [%s]
    endpoints: [discovery, jwks]
`, issuer, strings.Join(keys, ", "))
}

// baseConfig is the schema, the default role, its zone and data source.
func baseConfig(db string) string {
	return fmt.Sprintf(`schema: 1
service-roles:
  default: {zone: local, profiles: [token]}
zones:
  local: {data-source: db}
data-sources:
  db: {type: sqlite, path: %q}
`, db)
}

// keysConfig is a keys section, each key read from a PEM file. Names with
// "ed" are EdDSA keys, the others ES256. Sorted, so equal input gives equal
// bytes (and an equal content hash).
func keysConfig(keys map[string]string) string {
	var b bytes.Buffer
	b.WriteString("keys:\n")
	names := make([]string, 0, len(keys))
	for name := range keys {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(&b, "  %s: {algorithm: %s, private-key: \"${file:%s}\"}\n", name, keyAlg(name), keys[name])
	}
	return b.String()
}

func keyAlg(name string) string {
	if strings.Contains(name, "ed") {
		return "EdDSA"
	}
	return "ES256"
}

// newKeyFile writes a fresh PEM private key and returns its path and PEM text.
func newKeyFile(tb testing.TB, dir, name string) (path, pemText string) {
	tb.Helper()
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
		tb.Fatal(err)
	}
	path = filepath.Join(dir, name+".pem")
	pemText = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err := os.WriteFile(path, []byte(pemText), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path, pemText
}

// writeAtomic writes like an editor: a temporary file renamed over the
// target. The temporary name is not *.yaml, so the watcher ignores it.
func writeAtomic(tb testing.TB, path, body string) {
	tb.Helper()
	tmp := stageFile(tb, path, body)
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// stageFile writes the temporary file of writeAtomic and returns its name,
// so a benchmark can time the rename alone.
func stageFile(tb testing.TB, path, body string) string {
	tb.Helper()
	tmp := path + ".tmp~"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		tb.Fatal(err)
	}
	return tmp
}

// ---- a node on loopback ----

// settingDefault is a setting's default as declared on the struct, so the
// benchmarks follow the shipped default if it changes.
func settingDefault(tb testing.TB, field string) time.Duration {
	tb.Helper()
	f, ok := reflect.TypeOf(settings.Settings{}).FieldByName(field)
	if !ok {
		tb.Fatalf("settings.Settings has no field %s", field)
	}
	d, err := time.ParseDuration(f.Tag.Get("default"))
	if err != nil {
		tb.Fatalf("settings.Settings.%s default: %v", field, err)
	}
	return d
}

func testSettings(dir string, debounce, poll time.Duration) settings.Settings {
	return settings.Settings{
		ConfigDir:       dir,
		ServiceRole:     "default",
		ListenAddr:      "127.0.0.1:0",
		OpsListenAddr:   "127.0.0.1:0",
		LogLevel:        "info",
		LogFormat:       "text",
		ReloadDebounce:  debounce,
		ReloadPoll:      poll,
		ShutdownTimeout: 5 * time.Second,
		MigrateOnStart:  true, // the shipped default
		NodeID:          "node-test",
	}
}

// logRing keeps the last lines the node logged, for failure reports.
type logRing struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRing) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if len(r.lines) == 200 {
			r.lines = r.lines[1:]
		}
		r.lines = append(r.lines, l)
	}
	return len(p), nil
}

func (r *logRing) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

// testNode is a node serving on loopback listeners.
type testNode struct {
	*Node
	public string // http://127.0.0.1:port
	ops    string
	served chan error // Serve's result
	logs   *logRing

	shutdownOnce sync.Once
	shutdownErr  error
}

// startTestNode builds a node with node.New, lets tweak adjust it before it serves,
// and serves it on 127.0.0.1:0 until it answers discovery. Cleanup
// shuts it down if the test did not.
func startTestNode(tb testing.TB, s settings.Settings, environ []string, tweak func(*Node)) *testNode {
	tb.Helper()
	logs := &logRing{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n, err := New(s, environ, log)
	if err != nil {
		tb.Fatalf("node.New: %v", err)
	}
	if tweak != nil {
		tweak(n)
	}
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	opsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pub.Close()
		tb.Fatal(err)
	}
	r := &testNode{Node: n, public: "http://" + pub.Addr().String(), ops: "http://" + opsLn.Addr().String(),
		served: make(chan error, 1), logs: logs}
	go func() { r.served <- n.Serve(pub, opsLn) }()
	tb.Cleanup(func() {
		r.shutdown(tb)
		if tb.Failed() {
			tb.Logf("node logs (last lines):\n%s", logs)
		}
	})
	c := &http.Client{Timeout: 2 * time.Second}
	defer c.CloseIdleConnections()
	waitUntil(tb, 10*time.Second, "the node to serve discovery", func() bool {
		code, _, _ := httpGet(c, r.public+discoveryPath)
		return code == http.StatusOK
	})
	return r
}

// shutdown shuts the node down (once) and waits for Serve to return.
func (r *testNode) shutdown(tb testing.TB) error {
	tb.Helper()
	r.shutdownOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), r.settings.ShutdownTimeout)
		defer cancel()
		r.shutdownErr = r.Shutdown(ctx)
		select {
		case err := <-r.served:
			if err != nil {
				r.shutdownErr = fmt.Errorf("Serve returned: %w", err)
			}
		case <-time.After(10 * time.Second):
			r.shutdownErr = fmt.Errorf("Serve did not return within 10s of Shutdown")
		}
	})
	return r.shutdownErr
}

const (
	discoveryPath = "/oauth/v2/.well-known/openid-configuration"
	jwksPath      = "/oauth/v2/jwks"
)

// httpGet returns the status and body; a transport error is returned as is.
func httpGet(c *http.Client, url string) (int, []byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// waitUntil checks cond every millisecond until it holds or the deadline passes.
func waitUntil(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	if !pollUntil(timeout, time.Millisecond, cond) {
		tb.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// pollUntil reports whether cond held before timeout, checking every interval.
func pollUntil(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
	return true
}

// ---- goroutine accounting ----

// processGlobal are goroutines a library starts once per process and never
// stops; they are not a node's leak. fasthttp starts its Date-header ticker
// on the first response any fasthttp server writes.
var processGlobal = []string{
	"github.com/valyala/fasthttp.updateServerDate",
}

// listGoroutines returns the goroutines of the process, by id, with their
// stacks, without the process-global ones.
func listGoroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := goruntime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
next:
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, fn := range processGlobal {
			if strings.Contains(g, fn) {
				continue next
			}
		}
		header, _, _ := strings.Cut(g, "\n")
		id := strings.Fields(header)
		if len(id) < 2 {
			continue
		}
		out[id[1]] = g
	}
	return out
}

func numGoroutines() int { return len(listGoroutines()) }

// newGoroutines returns the stacks of the goroutines that are in none of
// the bases: started since. Goroutines ids are never reused, so a
// goroutine of an earlier test that exits meanwhile neither hides nor
// fakes a new one.
func newGoroutines(bases ...map[string]string) []string {
	var out []string
next:
	for id, g := range listGoroutines() {
		for _, base := range bases {
			if _, ok := base[id]; ok {
				continue next
			}
		}
		out = append(out, g)
	}
	return out
}
