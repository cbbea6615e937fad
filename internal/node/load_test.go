package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/secret"
	"github.com/keygate/keygate/internal/served"
	"github.com/keygate/keygate/internal/testkit"
)

const (
	loadClients  = 16
	loadReloads  = 100
	rotateEvery  = 10 // every 10th reload also rotates the signing keys
	maxGoroutine = 2  // goroutines allowed above a baseline (runtime noise)
	heapMargin   = 8 << 20
	stepTimeout  = 5 * time.Second
	// perStepResponses: the clients' responses awaited after each reload
	// is applied (so at least 100 × 50 in all).
	perStepResponses = 50
)

func issuerOf(gen int) string { return fmt.Sprintf("http://localhost/gen-%d/oauth", gen) }

// genOf is the generation of an issuer written by issuerOf, or -1.
func genOf(iss string) int {
	s, ok := strings.CutPrefix(iss, "http://localhost/gen-")
	if !ok {
		return -1
	}
	s, ok = strings.CutSuffix(s, "/oauth")
	if !ok {
		return -1
	}
	g, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return g
}

// keyName: odd keys are EdDSA (the name holds "ed"), even ones ES256.
func keyName(i int) string {
	if i%2 == 1 {
		return fmt.Sprintf("k%d-ed", i)
	}
	return fmt.Sprintf("k%d", i)
}

// keyEpoch is one set of published keys. Rotation goes {a} → {a, b}
// (publish the new key before it signs) → {b} → {b, c} …, so every epoch
// has a kid list of its own.
type keyEpoch struct {
	names []string
	kids  string // the JWKS kids, in order, comma-separated
	algs  string // discovery's id_token_signing_alg_values_supported
}

// reloadStep is one planned edit of config.yaml.
type reloadStep struct {
	index      int
	kind       string // good, rotate, unknown-key, missing-variable, invalid-yaml, missing-key, bad-pem
	good       bool
	gen        int // the issuer's generation (also written by broken edits, which must never be served)
	epoch      int // key epoch served once a good step is applied
	body       string
	extraPath  string // a file to write before the config (the bad PEM)
	extraBody  string
	viaWatcher bool // rely on the watcher alone; otherwise also call Reload
}

type loadPlan struct {
	epochs      []keyEpoch
	genEpoch    map[int]int // good generation → its key epoch
	epochByKids map[string]int
	initial     string // config.yaml of generation 0
	steps       []reloadStep
}

func newLoadPlan(t *testing.T, secrets, db string) *loadPlan {
	t.Helper()
	rotations := loadReloads / rotateEvery
	nkeys := rotations/2 + 1
	files := map[string]string{}
	kid := map[string]string{}
	for i := range nkeys + 1 {
		name := keyName(i)
		k := testkit.MustKey(t, testkit.KeyAlg(name))
		path := filepath.Join(secrets, name+".pem")
		if err := k.Write(path); err != nil {
			t.Fatal(err)
		}
		s, err := keys.Parse(&config.Key{Meta: config.Meta{Name: name}, Algorithm: k.Alg, PrivateKey: secret.New(string(k.PEM))})
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		files[name], kid[name] = path, s.KID
	}
	p := &loadPlan{genEpoch: map[int]int{}, epochByKids: map[string]int{}}
	addEpoch := func(names []string) {
		e := keyEpoch{names: names}
		var kids, algs []string
		for _, n := range names {
			kids = append(kids, kid[n])
			if a := testkit.KeyAlg(n); !slices.Contains(algs, a) {
				algs = append(algs, a)
			}
		}
		e.kids, e.algs = strings.Join(kids, ","), strings.Join(algs, ",")
		p.epochByKids[e.kids] = len(p.epochs)
		p.epochs = append(p.epochs, e)
	}
	keysOf := func(names []string) map[string]string {
		m := map[string]string{}
		for _, n := range names {
			m[n] = files[n]
		}
		return m
	}
	configFor := func(gen, epoch int) string {
		names := p.epochs[epoch].names
		return testkit.TokenConfig(testkit.SQLiteYAML(db), issuerOf(gen), names...) + testkit.KeysConfig(keysOf(names))
	}

	addEpoch([]string{keyName(0)})
	p.genEpoch[0] = 0
	p.initial = configFor(0, 0)
	nextKey, epoch := 1, 0
	broken := []string{"unknown-key", "missing-variable", "invalid-yaml", "missing-key", "bad-pem"}
	nbroken := 0
	for i := 1; i <= loadReloads; i++ {
		st := reloadStep{index: i, gen: i, viaWatcher: i%2 == 0}
		cur := p.epochs[epoch].names
		switch {
		case i%4 == 3: // 25 broken edits, never on a rotation step
			st.kind = broken[nbroken%len(broken)]
			nbroken++
			good := configFor(i, epoch)
			switch st.kind {
			case "unknown-key":
				st.body = strings.Replace(good, "endpoints:", "endpoint:", 1)
			case "missing-variable":
				st.body = testkit.TokenConfig(testkit.SQLiteYAML(db), "${LOADTEST_UNSET_BASE}/gen-"+strconv.Itoa(i)+"/oauth", cur...) + testkit.KeysConfig(keysOf(cur))
			case "invalid-yaml":
				st.body = good + "clients: {web: [unclosed\n"
			case "missing-key":
				st.body = testkit.TokenConfig(testkit.SQLiteYAML(db), issuerOf(i), append(append([]string{}, cur...), "k-missing")...) + testkit.KeysConfig(keysOf(cur))
			case "bad-pem":
				// Loads (a key's PEM is checked by served.Build), then
				// fails to build: the partly built runtime is discarded.
				st.extraPath = filepath.Join(secrets, fmt.Sprintf("bad-%d.pem", i))
				st.extraBody = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
				m := keysOf(cur)
				m["kbad"] = st.extraPath
				st.body = testkit.TokenConfig(testkit.SQLiteYAML(db), issuerOf(i), append(append([]string{}, cur...), "kbad")...) + testkit.KeysConfig(m)
			}
		case i%rotateEvery == 0:
			next := []string{cur[0], keyName(nextKey)}
			if len(cur) == 2 {
				next = []string{cur[1]}
			} else {
				nextKey++
			}
			addEpoch(next)
			epoch = len(p.epochs) - 1
			st.kind, st.good, st.epoch = "rotate", true, epoch
			st.body = configFor(i, epoch)
			p.genEpoch[i] = epoch
		default:
			st.kind, st.good, st.epoch = "good", true, epoch
			st.body = configFor(i, epoch)
			p.genEpoch[i] = epoch
		}
		p.steps = append(p.steps, st)
	}
	return p
}

// failures collects failed or inconsistent responses from the clients.
type failures struct {
	n    atomic.Int64
	mu   sync.Mutex
	msgs []string
}

func (f *failures) add(format string, args ...any) {
	if f.n.Add(1) > 20 {
		return
	}
	f.mu.Lock()
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

// loadClient is one client goroutine's view: responses are requested one
// after the other, so what it sees must never go back to an older snapshot.
type loadClient struct {
	id        int
	plan      *loadPlan
	fails     *failures
	ok        *atomic.Int64 // successful responses of all clients
	lastGen   int
	lastEpoch int
	discovery int
	jwks      int
	gens      map[int]bool
}

func (c *loadClient) checkDiscovery(body []byte) {
	var d map[string]any
	if err := json.Unmarshal(body, &d); err != nil {
		c.fails.add("client %d: discovery is not JSON: %v: %.200s", c.id, err, body)
		return
	}
	iss, _ := d["issuer"].(string)
	gen := genOf(iss)
	epoch, good := c.plan.genEpoch[gen]
	if !good {
		c.fails.add("client %d: discovery has issuer %q, which no good config had", c.id, iss)
		return
	}
	if _, ok := d["jwks_uri"]; !ok {
		c.fails.add("client %d: discovery of %q has no jwks_uri", c.id, iss)
	}
	for k, v := range d {
		if k != "jwks_uri" && !strings.HasSuffix(k, "_endpoint") {
			continue
		}
		if s, _ := v.(string); !strings.HasPrefix(s, iss+"/") {
			c.fails.add("client %d: mixed snapshot: discovery of %q has %s %q", c.id, iss, k, v)
		}
	}
	var algs []string
	list, _ := d["id_token_signing_alg_values_supported"].([]any)
	for _, a := range list {
		s, _ := a.(string)
		algs = append(algs, s)
	}
	if got, want := strings.Join(algs, ","), c.plan.epochs[epoch].algs; got != want {
		c.fails.add("client %d: mixed snapshot: discovery of generation %d lists algs %s, its keys are %s", c.id, gen, got, want)
	}
	if gen < c.lastGen || epoch < c.lastEpoch {
		c.fails.add("client %d: went back: generation %d (key epoch %d) after generation %d (key epoch %d)",
			c.id, gen, epoch, c.lastGen, c.lastEpoch)
	}
	c.lastGen, c.lastEpoch = max(c.lastGen, gen), max(c.lastEpoch, epoch)
	c.gens[gen] = true
}

func (c *loadClient) checkJWKS(body []byte) {
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		c.fails.add("client %d: jwks is not JSON: %v: %.200s", c.id, err, body)
		return
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KID)
		if k.D != "" {
			c.fails.add("client %d: jwks publishes a private key", c.id)
		}
	}
	epoch, ok := c.plan.epochByKids[strings.Join(kids, ",")]
	if !ok || len(kids) < 1 || len(kids) > 2 {
		c.fails.add("client %d: jwks kids %v are no generation's keys", c.id, kids)
		return
	}
	if epoch < c.lastEpoch {
		c.fails.add("client %d: went back: jwks of key epoch %d after key epoch %d", c.id, epoch, c.lastEpoch)
	}
	c.lastEpoch = max(c.lastEpoch, epoch)
}

// run requests discovery and jwks alternately until stop is closed.
func (c *loadClient) run(hc *http.Client, base string, stop <-chan struct{}) {
	const maxRequests = 10_000_000 // a bound; stop ends the loop long before
	for i := range maxRequests {
		select {
		case <-stop:
			return
		default:
		}
		path := discoveryPath
		if (i+c.id)%2 == 1 {
			path = jwksPath
		}
		code, body, err := testkit.HTTPGet(hc, base+path)
		switch {
		case err != nil:
			c.fails.add("client %d: GET %s: %v", c.id, path, err)
			continue
		case code != http.StatusOK:
			c.fails.add("client %d: GET %s: status %d: %.200s", c.id, path, code, body)
			continue
		}
		c.ok.Add(1)
		if path == discoveryPath {
			c.discovery++
			c.checkDiscovery(body)
		} else {
			c.jwks++
			c.checkJWKS(body)
		}
	}
}

// seenRuntime is a runtime the test saw installed: a weak pointer (so the
// test does not keep it alive) and its Done channel.
type seenRuntime struct {
	gen  int
	ptr  weak.Pointer[served.Set]
	done <-chan struct{}
}

func chanClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func heapInuseAfterGC() uint64 {
	goruntime.GC()
	goruntime.GC() // a second cycle frees what the first one's finalizers and sync.Pools released
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestHundredReloadsUnderLoad: 16 clients request discovery and JWKS
// without pause while the config is edited 100 times (75 good edits, ten
// of which rotate the keys, and 25 broken ones). Every response must be a
// 200 from exactly one good snapshot, and no client may ever see an older
// snapshot after a newer one. Afterwards goroutines and heap return to
// their baselines, every retired runtime is closed and collected, and
// Shutdown leaves no goroutine behind.
func TestHundredReloadsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	began := time.Now()
	preNode := listGoroutines()
	baseA := len(preNode)

	dir, secrets := t.TempDir(), t.TempDir()
	plan := newLoadPlan(t, secrets, filepath.Join(t.TempDir(), "keygate.db"))
	cfg := filepath.Join(dir, "config.yaml")
	testkit.WriteAtomic(t, cfg, plan.initial)

	s := testSettings(dir, 10*time.Millisecond, 0) // no periodic check: every reload is one the test caused
	n := startTestNode(t, s, nil, func(n *Node) {
		// fasthttp keeps an idle worker goroutine per past connection for
		// MaxIdleWorkerDuration (default 10s) and its cleaner sleeps that
		// long between sweeps. Not a leak, but it would hide one, and make
		// the test wait: sweep every 100ms.
		n.public.MaxIdleWorkerDuration = 100 * time.Millisecond
	})

	seen := []seenRuntime{{gen: 0, ptr: weak.Make(n.holder.Current()), done: n.holder.Current().Done()}}

	// Baselines with the node serving and idle: its goroutines, once the
	// server worker of the readiness probe's connection is reaped (the
	// count stops falling for 300ms), and the heap after the first load.
	var idle map[string]string
	{
		idle = listGoroutines()
		low, lowAt := len(idle), time.Now()
		testkit.Poll(2*time.Second, 20*time.Millisecond, func() bool {
			if g := listGoroutines(); len(g) < low {
				idle, low, lowAt = g, len(g), time.Now()
			}
			return time.Since(lowAt) >= 300*time.Millisecond
		})
	}
	baseB := len(idle)
	heap0 := heapInuseAfterGC()

	transport := &http.Transport{MaxIdleConnsPerHost: 2 * loadClients, DisableCompression: true, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	control := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 5 * time.Second}
	servedIssuer := func() string {
		code, body, err := testkit.HTTPGet(control, n.public+discoveryPath)
		if err != nil || code != http.StatusOK {
			return ""
		}
		var d struct{ Issuer string }
		_ = json.Unmarshal(body, &d)
		return d.Issuer
	}

	fails := &failures{}
	var ok atomic.Int64
	stop := make(chan struct{})
	clients := make([]*loadClient, loadClients)
	var wg sync.WaitGroup
	for i := range clients {
		c := &loadClient{id: i, plan: plan, fails: fails, ok: &ok, gens: map[int]bool{}}
		clients[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(hc, n.public, stop)
		}()
	}
	stopClients := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
		transport.CloseIdleConnections()
		control.CloseIdleConnections()
	})
	t.Cleanup(stopClients)

	// The reloads.
	loadStart := time.Now()
	lastGood := 0
	var goodSteps, brokenSteps int
	var slowest time.Duration
	for _, st := range plan.steps {
		if st.extraPath != "" {
			if err := os.WriteFile(st.extraPath, []byte(st.extraBody), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		failedBefore := n.StatusSnapshot().Failures
		stepStart := time.Now()
		testkit.WriteAtomic(t, cfg, st.body)
		if !st.viaWatcher {
			n.Reload()
		}
		if st.good {
			want := issuerOf(st.gen)
			testkit.WaitEvery(t, stepTimeout, time.Millisecond, fmt.Sprintf("reload %d (%s) to serve %s", st.index, st.kind, want), func() bool { return servedIssuer() == want })
			cur := n.holder.Current()
			if got := cur.Snapshot().Profiles["token"].Issuer; got != want {
				t.Fatalf("reload %d: the installed runtime has issuer %q, want %q", st.index, got, want)
			}
			seen = append(seen, seenRuntime{gen: st.gen, ptr: weak.Make(cur), done: cur.Done()})
			lastGood = st.gen
			goodSteps++
		} else {
			testkit.WaitEvery(t, stepTimeout, time.Millisecond, fmt.Sprintf("reload %d (%s) to fail", st.index, st.kind), func() bool {
				return n.StatusSnapshot().Failures > failedBefore
			})
			if got := servedIssuer(); got != issuerOf(lastGood) {
				t.Fatalf("after broken reload %d (%s) the node serves %q, want the last good %q", st.index, st.kind, got, issuerOf(lastGood))
			}
			if st.kind != "bad-pem" && !strings.Contains(n.StatusSnapshot().LastError, "config.yaml") {
				t.Errorf("reload %d (%s): last_error does not name the file: %q", st.index, st.kind, n.StatusSnapshot().LastError)
			}
			brokenSteps++
		}
		slowest = max(slowest, time.Since(stepStart))
		// Steady load: every snapshot serves its share of requests
		// before the next edit.
		answered := ok.Load()
		testkit.WaitEvery(t, stepTimeout, time.Millisecond, fmt.Sprintf("%d responses after reload %d", perStepResponses, st.index), func() bool {
			return ok.Load() >= answered+perStepResponses || fails.n.Load() > 0
		})
	}
	reloadPhase := time.Since(loadStart)
	stopClients()

	var total, disc, jw int
	gens := map[int]bool{}
	for _, c := range clients {
		disc += c.discovery
		jw += c.jwks
		for g := range c.gens {
			gens[g] = true
		}
		if c.discovery+c.jwks == 0 {
			t.Errorf("client %d made no successful request", c.id)
		}
	}
	total = disc + jw
	t.Logf("reloads: %d good (%d rotating keys), %d broken, in %s (slowest step %s)",
		goodSteps, loadReloads/rotateEvery, brokenSteps, reloadPhase.Round(time.Millisecond), slowest.Round(time.Millisecond))
	t.Logf("responses: %d ok (%d discovery, %d jwks) from %d clients, %.0f/s; %d generations seen by clients; %d failed or inconsistent",
		total, disc, jw, loadClients, float64(total)/reloadPhase.Seconds(), len(gens), fails.n.Load())
	if fails.n.Load() > 0 {
		t.Errorf("%d failed or inconsistent responses; the first ones:\n%s", fails.n.Load(), strings.Join(fails.msgs, "\n"))
	}
	if total < loadReloads*perStepResponses {
		t.Errorf("only %d responses: the load was not steady", total)
	}
	if len(gens) < goodSteps/4 {
		t.Errorf("clients saw only %d of %d generations: the load did not overlap the reloads", len(gens), goodSteps+1)
	}

	st := n.StatusSnapshot()
	t.Logf("status: reloads=%d failures=%d last_result=%s", st.Reloads, st.Failures, st.LastResult)
	// Reloads counts successes, the start included. Each one swapped in a
	// runtime the test saw, so the retired-runtime checks below cover all.
	if want := int64(goodSteps + 1); st.Reloads != want {
		t.Errorf("status reloads = %d, want %d (the start and one per good edit)", st.Reloads, want)
	}
	if st.Failures < int64(brokenSteps) {
		t.Errorf("status failures = %d, want at least %d", st.Failures, brokenSteps)
	}

	// Leaks, with the node still serving.
	// Goroutines started since the node was idle: the clients' and the
	// server's per-connection ones must be gone.
	var afterClients int
	var started []string
	if !testkit.Poll(10*time.Second, 20*time.Millisecond, func() bool {
		goruntime.GC()
		afterClients = numGoroutines()
		started = newGoroutines(preNode, idle)
		return len(started) <= maxGoroutine && afterClients <= baseB+maxGoroutine
	}) {
		t.Errorf("goroutines after the load: %d, with the node idle %d (+%d allowed); %d started since:\n%s",
			afterClients, baseB, maxGoroutine, len(started), strings.Join(started, "\n\n"))
	}
	var heap1 uint64
	if !testkit.Poll(5*time.Second, 20*time.Millisecond, func() bool {
		heap1 = heapInuseAfterGC()
		return heap1 < heap0+heapMargin
	}) {
		t.Errorf("heap in use after the load: %.1f MB, after the first load %.1f MB (+%d MB allowed)",
			toMB(heap1), toMB(heap0), heapMargin>>20)
	}
	retired := seen[:len(seen)-1]
	var unclosed []int
	if !testkit.Poll(5*time.Second, 10*time.Millisecond, func() bool {
		unclosed = unclosed[:0]
		for _, r := range retired {
			if !chanClosed(r.done) {
				unclosed = append(unclosed, r.gen)
			}
		}
		return len(unclosed) == 0
	}) {
		t.Errorf("%d retired runtimes never closed (generations %v)", len(unclosed), unclosed)
	}
	if chanClosed(seen[len(seen)-1].done) {
		t.Error("the serving runtime is closed")
	}
	var alive []int
	if !testkit.Poll(5*time.Second, 20*time.Millisecond, func() bool {
		goruntime.GC()
		alive = alive[:0]
		for _, r := range retired {
			if r.ptr.Value() != nil {
				alive = append(alive, r.gen)
			}
		}
		return len(alive) == 0
	}) {
		t.Errorf("%d retired runtimes still reachable after GC (generations %v)", len(alive), alive)
	}
	t.Logf("goroutines: %d before the node, %d node idle, %d after the load; heap in use: %.1f MB after the first load, %.1f MB after the load; retired runtimes: %d, %d of them closed, %d collected",
		baseA, baseB, afterClients, toMB(heap0), toMB(heap1), len(retired), len(retired)-len(unclosed), len(retired)-len(alive))

	// Shutdown: the watcher, listeners, reloader and the last runtime go.
	last := seen[len(seen)-1]
	if err := n.shutdown(t); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if n.holder.Current() != nil {
		t.Error("a runtime is still installed after Shutdown")
	}
	if !chanClosed(last.done) {
		t.Error("the last runtime was not closed by Shutdown")
	}
	var afterShutdown int
	shutdownAt := time.Now()
	// Every goroutine started since the test began must end. fasthttp's
	// worker-pool cleaner of the ops listener sleeps up to 10s between
	// sweeps and exits only when it wakes.
	if !testkit.Poll(15*time.Second, 20*time.Millisecond, func() bool {
		goruntime.GC()
		afterShutdown = numGoroutines()
		started = newGoroutines(preNode)
		return len(started) == 0
	}) {
		t.Errorf("goroutines after Shutdown: %d, before the node: %d; %d left of those started since:\n%s",
			afterShutdown, baseA, len(started), strings.Join(started, "\n\n"))
	}
	t.Logf("goroutines after Shutdown: %d (before the node: %d) after %s; wall time %s", afterShutdown, baseA,
		time.Since(shutdownAt).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

func toMB(b uint64) float64 { return float64(b) / (1 << 20) }
