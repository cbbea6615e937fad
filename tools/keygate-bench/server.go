package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/storage/postgres/pgtest"
	"github.com/keygate/keygate/internal/testkit"
)

const (
	profilePath = "/oauth/v2"
	// Not a loopback URL: the node would warn that its port is not the
	// listener's, and a warning under load marks a run disturbed.
	issuer       = "https://id.bench.example/oauth/v2"
	clientID     = "bench"
	opaqueClient = "bench-opaque"
	benchScope   = "bench:read"
	audience     = "https://api.example.com"
	// clientSecret is a development-only secret for the bench's clients.
	clientSecret = "keygate-bench-client-secret-0123456789"
)

var basicAuthz = "Basic " + base64.StdEncoding.EncodeToString([]byte(clientID+":"+clientSecret))

// ---- keys ----

// benchKeys are the PEM files of the run's signing keys, by algorithm.
type benchKeys struct {
	files map[string]string // alg -> PEM path
}

// benchAlgs are the algorithms of the run's keys, in the order the
// profile publishes the ones that do not sign.
var benchAlgs = []string{"ES256", "RS256", "EdDSA"}

var keyNames = map[string]string{"ES256": "k-es256", "RS256": "k-rs256", "EdDSA": "k-eddsa"}

// generateKeys writes fresh ES256 (P-256), RS256 (RSA 2048) and EdDSA
// (Ed25519) private keys as PKCS#8 PEM files under dir/keys.
func generateKeys(dir string) (*benchKeys, error) {
	kd := filepath.Join(dir, "keys")
	if err := os.MkdirAll(kd, 0o700); err != nil {
		return nil, err
	}
	k := &benchKeys{files: map[string]string{}}
	for _, alg := range benchAlgs {
		key, err := testkit.NewKey(alg)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(kd, keyNames[alg]+".pem")
		if err := key.Write(path); err != nil {
			return nil, err
		}
		k.files[alg] = path
	}
	return k, nil
}

// keyRefs are the keys section's entries for algs.
func (k *benchKeys) keyRefs(algs ...string) []testkit.KeyRef {
	refs := make([]testkit.KeyRef, len(algs))
	for i, alg := range algs {
		refs[i] = testkit.KeyRef{Name: keyNames[alg], Alg: alg, File: k.files[alg]}
	}
	return refs
}

// ---- config ----

// dataSource is the scenario's data-sources entry: the SQLite file at
// dbPath, or the PostgreSQL schema the node gets in BENCH_PG_URL.
func dataSource(s scenario, dbPath string) string {
	if s.storage == "postgres" {
		return `{type: postgres, url: "${BENCH_PG_URL}"}`
	}
	return testkit.SQLiteYAML(dbPath)
}

// writeConfig writes the scenario's config directory: one token profile
// at /oauth/v2 signing with the scenario's algorithm (the other two keys
// published too), and two client_secret_basic clients with
// client_credentials: bench (the profile's access-token format; it also
// introspects every token) and bench-opaque (opaque tokens, for the
// introspect scenario).
func writeConfig(dir string, s scenario, k *benchKeys, dbPath string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("# Written by keygate-bench.\n")
	b.WriteString(testkit.Head(dataSource(s, dbPath), "token"))
	b.WriteString(testkit.KeysSection(k.keyRefs(benchAlgs...)...))
	b.WriteString("clients:\n")
	for _, c := range []struct{ id, own string }{
		{clientID, "introspect-all-tokens: true"},
		{opaqueClient, "access-tokens: {format: opaque}"},
	} {
		fmt.Fprintf(&b, `  %s:
    profile: token
    secret: "${BENCH_CLIENT_SECRET}"
    grant-types: [client_credentials]
    scopes: [%q]
    audiences: [%s]
    %s
`, c.id, benchScope, audience, c.own)
	}
	if err := os.WriteFile(filepath.Join(dir, "00-bench.yaml"), []byte(b.String()), 0o600); err != nil {
		return err
	}
	return writeProfile(dir, s, 0)
}

// writeProfile writes the profile file atomically (a hidden temp file
// renamed over it, as an editor or Kubernetes would). variant 0 and 1
// differ only in the access-token lifetime: the reload scenario alternates
// between them.
func writeProfile(dir string, s scenario, variant int) error {
	keys := []string{keyNames[s.alg]}
	for _, alg := range benchAlgs {
		if alg != s.alg {
			keys = append(keys, keyNames[alg])
		}
	}
	lifetime := []string{"5m", "6m"}[variant%2]
	body := fmt.Sprintf(`profiles:
  token:
    type: token
    path: %s
    issuer: %s
    signing-keys: [%s]
    endpoints: [discovery, jwks, token, introspect, revoke]
    access-tokens: {format: %s, lifetime: %s}
`, profilePath, issuer, strings.Join(keys, ", "), s.format, lifetime)
	return testkit.Replace(filepath.Join(dir, "30-profile.yaml"), body)
}

// ---- the server process ----

// server is a running keygate node (the binary, or a bench child serving
// a node in-process for -cpuprofile) or a ceiling child.
type server struct {
	*testkit.Proc
	pid    int
	public string // host:port
	ops    string // host:port; "" for a ceiling
}

const tailLines = 30

// ceilingServing is a ceiling child's serving line.
const ceilingServing = "ceiling serving"

// start runs cmd and waits for its "runtime node serving" (or ceiling
// serving) JSON log line on stderr, which carries the real addresses.
// testkit keeps the log lines for error reports and counts the warnings.
func start(ctx context.Context, cmd *exec.Cmd) (*server, error) {
	p, err := testkit.Start(cmd, testkit.ServingRuntime, ceilingServing)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.Serving():
		return &server{Proc: p, pid: cmd.Process.Pid, public: p.Addr("public"), ops: p.Addr("ops")}, nil
	case <-p.Exited():
		return nil, fmt.Errorf("server exited before serving:\n%s", p.Logs.Tail(tailLines))
	case <-time.After(60 * time.Second):
		p.Stop(15 * time.Second)
		return nil, fmt.Errorf("server did not log serving within 60s:\n%s", p.Logs.Tail(tailLines))
	case <-ctx.Done():
		p.Stop(15 * time.Second)
		return nil, ctx.Err()
	}
}

func (s *server) logTail() string { return s.Logs.Tail(tailLines) }

// stop sends SIGTERM and waits (killing after 15 s).
func (s *server) stop() { s.Stop(15 * time.Second) }

var httpc = &http.Client{Timeout: 5 * time.Second}

// waitReady polls the ops listener's /readyz until 200.
func (s *server) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) && ctx.Err() == nil && s.Alive() {
		code, body, err := testkit.HTTPGet(httpc, "http://"+s.ops+"/readyz")
		if err == nil && code == http.StatusOK {
			return nil
		}
		if err == nil {
			last = fmt.Sprintf("%d %s", code, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("/readyz not 200 within %s (last: %s):\n%s", timeout, last, s.logTail())
}

// reloadCounts reads keygate_config_reloads_total{result="success"} and
// {result="failure"} from /metrics.
func (s *server) reloadCounts() (success, failure int, err error) {
	resp, err := httpc.Get("http://" + s.ops + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "keygate_config_reloads_total{") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, perr := strconv.ParseFloat(line[i+1:], 64)
		if perr != nil {
			continue
		}
		switch {
		case strings.Contains(line, `result="success"`):
			success = int(v)
		case strings.Contains(line, `result="failure"`):
			failure = int(v)
		}
	}
	return success, failure, sc.Err()
}

// serverEnv is the environment of a keygate node: testkit's (loopback
// listeners on free ports, JSON logs; the serving line is INFO and nothing
// is logged per request at info), the bench's node id and secrets. GO*
// runtime variables (GOMAXPROCS, GOGC, GOMEMLIMIT, GODEBUG) pass through
// for experiments; no other variable of the bench's environment does, so
// a stray KEYGATE_* cannot change what is measured.
func serverEnv(configDir, pgURL string) []string {
	env := append(testkit.NodeEnv(configDir),
		"KEYGATE_LOG_LEVEL=info",
		"KEYGATE_NODE_ID=keygate-bench",
		"BENCH_CLIENT_SECRET="+clientSecret,
	)
	if pgURL != "" {
		env = append(env, "BENCH_PG_URL="+pgURL)
	}
	for _, v := range []string{"GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG", "HOME", "TMPDIR"} {
		if x, ok := os.LookupEnv(v); ok {
			env = append(env, v+"="+x)
		}
	}
	return env
}

// ---- PostgreSQL ----

// postgres is the run's PostgreSQL server; each scenario gets a schema of
// its own on it (pgtest's, as the tests do).
type postgres struct {
	url   string
	once  sync.Once
	reach error
}

func newPostgres(u string) *postgres { return &postgres{url: u} }

func (p *postgres) describe() string { return pgtest.Describe(p.url) }

// reachable checks once per run that the server answers.
func (p *postgres) reachable(ctx context.Context) error {
	p.once.Do(func() { p.reach = pgtest.Ping(ctx, p.url) })
	return p.reach
}

// createSchema makes a fresh schema and returns its name and the server
// URL with search_path set to it.
func (p *postgres) createSchema(ctx context.Context) (string, string, error) {
	name, err := pgtest.CreateSchema(ctx, p.url, "kg_bench_")
	if err != nil {
		return "", "", err
	}
	u, err := pgtest.WithSearchPath(p.url, name)
	return name, u, err
}

func (p *postgres) dropSchema(name string) {
	if err := pgtest.DropSchema(context.Background(), p.url, name); err != nil {
		logf("drop schema %s: %v", name, err)
	}
}

// ---- a keygate scenario ----

// scenarioNode is a keygate node started for one scenario.
type scenarioNode struct {
	dir, configDir string
	env            []string // the node's environment (for keygate user add)
	profile        string   // the CPU profile path, with -cpuprofile
	srv            *server
	cleanups       []func()
}

// close stops the node and removes what the scenario created, last first.
func (n *scenarioNode) close() {
	for i := len(n.cleanups) - 1; i >= 0; i-- {
		n.cleanups[i]()
	}
}

// startScenarioNode writes the scenario's config with writeCfg (in a fresh
// directory, with a fresh PostgreSQL schema when the scenario needs one),
// starts binary as a runtime node (or a node in-process under -cpuprofile)
// and waits until it is ready on loopback. Call close, even on error.
func startScenarioNode(ctx context.Context, o options, s scenario, work, binary string, pg *postgres,
	writeCfg func(configDir, db string) error) (*scenarioNode, error) {
	n := &scenarioNode{}
	dir, err := os.MkdirTemp(work, s.name+"-"+s.storage+"-")
	if err != nil {
		return n, err
	}
	n.dir, n.configDir = dir, filepath.Join(dir, "config.d")
	if !o.keep {
		n.cleanups = append(n.cleanups, func() { os.RemoveAll(dir) })
	}
	pgURL := ""
	if s.storage == "postgres" {
		schema, u, err := pg.createSchema(ctx)
		if err != nil {
			return n, fmt.Errorf("create schema: %w", err)
		}
		n.cleanups = append(n.cleanups, func() { pg.dropSchema(schema) })
		pgURL = u
	}
	if err := writeCfg(n.configDir, filepath.Join(dir, "keygate.db")); err != nil {
		return n, fmt.Errorf("write config: %w", err)
	}

	var cmd *exec.Cmd
	if o.cpuprofile != "" {
		self, err := os.Executable()
		if err != nil {
			return n, err
		}
		n.profile = strings.TrimSuffix(o.cpuprofile, ".pprof") + "-" + s.name + "-" + s.storage + ".pprof"
		cmd = exec.CommandContext(ctx, self, serveNodeArg, n.profile)
	} else {
		cmd = exec.CommandContext(ctx, binary, "runtime")
	}
	cmd.Dir = dir
	n.env = serverEnv(n.configDir, pgURL)
	cmd.Env = append(slices.Clone(n.env), o.serverEnv...)
	if n.srv, err = start(ctx, cmd); err != nil {
		return n, err
	}
	n.cleanups = append(n.cleanups, n.srv.stop)
	if !loopback(n.srv.public) || !loopback(n.srv.ops) {
		return n, fmt.Errorf("the node listens on %s / %s, not loopback; refusing to load it", n.srv.public, n.srv.ops)
	}
	return n, n.srv.waitReady(ctx, 30*time.Second)
}

func runKeygate(ctx context.Context, o options, s scenario, k *benchKeys, work string, pg *postgres) (*result, error) {
	n, err := startScenarioNode(ctx, o, s, work, o.binary, pg, func(configDir, db string) error {
		return writeConfig(configDir, s, k, db)
	})
	defer n.close()
	if err != nil {
		return nil, err
	}
	configDir, profile, srv := n.configDir, n.profile, n.srv

	l, err := buildLoad(ctx, o, s, srv.public)
	if err != nil {
		return nil, err
	}

	// The reload scenario rewrites the profile every -reload-every from
	// the start of the warm-up to the end of the window.
	var writes, windowWrites, reloads0, fails0 int
	inWindow := false
	var reloadMu sync.Mutex
	stopReload := make(chan struct{})
	reloadDone := make(chan struct{})
	var reloadErr error
	if s.reload {
		go func() {
			defer close(reloadDone)
			t := time.NewTicker(o.reloadEvery)
			defer t.Stop()
			for {
				select {
				case <-stopReload:
					return
				case <-t.C:
				}
				writes++
				if err := writeProfile(configDir, s, writes); err != nil {
					reloadErr = err
					return
				}
				reloadMu.Lock()
				if inWindow {
					windowWrites++
				}
				reloadMu.Unlock()
			}
		}()
	} else {
		close(reloadDone)
	}

	w := newWindow(srv, srv.pid, profile)
	var reloads, fails int
	onStart := func() {
		if s.reload {
			reloads0, fails0, _ = srv.reloadCounts()
			reloadMu.Lock()
			inWindow = true
			reloadMu.Unlock()
		}
		w.begin()
	}
	onEnd := func() {
		w.end()
		if s.reload {
			reloadMu.Lock()
			inWindow = false
			reloadMu.Unlock()
			close(stopReload)
			// Let the last write's reload land before counting.
			time.Sleep(300 * time.Millisecond)
			r, f, err := srv.reloadCounts()
			if err == nil {
				reloads, fails = r-reloads0, f-fails0
			}
		}
	}
	out := drive(ctx, l, o.concurrency, o.warmup, o.duration, onStart, onEnd)
	<-reloadDone
	if reloadErr != nil {
		return nil, fmt.Errorf("rewrite config: %w", reloadErr)
	}
	r, err := w.nodeResult(s, o.concurrency, out)
	if err != nil {
		return nil, err
	}
	if s.reload {
		r.ReloadWrites, r.Reloads, r.ReloadFailures = &windowWrites, &reloads, &fails
	}
	w.reportNode(s, out)
	return r, nil
}

// buildLoad prepares the requests of a scenario. The introspect scenario
// first obtains its tokens from the node: half JWT (client bench, the
// profile's jwt format) and half opaque (client bench-opaque).
func buildLoad(ctx context.Context, o options, s scenario, addr string) (load, error) {
	switch s.kind {
	case kindJWKS:
		return load{
			addr: addr,
			setup: func(_ int, req *fasthttp.Request) {
				req.Header.SetMethod(fasthttp.MethodGet)
				req.SetRequestURI("http://" + addr + profilePath + "/jwks")
			},
			want: []byte(`{"keys":[`),
		}, nil
	case kindToken:
		l := tokenLoad(addr, profilePath+"/token")
		if s.dpop {
			proofs, err := dpopProofs(ctx, o.proofs, issuer+"/token")
			if err != nil {
				return load{}, fmt.Errorf("sign DPoP proofs: %w", err)
			}
			l.dpop, l.want = proofs, []byte(`{"access_token":"`)
		}
		return l, nil
	case kindIntrospect:
		tokens, err := issueTokens(ctx, addr, o.tokens, s.format == "opaque")
		if err != nil {
			return load{}, fmt.Errorf("pre-issue tokens: %w", err)
		}
		bodies := make([][]byte, len(tokens))
		for i, t := range tokens {
			bodies[i] = []byte("token=" + url.QueryEscape(t) + "&token_type_hint=access_token")
		}
		return load{
			addr:   addr,
			setup:  formPost(addr, profilePath+"/introspect", ""),
			bodies: bodies,
			want:   []byte(`{"active":true`),
		}, nil
	}
	return load{}, fmt.Errorf("unknown scenario kind %q", s.kind)
}

var tokenBody = "grant_type=client_credentials&scope=" + url.QueryEscape(benchScope)

func tokenLoad(addr, path string) load {
	return load{
		addr:  addr,
		setup: formPost(addr, path, tokenBody),
		want:  []byte(`{"access_token":"`),
	}
}

// formPost sets up a client_secret_basic form POST.
func formPost(addr, path, body string) func(int, *fasthttp.Request) {
	return func(_ int, req *fasthttp.Request) {
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI("http://" + addr + path)
		req.Header.SetContentType("application/x-www-form-urlencoded")
		req.Header.Set(fasthttp.HeaderAuthorization, basicAuthz)
		if body != "" {
			req.SetBodyString(body)
		}
	}
}

// issueTokens obtains n distinct access tokens, opaque or JWT, over a few
// connections at once (100,000 one after another would take longer than
// the measurement).
func issueTokens(ctx context.Context, addr string, n int, opaque bool) ([]string, error) {
	authz := basicAuthz
	if opaque {
		authz = "Basic " + base64.StdEncoding.EncodeToString([]byte(opaqueClient+":"+clientSecret))
	}
	const workers = 8
	out := make([]string, n)
	errs := make(chan error, workers)
	var next atomic.Int64
	for range workers {
		go func() {
			hc := &fasthttp.HostClient{Addr: addr, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
			defer hc.CloseIdleConnections()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					errs <- ctx.Err()
					return
				}
				req.Reset()
				formPost(addr, profilePath+"/token", tokenBody)(0, req)
				req.Header.Set(fasthttp.HeaderAuthorization, authz)
				if err := hc.Do(req, resp); err != nil {
					errs <- err
					return
				}
				var tr struct {
					AccessToken string `json:"access_token"`
				}
				if resp.StatusCode() != http.StatusOK || json.Unmarshal(resp.Body(), &tr) != nil || tr.AccessToken == "" {
					errs <- fmt.Errorf("token endpoint: %d %.200s", resp.StatusCode(), resp.Body())
					return
				}
				out[i] = tr.AccessToken
			}
		}()
	}
	var first error
	for range workers {
		if err := <-errs; err != nil && first == nil {
			first = err
			next.Store(int64(n)) // stop the others
		}
	}
	if first != nil {
		return nil, first
	}
	if dots := strings.Count(out[0], "."); opaque && dots != 0 || !opaque && dots != 2 {
		return nil, fmt.Errorf("pre-issued tokens: expected opaque=%v, got %.40s…", opaque, out[0])
	}
	return out, nil
}

// loopback reports whether hostport is on a loopback address (the bench
// loads nothing else).
func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
