// Command keygate-bench is Keygate's load benchmark:
// it starts the built keygate binary on loopback with a generated config
// and storage, drives a fixed concurrency for a fixed time with a
// keep-alive fasthttp client, and prints one JSON line per scenario:
// throughput, p50/p99/p999 latency, errors, and the server process's CPU
// and peak RSS (from /proc). The load generator shares the machine's cores
// with the server; that is the stated measuring condition.
//
//	go run ./tools/keygate-bench                       # every scenario, c=64, 10 s each (go tool task bench)
//	go run ./tools/keygate-bench -scenarios cc-jwt-es256,jwks -d 5s
//	go run ./tools/keygate-bench -storage sqlite -c 32
//	go run ./tools/keygate-bench -scenarios cc-jwt-es256/sqlite,cc-jwt-eddsa/sqlite -repeat 3   # the efficiency ratios, median of 3
//	go run ./tools/keygate-bench -scenarios cc-jwt-es256/sqlite -cpuprofile /tmp/kg   # + /tmp/kg-*.pprof
//	go run ./tools/keygate-bench -binary ./bin/keygate -server-env GOGC=400
//
// Scenarios (each on sqlite and on postgres unless -storage says otherwise):
//
//	cc-jwt-es256, cc-jwt-rs256, cc-jwt-eddsa  client_credentials (client_secret_basic), JWT access tokens
//	cc-dpop                                   cc-jwt-es256 with a DPoP proof per request (-proofs signed before
//	                                          the run), followed by a {"scenario":"dpop-cost"} line against
//	                                          cc-jwt-es256 of the same storage (dpop.go)
//	cc-opaque                                 client_credentials, opaque access tokens (stored hashed)
//	introspect-jwt, introspect-opaque         RFC 7662 introspection (revocation checked) of -tokens distinct
//	                                          pre-issued JWT or opaque access tokens, 100,000 by default
//	userinfo                                  OpenID Connect userinfo with -tokens distinct access tokens
//	                                          of one user (from session code flows issued before the run)
//	jwks                                      GET the JWK Set
//	cc-jwt-es256-reload                       cc-jwt-es256 while the config is rewritten every 100 ms
//	                                          (reload_writes, reloads, reload_failures in its line; errors must be 0)
//	codeflow                                  full OIDC code flows with a password login (argon2id at the
//	                                          default cost), one "request" = one flow; -codeflow-c workers
//	ceiling-es256, ceiling-eddsa              the ceiling of cc-jwt-es256 and cc-jwt-eddsa: the fastest
//	                                          handler doing the same work (ceiling.go)
//	dex-cc, dex-jwks                          with -peers and -dex PATH: the same client_credentials and
//	                                          JWKS loads against Dex, each followed by a {"scenario":"peer"}
//	                                          line of keygate's ratios to it (peers.go)
//
// After each ceiling and its cc-jwt-<alg> on sqlite it prints
// {"scenario":"efficiency","alg":...,"cpu_ratio":...,"p99_ratio":...}:
// the ceiling's server CPU per token over keygate's, and keygate's p99
// over the ceiling's, measured in the same run (selecting cc-jwt-es256 or
// cc-jwt-eddsa selects its ceiling too), with the goals (cpu_ratio at
// least 0.90, p99_ratio at most 1.2). Keygate measured cheaper than its
// ceiling fails the run: the ceiling would then not do the same work. The
// ceilings run in a child process (the bench binary itself), so each has
// its own Go runtime and its CPU and RSS are read from /proc exactly as
// keygate's; -baseline-inprocess serves them from the bench process.
//
// Each line also carries bench_cpu_s (the load generator), other_cpu_s
// (every other process: PostgreSQL, and anything else sharing the
// machine) and irq_cpu_s (interrupts, mostly loopback networking), in CPU
// seconds over the window. On a shared machine a high other_cpu_s marks a
// disturbed measurement; -wait-idle waits for a quiet machine before each
// scenario.
//
// -cpuprofile runs the node in-process in a child of the bench (the same
// node package and settings as `keygate runtime`) and profiles it during
// each measured window; the server itself has no pprof endpoint.
//
// Only loopback addresses are used. Everything else it prints goes to
// stderr. Exit status: 0 when every scenario ran with zero errors, 1
// otherwise, 2 on bad flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/keygate/keygate/internal/settings"
	"github.com/keygate/keygate/internal/storage/postgres/pgtest"
	"github.com/keygate/keygate/internal/testkit"
)

// Scenario kinds.
const (
	kindToken      = "token"
	kindIntrospect = "introspect"
	kindJWKS       = "jwks"
	kindCeiling    = "ceiling"
	// kindCodeflow (codeflow.go) is declared with its scenario.
)

// scenario is one line of output.
type scenario struct {
	name    string
	storage string // sqlite, postgres; "" for a ceiling
	kind    string
	alg     string // signing key of the profile: ES256, RS256, EdDSA
	format  string // the profile's access-token format: jwt, opaque
	reload  bool   // rewrite the config every -reload-every while loading
	dpop    bool   // a DPoP proof on every request (dpop.go)
	peerOf  string // a peer's load: the keygate scenario (id) it is compared with
}

// efficiencyMeasured: the plain client_credentials JWT scenario of an
// algorithm with a ceiling, which the efficiency line compares with it.
func (s scenario) efficiencyMeasured() bool {
	return s.kind == kindToken && s.format == "jwt" && !s.reload && !s.dpop && slices.Contains(ceilingAlgs, s.alg)
}

func (s scenario) id() string {
	if s.storage == "" {
		return s.name
	}
	return s.name + "/" + s.storage
}

// catalogue lists the scenarios in run order.
func catalogue(storages []string) []scenario {
	per := []scenario{
		{name: "cc-jwt-es256", kind: kindToken, alg: "ES256", format: "jwt"},
		{name: "cc-jwt-rs256", kind: kindToken, alg: "RS256", format: "jwt"},
		{name: "cc-jwt-eddsa", kind: kindToken, alg: "EdDSA", format: "jwt"},
		{name: "cc-dpop", kind: kindToken, alg: "ES256", format: "jwt", dpop: true},
		{name: "cc-opaque", kind: kindToken, alg: "ES256", format: "opaque"},
		{name: "introspect-jwt", kind: kindIntrospect, alg: "ES256", format: "jwt"},
		{name: "introspect-opaque", kind: kindIntrospect, alg: "ES256", format: "opaque"},
		{name: "userinfo", kind: kindUserinfo, alg: "ES256", format: "jwt"},
		{name: "jwks", kind: kindJWKS, alg: "ES256", format: "jwt"},
		{name: "cc-jwt-es256-reload", kind: kindToken, alg: "ES256", format: "jwt", reload: true},
		{name: "codeflow", kind: kindCodeflow, alg: "ES256", format: "jwt"},
	}
	var out []scenario
	for _, st := range storages {
		for _, s := range per {
			s.storage = st
			// Each ceiling runs right before the scenario it is the
			// ceiling of, so that the two are measured close together.
			if st == "sqlite" && s.efficiencyMeasured() {
				out = append(out, scenario{name: "ceiling-" + strings.ToLower(s.alg), kind: kindCeiling, alg: s.alg, format: "jwt"})
			}
			out = append(out, s)
		}
	}
	return out
}

type options struct {
	binary      string
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	scenarios   []string
	storages    []string
	pgURL       string
	reloadEvery time.Duration
	tokens      int
	cpuprofile  string
	baselineIn  bool
	timeout     time.Duration
	keep        bool
	waitIdle    time.Duration
	clientProf  string
	repeat      int
	serverEnv   []string
	codeflowC   int
	proofs      int
	peers       bool
	dex         string
}

func main() {
	// Hidden modes: the bench re-executes itself as a ceiling server or
	// as an in-process keygate node with a CPU profile.
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case serveCeilingArg:
			os.Exit(serveCeilingMain(os.Args[2:]))
		case serveNodeArg:
			os.Exit(serveNodeMain(os.Args[2:]))
		}
	}
	os.Exit(run())
}

func run() int {
	var o options
	var scen, stor string
	fs := flag.NewFlagSet("keygate-bench", flag.ContinueOnError)
	fs.StringVar(&o.binary, "binary", "", "keygate binary to run (default: build ./cmd/keygate into a temp dir)")
	fs.IntVar(&o.concurrency, "c", 64, "concurrent requests (one keep-alive connection each)")
	fs.IntVar(&o.codeflowC, "codeflow-c", 0, "concurrent flows of the codeflow scenario; 0: one per core (it is CPU-bound on argon2id, p=1)")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured duration per scenario")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up before each measurement (same load, not counted)")
	fs.StringVar(&scen, "scenarios", "", "comma-separated scenario names or name/storage (default: all); see the package doc")
	fs.StringVar(&stor, "storage", "sqlite,postgres", "comma-separated storages: sqlite, postgres")
	fs.StringVar(&o.pgURL, "pg", "", "PostgreSQL server URL (default $KEYGATE_TEST_POSTGRES_URL or "+pgtest.DefaultURL+"); a fresh schema per scenario, dropped after")
	fs.DurationVar(&o.reloadEvery, "reload-every", 100*time.Millisecond, "config rewrite interval of the -reload scenarios")
	fs.IntVar(&o.proofs, "proofs", 400000, "DPoP proofs signed before the cc-dpop scenario, one per request (each is single use)")
	fs.IntVar(&o.tokens, "tokens", 100000, "distinct tokens pre-issued for each introspect and userinfo scenario (so no cache can flatter it)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the server during each measured window to FILE (FILE-<scenario>.pprof); the server then runs in-process in a bench child instead of the binary")
	fs.BoolVar(&o.baselineIn, "baseline-inprocess", false, "serve the ceilings inside the bench process (default: a child process, like keygate, so its CPU and RSS are measured the same way)")
	fs.DurationVar(&o.timeout, "timeout", 15*time.Minute, "abort the whole run after this long")
	fs.DurationVar(&o.waitIdle, "wait-idle", 30*time.Second, "before each scenario, wait up to this long for the machine to be idle (under 0.25 CPU busy over 1 s), since other processes skew a shared 2-core machine; 0 disables")
	var senv string
	fs.StringVar(&senv, "server-env", "", "comma-separated NAME=value pairs added to the keygate node's (not the ceilings') environment, e.g. GOGC=400,GOMAXPROCS=2")
	fs.IntVar(&o.repeat, "repeat", 1, "run the selected scenarios this many times (interleaved); with more than one run, a last efficiency line gives the median ratio")
	fs.StringVar(&o.clientProf, "client-cpuprofile", "", "write a CPU profile of the load generator itself (this process) over the whole run to FILE")
	fs.BoolVar(&o.peers, "peers", false, "also run the client_credentials and JWKS loads against Dex (peers.go) and print keygate's ratios to it; needs -dex")
	fs.StringVar(&o.dex, "dex", os.Getenv(dexEnv), "the Dex binary for -peers (default $"+dexEnv+"); the bench builds and downloads nothing")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp directories (configs, keys, sqlite files) for inspection")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: keygate-bench [flags]\n\nPrints one JSON line per scenario on stdout; progress on stderr.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "keygate-bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if o.concurrency < 1 || o.codeflowC < 0 || o.duration <= 0 || o.warmup < 0 || o.tokens < 2 || o.repeat < 1 {
		fmt.Fprintln(os.Stderr, "keygate-bench: -c, -d and -repeat must be positive, -tokens at least 2")
		return 2
	}
	// The node runs in its scenario's directory: make paths absolute.
	for _, p := range []*string{&o.cpuprofile, &o.clientProf, &o.binary} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				fmt.Fprintln(os.Stderr, "keygate-bench:", err)
				return 2
			}
			*p = abs
		}
	}
	o.serverEnv = settings.SplitList(senv)
	for _, kv := range o.serverEnv {
		if !strings.Contains(kv, "=") {
			fmt.Fprintf(os.Stderr, "keygate-bench: -server-env: %q is not NAME=value\n", kv)
			return 2
		}
	}
	o.scenarios = settings.SplitList(scen)
	o.storages = settings.SplitList(stor)
	for _, st := range o.storages {
		if st != "sqlite" && st != "postgres" {
			fmt.Fprintf(os.Stderr, "keygate-bench: unknown storage %q (want sqlite, postgres)\n", st)
			return 2
		}
	}
	if o.pgURL == "" {
		o.pgURL = pgtest.ServerURL()
	}

	selected, err := selectScenarios(catalogue(o.storages), o.scenarios)
	if err != nil {
		fmt.Fprintln(os.Stderr, "keygate-bench:", err)
		return 2
	}
	if o.peers {
		if o.dex == "" {
			logf("-peers: no Dex binary given (-dex PATH or $%s); the bench builds and downloads nothing, so the peer comparison is skipped", dexEnv)
		} else {
			selected = withPeers(catalogue(o.storages), selected)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	work, err := os.MkdirTemp("", "keygate-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "keygate-bench:", err)
		return 1
	}
	if o.keep {
		logf("keeping %s", work)
	} else {
		defer os.RemoveAll(work)
	}

	needServer := slices.ContainsFunc(selected, func(s scenario) bool { return s.kind != kindCeiling })
	if needServer && o.binary == "" && o.cpuprofile == "" {
		o.binary = filepath.Join(work, "keygate")
		logf("building ./cmd/keygate")
		if err := testkit.BuildKeygate(ctx, o.binary, "-trimpath"); err != nil {
			fmt.Fprintln(os.Stderr, "keygate-bench: build ./cmd/keygate (run from the repository root, or pass -binary):", err)
			return 1
		}
	}

	keys, err := generateKeys(work)
	if err != nil {
		fmt.Fprintln(os.Stderr, "keygate-bench: keys:", err)
		return 1
	}

	if o.clientProf != "" {
		var p profiler
		p.start(o.clientProf)
		defer p.stop()
	}
	pg := newPostgres(o.pgURL)
	enc := json.NewEncoder(os.Stdout)
	failed := false
	var ratios []efficiency
	total := len(selected) * o.repeat
	n := 0
	for run := 1; run <= o.repeat; run++ {
		ceilings, measured, byID := map[string]*result{}, map[string]*result{}, map[string]*result{}
		for _, s := range selected {
			n++
			if ctx.Err() != nil {
				fmt.Fprintln(os.Stderr, "keygate-bench: stopped:", ctx.Err())
				return 1
			}
			if s.storage == "postgres" {
				if err := pg.reachable(ctx); err != nil {
					logf("skip %s: PostgreSQL not reachable at %s (%v)", s.id(), pg.describe(), err)
					continue
				}
			}
			waitIdle(ctx, o.waitIdle)
			c := o.concurrency
			if s.kind == kindCodeflow {
				c = codeflowConcurrency(o)
			}
			logf("[%d/%d] %s: c=%d warm-up %s, measure %s", n, total, s.id(), c, o.warmup, o.duration)
			var r *result
			var peerAlg string
			switch s.kind {
			case kindCeiling:
				r, err = runCeiling(ctx, o, s, keys)
			case kindPeer:
				r, peerAlg, err = runPeer(ctx, o, s, work)
			case kindCodeflow:
				r, err = runCodeflow(ctx, o, s, keys, work, pg)
			case kindUserinfo:
				r, err = runUserinfo(ctx, o, s, keys, work, pg)
			default:
				r, err = runKeygate(ctx, o, s, keys, work, pg)
			}
			if err != nil {
				failed = true
				logf("%s: %v", s.id(), err)
				continue
			}
			if r.Errors > 0 {
				failed = true
			}
			if o.repeat > 1 {
				r.Run = run
			}
			_ = enc.Encode(r)
			byID[s.id()] = r
			if s.dpop {
				if dc, ok := compareDPoP(s.storage, r, byID["cc-jwt-es256/"+s.storage]); ok {
					_ = enc.Encode(dc)
				}
			}
			if s.kind == kindPeer {
				if pr, ok := comparePeer(s, peerAlg, byID[s.peerOf], r); ok {
					if o.repeat > 1 {
						pr.Run = run
					}
					_ = enc.Encode(pr)
				}
			}
			switch {
			case s.kind == kindCeiling:
				ceilings[s.alg] = r
			case s.storage == "sqlite" && s.efficiencyMeasured():
				measured[s.alg] = r
			}
		}
		for _, alg := range ceilingAlgs {
			e, ok := compare(alg, measured[alg], ceilings[alg])
			if !ok {
				continue
			}
			if o.repeat > 1 {
				e.Run = run
			}
			if e.CPURatio > cheaperThanCeiling {
				failed = true
				logf("FAIL: keygate measured cheaper than its %s ceiling (CPU ratio %.3f): the ceiling does not do the same work as keygate, so no ratio of this run means anything; fix the ceiling (tools/keygate-bench/ceiling.go)", alg, e.CPURatio)
			}
			ratios = append(ratios, e)
			_ = enc.Encode(e)
		}
	}
	if o.repeat > 1 {
		for _, alg := range ceilingAlgs {
			var runs []efficiency
			for _, e := range ratios {
				if e.Alg == alg {
					runs = append(runs, e)
				}
			}
			if len(runs) > 1 {
				_ = enc.Encode(median(runs))
			}
		}
	}
	if failed {
		return 1
	}
	return 0
}

// efficiency compares keygate's client_credentials JWT of one algorithm
// on sqlite with that algorithm's ceiling, measured in the same run:
// cpu_ratio is ceiling CPU per token over keygate's (the goal: at least
// cpu_goal), ratio is of throughputs, p99_ratio keygate's p99 over the
// ceiling's (the goal: at most p99_goal).
type efficiency struct {
	Scenario    string  `json:"scenario"`
	Alg         string  `json:"alg"`
	CPURatio    float64 `json:"cpu_ratio"`
	Ratio       float64 `json:"ratio"`
	P99Ratio    float64 `json:"p99_ratio"`
	KeygateCPU  float64 `json:"keygate_cpu_per_token_us"`
	CeilingCPU  float64 `json:"ceiling_cpu_per_token_us"`
	Keygate     float64 `json:"keygate_rps"`
	Ceiling     float64 `json:"ceiling_rps"`
	KeygateP99  float64 `json:"keygate_p99_ms"`
	CeilingP99  float64 `json:"ceiling_p99_ms"`
	CPUGoal     float64 `json:"cpu_goal"`
	P99Goal     float64 `json:"p99_goal"`
	Met         bool    `json:"goals_met"`
	Numerator   string  `json:"numerator"`
	Denominator string  `json:"denominator"`
	Run         int     `json:"run,omitempty"`
	Runs        int     `json:"runs,omitempty"`
	Median      bool    `json:"median,omitempty"`
}

// The goals: keygate within 10 % of the ceiling's CPU per token, and a
// tail no longer than 1.2 times the ceiling's.
const (
	cpuGoal = 0.90
	p99Goal = 1.20
	// cheaperThanCeiling: a CPU ratio above this (beyond noise) means the
	// ceiling does more work than keygate, which a ceiling must not.
	cheaperThanCeiling = 1.05
)

// ceilingAlgs are the algorithms with a ceiling scenario.
var ceilingAlgs = []string{"ES256", "EdDSA"}

func compare(alg string, k, c *result) (efficiency, bool) {
	if k == nil || c == nil || c.ServerCPUPerReqUS <= 0 || k.ServerCPUPerReqUS <= 0 || c.Throughput <= 0 || c.P99 <= 0 {
		return efficiency{}, false
	}
	e := efficiency{
		Scenario: "efficiency", Alg: alg,
		CPURatio: round(c.ServerCPUPerReqUS/k.ServerCPUPerReqUS, 3), Ratio: round(k.Throughput/c.Throughput, 3),
		P99Ratio: round(k.P99/c.P99, 3), KeygateCPU: k.ServerCPUPerReqUS, CeilingCPU: c.ServerCPUPerReqUS,
		Keygate: k.Throughput, Ceiling: c.Throughput, KeygateP99: k.P99, CeilingP99: c.P99,
		CPUGoal: cpuGoal, P99Goal: p99Goal,
		Numerator: "cc-jwt-" + strings.ToLower(alg) + "/sqlite", Denominator: "ceiling-" + strings.ToLower(alg),
	}
	e.Met = e.CPURatio >= cpuGoal && e.P99Ratio <= p99Goal
	return e, true
}

// median is the runs' median of each figure: one disturbed run moves it
// little.
func median(runs []efficiency) efficiency {
	med := func(f func(efficiency) float64) float64 {
		v := make([]float64, len(runs))
		for i, e := range runs {
			v[i] = f(e)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return round((v[len(v)/2-1]+v[len(v)/2])/2, 3)
	}
	e := runs[0]
	e.Run, e.Runs, e.Median = 0, len(runs), true
	e.CPURatio = med(func(e efficiency) float64 { return e.CPURatio })
	e.Ratio = med(func(e efficiency) float64 { return e.Ratio })
	e.P99Ratio = med(func(e efficiency) float64 { return e.P99Ratio })
	e.KeygateCPU = med(func(e efficiency) float64 { return e.KeygateCPU })
	e.CeilingCPU = med(func(e efficiency) float64 { return e.CeilingCPU })
	e.Keygate = med(func(e efficiency) float64 { return e.Keygate })
	e.Ceiling = med(func(e efficiency) float64 { return e.Ceiling })
	e.KeygateP99 = med(func(e efficiency) float64 { return e.KeygateP99 })
	e.CeilingP99 = med(func(e efficiency) float64 { return e.CeilingP99 })
	e.Met = e.CPURatio >= cpuGoal && e.P99Ratio <= p99Goal
	return e
}

// withPeers adds the peer scenarios to selected, each after the keygate
// scenario it is compared with (added too when not selected). Without
// SQLite among the storages there is none: the peer still runs, last,
// with no ratio line.
func withPeers(all, selected []scenario) []scenario {
	out := slices.Clone(selected)
	for _, p := range peerScenarios() {
		isPeerOf := func(s scenario) bool { return s.id() == p.peerOf }
		if !slices.ContainsFunc(out, isPeerOf) {
			if i := slices.IndexFunc(all, isPeerOf); i >= 0 {
				out = append(out, all[i])
			}
		}
		if at := slices.IndexFunc(out, isPeerOf); at >= 0 {
			out = slices.Insert(out, at+1, p)
		} else {
			out = append(out, p)
		}
	}
	return out
}

// selectScenarios keeps the scenarios named in filter ("name" or
// "name/storage"); an empty filter keeps all. Selecting cc-jwt-es256 or
// cc-jwt-eddsa on sqlite also selects its ceiling, so its efficiency line
// is always printed with it.
func selectScenarios(all []scenario, filter []string) ([]scenario, error) {
	if len(filter) == 0 {
		return all, nil
	}
	known := map[string]bool{}
	for _, s := range all {
		known[s.name], known[s.id()] = true, true
	}
	for _, f := range filter {
		if !known[f] {
			var names []string
			for _, s := range all {
				if !slices.Contains(names, s.name) {
					names = append(names, s.name)
				}
			}
			return nil, fmt.Errorf("unknown scenario %q (want one of %s, optionally /sqlite or /postgres)", f, strings.Join(names, ", "))
		}
	}
	var out []scenario
	for _, s := range all {
		keep := slices.Contains(filter, s.name) || slices.Contains(filter, s.id())
		// A ceiling comes with the scenario it is the ceiling of.
		if measuredAgainst := "cc-jwt-" + strings.TrimPrefix(s.name, "ceiling-"); s.kind == kindCeiling &&
			(slices.Contains(filter, measuredAgainst) || slices.Contains(filter, measuredAgainst+"/sqlite")) {
			keep = true
		}
		if keep {
			out = append(out, s)
		}
	}
	return out, nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "keygate-bench: "+format+"\n", args...)
}

// waitIdle waits, up to max, until the machine's busy CPU time over one
// second is under 0.25 CPU (the bench and its server are stopped between
// scenarios, so what remains is other work sharing the cores).
func waitIdle(ctx context.Context, max time.Duration) {
	if max <= 0 {
		return
	}
	deadline := time.Now().Add(max)
	logged := false
	for ctx.Err() == nil {
		a, err := hostBusy()
		if err != nil {
			return
		}
		sleepUntil(ctx, time.Now().Add(time.Second))
		b, err := hostBusy()
		if err != nil {
			return
		}
		busy := float64(b-a) / clockTicks
		if busy < 0.25 {
			return
		}
		if time.Now().After(deadline) {
			logf("the machine is still busy (%.2f CPU used by other processes); measuring anyway, see other_cpu_s", busy)
			return
		}
		if !logged {
			logf("waiting up to %s for the machine to be idle (%.2f CPU used by other processes)", max, busy)
			logged = true
		}
	}
}
