package ops

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/metrics"
	"github.com/keygate/keygate/internal/secret"
)

type status struct {
	Role         string        `json:"role"`
	Zone         string        `json:"zone"`
	ConfigHash   string        `json:"config_hash"`
	DatabaseURL  secret.String `json:"database_url"`
	LastReloadOK bool          `json:"last_reload_ok"`
}

type fixture struct {
	url      string
	metrics  *metrics.Metrics
	readyErr atomic.Pointer[error]
	srv      *Server
}

// start serves on 127.0.0.1:0 and shuts down when the test ends.
func start(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{metrics: metrics.New()}
	ready := func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			return errors.New("readiness check without a deadline")
		}
		if p := f.readyErr.Load(); p != nil {
			return *p
		}
		return nil
	}
	st := func() any {
		return status{Role: "eu-edge", Zone: "eu", ConfigHash: "abc123", DatabaseURL: secret.New("postgres://u:hunter2@db/kg"), LastReloadOK: true}
	}
	f.srv = New(f.metrics.Registry(), ready, st)
	f.url = serve(t, f.srv)
	return f
}

// serve runs srv on 127.0.0.1:0 until the test ends and returns its base URL.
func serve(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func TestHealthz(t *testing.T) {
	f := start(t)
	code, h, body := get(t, f.url+"/healthz")
	if code != 200 || body != `{"status":"ok"}` {
		t.Errorf("GET /healthz = %d %s", code, body)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}
	if cc := h.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}
	// A probe configured as HEAD gets the same answer.
	resp, err := http.Head(f.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("HEAD /healthz = %d", resp.StatusCode)
	}
}

func TestReadyz(t *testing.T) {
	f := start(t)
	code, _, body := get(t, f.url+"/readyz")
	if code != 200 || body != `{"status":"ok"}` {
		t.Errorf("ready: GET /readyz = %d %s", code, body)
	}

	notReady := errors.New("data source eu-db: ping: connection refused")
	f.readyErr.Store(&notReady)
	code, _, body = get(t, f.url+"/readyz")
	var got map[string]string
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if code != 503 || got["status"] != "unavailable" || got["error"] != notReady.Error() {
		t.Errorf("not ready: GET /readyz = %d %s", code, body)
	}

	f.readyErr.Store(nil)
	if code, _, _ := get(t, f.url+"/readyz"); code != 200 {
		t.Errorf("ready again: GET /readyz = %d", code)
	}
}

func TestStatus(t *testing.T) {
	f := start(t)
	code, _, body := get(t, f.url+"/status")
	if code != 200 {
		t.Fatalf("GET /status = %d %s", code, body)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	want := map[string]any{"role": "eu-edge", "zone": "eu", "config_hash": "abc123", "database_url": secret.Redacted, "last_reload_ok": true}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("status[%q] = %v, want %v", k, got[k], v)
		}
	}
	if strings.Contains(body, "hunter2") {
		t.Errorf("secret in /status: %s", body)
	}
}

func TestMetrics(t *testing.T) {
	f := start(t)
	f.metrics.ReloadSucceeded("abc123", "v7", "eu-edge", 12*time.Millisecond)
	code, h, body := get(t, f.url+"/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics = %d", code)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q", ct)
	}
	for _, want := range []string{
		`keygate_config_reloads_total{result="success"} 1`,
		`keygate_config_info{hash="abc123",role="eu-edge",version="v7"} 1`,
		`keygate_config_last_reload_successful 1`,
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestNotFound(t *testing.T) {
	f := start(t)
	for _, path := range []string{"/", "/nope", "/healthz/extra", "/oauth/v2/token"} {
		code, _, body := get(t, f.url+path)
		if code != 404 || body != `{"error":"not found"}` {
			t.Errorf("GET %s = %d %s", path, code, body)
		}
	}
}

func TestPanicIsContained(t *testing.T) {
	srv := New(metrics.New().Registry(), func(context.Context) error { return nil }, func() any { panic("status exploded") })
	url := serve(t, srv)
	code, _, body := get(t, url+"/status")
	if code != 500 || body != `{"error":"internal error"}` {
		t.Errorf("GET /status = %d %s; want 500 without the panic text", code, body)
	}
	if code, _, _ := get(t, url+"/healthz"); code != 200 {
		t.Errorf("server unhealthy after a panic: %d", code)
	}
}

// TestReadyTimeout: a hung check is cut off by the deadline, not by the probe.
func TestReadyTimeout(t *testing.T) {
	var sawDeadline atomic.Bool
	srv := New(metrics.New().Registry(), func(ctx context.Context) error {
		d, ok := ctx.Deadline()
		sawDeadline.Store(ok && time.Until(d) <= ReadyTimeout)
		return nil
	}, func() any { return nil })
	if code, _, _ := get(t, serve(t, srv)+"/readyz"); code != 200 {
		t.Fatalf("GET /readyz = %d", code)
	}
	if !sawDeadline.Load() {
		t.Errorf("ready func got no deadline within %s", ReadyTimeout)
	}
}

// TestShutdownCancelsReadiness: Shutdown must not wait out a hung check.
func TestShutdownCancelsReadiness(t *testing.T) {
	entered := make(chan struct{})
	srv := New(metrics.New().Registry(), func(ctx context.Context) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	}, func() any { return nil })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	got := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/readyz")
		if err != nil {
			got <- -1
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	<-entered
	start := time.Now()
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code := <-got; code != 503 {
		t.Errorf("in-flight /readyz = %d, want 503", code)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if d := time.Since(start); d >= ReadyTimeout {
		t.Errorf("Shutdown took %s, waiting out the readiness timeout", d)
	}
}

// TestShutdownBeforeServe: a Serve that loses the race to Shutdown returns.
func TestShutdownBeforeServe(t *testing.T) {
	srv := New(metrics.New().Registry(), func(context.Context) error { return nil }, func() any { return nil })
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(ln); err != nil {
		t.Errorf("Serve after Shutdown = %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still open after Serve returned")
	}
}
