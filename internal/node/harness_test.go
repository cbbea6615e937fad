package node

// Helpers shared by the in-process load test and the benchmarks: a node
// on loopback listeners and goroutine accounting. Keys, configs, files and
// waits come from internal/testkit.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/settings"
	"github.com/keygate/keygate/internal/testkit"
)

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
	testkit.WaitEvery(tb, 10*time.Second, time.Millisecond, "the node to serve discovery", func() bool {
		code, _, _ := testkit.HTTPGet(c, r.public+discoveryPath)
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
