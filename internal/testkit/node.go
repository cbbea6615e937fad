package testkit

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Node is a `keygate runtime` process under test.
type Node struct {
	*Proc
	t testing.TB
}

// LaunchNode starts binary as a runtime node on configDir with loopback
// listeners on free ports, debug logs and a 2 s poll, plus env, in a
// scratch working directory (relative data source paths such as
// ./unused.db land there, not in the repository). It does not wait; the
// node is killed at cleanup, and its logs are shown if the test failed.
func LaunchNode(tb testing.TB, binary, configDir string, env ...string) *Node {
	tb.Helper()
	cmd := exec.Command(binary, "runtime")
	cmd.Dir = tb.TempDir()
	cmd.Env = append(append(NodeEnv(configDir), "KEYGATE_LOG_LEVEL=debug", "KEYGATE_RELOAD_POLL_INTERVAL=2s"), env...)
	p, err := Start(cmd, ServingRuntime)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if p.Alive() {
			p.Kill()
		}
		if tb.Failed() {
			tb.Logf("keygate logs:\n%s", p.Logs)
		}
	})
	return &Node{Proc: p, t: tb}
}

// StartNode is LaunchNode, then AwaitServing within 15 s.
func StartNode(tb testing.TB, binary, configDir string, env ...string) *Node {
	tb.Helper()
	n := LaunchNode(tb, binary, configDir, env...)
	n.AwaitServing(15 * time.Second)
	return n
}

// AwaitServing waits until the node serves, or fails the test.
func (n *Node) AwaitServing(timeout time.Duration) {
	n.t.Helper()
	if err := n.WaitServing(context.Background(), timeout); err != nil {
		n.t.Fatalf("keygate: %v", err)
	}
}

// Public is the public listener's base URL (http://127.0.0.1:port).
func (n *Node) Public() string { return "http://" + n.Addr("public") }

// Ops is the ops listener's base URL.
func (n *Node) Ops() string { return "http://" + n.Addr("ops") }

// Signal sends sig to the node.
func (n *Node) Signal(sig syscall.Signal) {
	n.t.Helper()
	if err := n.Cmd.Process.Signal(sig); err != nil {
		n.t.Fatal(err)
	}
}

// WaitExit waits for the node to exit and returns its exit code.
func (n *Node) WaitExit(timeout time.Duration) int {
	n.t.Helper()
	select {
	case <-n.Exited():
		return n.Cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		n.t.Fatalf("keygate did not exit within %s", timeout)
		return -1
	}
}

// Issuer is the issuer the token profile at path serves in discovery, ""
// when discovery does not answer 200.
func (n *Node) Issuer(path string) string {
	code, body := Get(n.Public() + path + "/.well-known/openid-configuration")
	if code != http.StatusOK {
		return ""
	}
	var d struct {
		Issuer string `json:"issuer"`
	}
	_ = json.Unmarshal(body, &d)
	return d.Issuer
}

// KIDs are the key ids of the JWKS of the token profile at path.
func (n *Node) KIDs(path string) []string {
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	GetJSON(n.t, n.Public()+path+"/jwks", &set)
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KID)
	}
	return kids
}

// Status is what a node's /status shows.
type Status struct {
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

// Status reads /status, or fails the test.
func (n *Node) Status() Status {
	var s Status
	GetJSON(n.t, n.Ops()+"/status", &s)
	return s
}

// Metrics is the ops listener's /metrics text.
func (n *Node) Metrics() string {
	_, body := Get(n.Ops() + "/metrics")
	return string(body)
}

// WaitReload waits for a reload attempt after prev that loaded or failed
// (not a check that found nothing changed) and returns the status then.
func (n *Node) WaitReload(prev Status) Status {
	n.t.Helper()
	var s Status
	WaitFor(n.t, 15*time.Second, "a reload attempt", func() bool {
		s = n.Status()
		return s.Reloads+s.Failures > prev.Reloads+prev.Failures
	})
	return s
}

// WaitLoaded waits until a configuration was loaded after prev and returns
// the status then. A failed attempt does not end the wait: the periodic
// check may still read a broken edit the test is fixing. Check the result
// with LoadedSince, not LastResult == "success": by the time /status is
// read, a later hint may have checked the same files again and recorded
// "unchanged" (the periodic check, or the check a node makes when it starts
// following a file, can pick an edit up before the watcher's own hint for it).
func (n *Node) WaitLoaded(prev Status) Status {
	n.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	s := n.Status()
	for s.Reloads <= prev.Reloads {
		if time.Now().After(deadline) {
			n.t.Fatalf("no configuration loaded within 15s: /status %+v (before: %+v)", s, prev)
		}
		time.Sleep(20 * time.Millisecond) // polling /status, bounded by deadline
		s = n.Status()
	}
	return s
}

// LoadedSince reports whether a configuration was loaded since prev and
// no reload failed after it: LastResult is "success", or "unchanged" once a
// later hint found the same files again.
func (s Status) LoadedSince(prev Status) bool {
	return s.Reloads > prev.Reloads && s.LastResult != "failure" && s.LastError == ""
}
