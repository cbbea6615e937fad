package testkit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BuildKeygate builds cmd/keygate into out, with extra go build flags
// (-trimpath, -race). It works from any directory of the module.
func BuildKeygate(ctx context.Context, out string, flags ...string) error {
	args := append(append([]string{"build"}, flags...), "-o", out, "github.com/keygate/keygate/cmd/keygate")
	build := exec.CommandContext(ctx, "go", args...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	return build.Run()
}

// NodeEnv is the environment of a keygate runtime node on configDir that
// the kit starts: PATH and nothing else of the caller's environment (a
// stray KEYGATE_* must not change what is tested or measured), listeners
// on free loopback ports, JSON logs (the serving line carries the
// addresses) and a bounded shutdown.
func NodeEnv(configDir string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"KEYGATE_CONFIG_DIR=" + configDir,
		"KEYGATE_LISTEN_ADDR=127.0.0.1:0",
		"KEYGATE_OPS_LISTEN_ADDR=127.0.0.1:0",
		"KEYGATE_LOG_FORMAT=json",
		"KEYGATE_SHUTDOWN_TIMEOUT=10s",
	}
}

// The serving lines of the processes the kit starts: they carry the
// listeners' addresses (public, ops, admin).
const (
	ServingRuntime = "runtime node serving"
	ServingAdmin   = "admin node serving"
)

// Proc is a started process that logs JSON lines on stderr, one of which
// says it serves and where: a keygate runtime or admin node, or a
// benchmark's server child.
type Proc struct {
	Cmd  *exec.Cmd
	Logs *Logs

	serving chan struct{} // closed at the serving line
	exited  chan struct{} // closed once stderr is drained and the process waited for
	waitErr error         // valid once exited is closed
	mu      sync.Mutex
	addrs   map[string]string // the serving line's string fields
}

// Start starts cmd (stdout discarded) and reads its stderr into Logs. The
// first line whose msg is one of serving closes Serving and records its
// fields (Addr).
func Start(cmd *exec.Cmd, serving ...string) (*Proc, error) {
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{Cmd: cmd, Logs: &Logs{}, serving: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		served := false
		for sc.Scan() {
			line := sc.Text()
			var entry map[string]any
			_ = json.Unmarshal([]byte(line), &entry)
			level, _ := entry["level"].(string)
			p.Logs.add(line, level)
			if msg, _ := entry["msg"].(string); !served && slices.Contains(serving, msg) {
				served = true
				p.mu.Lock()
				p.addrs = map[string]string{}
				for k, v := range entry {
					if s, ok := v.(string); ok {
						p.addrs[k] = s
					}
				}
				p.mu.Unlock()
				p.Logs.markServing()
				close(p.serving)
			}
		}
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Serving is closed when the process has logged its serving line.
func (p *Proc) Serving() <-chan struct{} { return p.serving }

// Exited is closed when the process has exited; ExitErr is then its result.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// ExitErr is what waiting for the process returned (after Exited).
func (p *Proc) ExitErr() error { return p.waitErr }

// Alive reports whether the process is still running.
func (p *Proc) Alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Addr is a field of the serving line, e.g. "public" → "127.0.0.1:41234";
// "" before the process serves.
func (p *Proc) Addr(field string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[field]
}

// WaitServing waits for the serving line; it fails when the process exits
// first, timeout passes or ctx ends.
func (p *Proc) WaitServing(ctx context.Context, timeout time.Duration) error {
	select {
	case <-p.serving:
		return nil
	case <-p.exited:
		return fmt.Errorf("exited before serving (%v):\n%s", p.waitErr, p.Logs.Tail(30))
	case <-time.After(timeout):
		return fmt.Errorf("did not log serving within %s:\n%s", timeout, p.Logs.Tail(30))
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop sends SIGTERM and waits for the exit, killing the process after
// grace.
func (p *Proc) Stop(grace time.Duration) {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		p.Kill()
	}
}

// Kill kills the process and waits for it.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.exited
}

// maxLogLines bounds what Logs keeps of a long-running process (a
// benchmark's node under load); tests stay far below it.
const maxLogLines = 100_000

// Logs are a process's log lines, and how many of those after its serving
// line were warnings or errors.
type Logs struct {
	mu      sync.Mutex
	lines   []string
	serving bool
	warns   int
}

func (l *Logs) add(line, level string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == maxLogLines {
		l.lines = l.lines[1:]
	}
	l.lines = append(l.lines, line)
	if l.serving && (level == "WARN" || level == "ERROR") {
		l.warns++
	}
}

func (l *Logs) markServing() {
	l.mu.Lock()
	l.serving = true
	l.mu.Unlock()
}

// String is every line kept, newline-separated.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// Contains reports whether any line contains s.
func (l *Logs) Contains(s string) bool { return strings.Contains(l.String(), s) }

// Tail is the last n lines.
func (l *Logs) Tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[max(0, len(l.lines)-n):], "\n")
}

// Warnings counts the WARN and ERROR lines logged after serving.
func (l *Logs) Warnings() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.warns
}
