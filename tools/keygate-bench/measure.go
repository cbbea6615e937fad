package main

import (
	"fmt"
	"syscall"
)

// window is a scenario's measured window: the CPU of the server, of the
// bench (the load generator) and of the host (tasks and interrupts), and,
// with -cpuprofile, the server's profile started and written at its edges.
type window struct {
	srv                      *server // nil: a ceiling in the bench process
	profile                  string  // the server's CPU profile, "" for none
	server, bench, host, irq cpuWindow
}

func newWindow(srv *server, pid int, profile string) *window {
	return &window{srv: srv, profile: profile,
		server: cpuWindow{pid: pid}, bench: cpuWindow{pid: 0}, host: cpuWindow{pid: -1}, irq: cpuWindow{pid: -2}}
}

// begin opens the window: the profile first, so it covers all of it.
func (w *window) begin() {
	w.signal(syscall.SIGUSR1)
	w.host.begin()
	w.irq.begin()
	w.server.begin()
	w.bench.begin()
}

// end closes the window, the profile last.
func (w *window) end() {
	w.server.finish()
	w.bench.finish()
	w.host.finish()
	w.irq.finish()
	w.signal(syscall.SIGUSR2)
}

func (w *window) signal(sig syscall.Signal) {
	if w.profile != "" && w.srv != nil {
		_ = w.srv.Cmd.Process.Signal(sig)
	}
}

// result is the scenario's line, with the server's peak RSS; err is
// that the server's /proc entry could not be read.
func (w *window) result(s scenario, c int, out *outcome) (*result, error) {
	rss, err := procPeakRSSKB(w.server.pid)
	if err != nil {
		return nil, err
	}
	return newResult(s, c, out, w.server, w.bench, w.host, w.irq, rss), nil
}

// nodeResult is result for a keygate node, whose log tail says why it
// went away.
func (w *window) nodeResult(s scenario, c int, out *outcome) (*result, error) {
	r, err := w.result(s, c, out)
	if err != nil {
		return nil, fmt.Errorf("peak RSS: %w (did the server exit?)\n%s", err, w.srv.logTail())
	}
	return r, nil
}

// reportErrors logs the first of a run's failed requests.
func reportErrors(s scenario, out *outcome) {
	if out.errors+out.warmupErrors > 0 {
		logf("%s: %d errors (+%d in warm-up); first: %s", s.id(), out.errors, out.warmupErrors, out.errorSample)
	}
}

// reportNode logs what a keygate scenario's line does not show: its
// errors, the node's warnings under load, and where its CPU profile is
// (written at the window's end; the node is stopped here).
func (w *window) reportNode(s scenario, out *outcome) {
	reportErrors(s, out)
	if warns := w.srv.Logs.Warnings(); warns > 0 {
		logf("%s: the server logged %d warnings/errors under load; last lines:\n%s", s.id(), warns, w.srv.logTail())
	}
	if w.profile != "" {
		w.srv.stop()
		logf("%s: CPU profile of the measured window: %s (go tool pprof -top %s)", s.id(), w.profile, w.profile)
	}
}
