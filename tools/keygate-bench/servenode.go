package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/keygate/keygate/internal/logging"
	"github.com/keygate/keygate/internal/node"
	"github.com/keygate/keygate/internal/settings"
)

// serveNodeArg makes the bench run a keygate runtime node in-process, as
// `keygate runtime` does (same settings, same node package), so that the
// node's CPU can be profiled under the real load without adding a pprof
// endpoint to the server: SIGUSR1 starts the CPU profile, SIGUSR2 writes
// it to args[0]; SIGTERM shuts the node down.
const serveNodeArg = "__serve-node"

func serveNodeMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: keygate-bench "+serveNodeArg+" PROFILE")
		return 2
	}
	environ := os.Environ()
	s, warnings, err := settings.Load(environ)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log, err := logging.New(os.Stderr, s.LogLevel, s.LogFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	n, err := node.New(s, environ, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	public, err := net.Listen("tcp", s.ListenAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	opsLn, err := net.Listen("tcp", s.OpsListenAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)
	served := make(chan error, 1)
	go func() { served <- n.Serve(public, opsLn) }()
	var prof profiler
	for {
		select {
		case err := <-served:
			fmt.Fprintln(os.Stderr, "serve:", err)
			return 1
		case sg := <-sig:
			switch sg {
			case syscall.SIGUSR1:
				prof.start(args[0])
				continue
			case syscall.SIGUSR2:
				prof.stop()
				continue
			}
			prof.stop()
			ctx, cancel := context.WithTimeout(context.Background(), s.ShutdownTimeout)
			err := n.Shutdown(ctx)
			cancel()
			<-served
			if err != nil {
				fmt.Fprintln(os.Stderr, "shutdown:", err)
				return 1
			}
			return 0
		}
	}
}

// profiler is a CPU profile started and stopped by signals.
type profiler struct{ f *os.File }

func (p *profiler) start(path string) {
	if p.f != nil {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cpu profile:", err)
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "cpu profile:", err)
		f.Close()
		return
	}
	p.f = f
}

func (p *profiler) stop() {
	if p.f == nil {
		return
	}
	pprof.StopCPUProfile()
	_ = p.f.Close()
	p.f = nil
}
