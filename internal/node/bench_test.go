package node

// Benchmarks of what makes a reload cheap enough to do on every change:
//   - reload latency, file write → new issuer served, with 10 and 10,000 clients;
//   - loading a 10,000-client config: time and peak memory;
//   - request latency (p50/p99) with and without a reload every 50ms.
//
//	go test -run '^$' -bench . -benchtime 20x ./internal/node/

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/testkit"
)

// ---- a config with many clients ----

// profilesConfig is the file the benchmarks edit: the token profile alone.
func profilesConfig(issuer string, keys ...string) string {
	return fmt.Sprintf(`profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: %s
    signing-keys: [%s]
    endpoints: [discovery, jwks]
    access-tokens: {format: jwt, lifetime: 5m}
    refresh-tokens: {lifetime: 720h, rotate: true}
`, issuer, strings.Join(keys, ", "))
}

// clientsConfig returns n realistic clients of the token profile and the
// env file holding the confidential ones' secrets (referenced as
// ${CLIENT_NNNNN_SECRET}, as a vault agent would write them). A mix of web
// apps (authorization code + refresh), services (client credentials,
// secret_post, an audience), native apps (public, private-use scheme and
// loopback redirects) and SPAs (public, disabled every 50th, tagged).
func clientsConfig(tb testing.TB, n int) (yaml, env string) {
	tb.Helper()
	var y, e strings.Builder
	y.Grow(n * 400)
	y.WriteString("clients:\n")
	secret := make([]byte, 24)
	for i := range n {
		name := fmt.Sprintf("client-%05d", i)
		api := fmt.Sprintf("api%02d", i%40)
		switch i % 4 {
		case 0: // confidential web app
			fmt.Fprintf(&y, `  %[1]s:
    profile: token
    secret: ${CLIENT_%05[2]d_SECRET}
    redirect-uris: [https://app-%05[2]d.example.com/callback, https://app-%05[2]d.example.com/silent-renew]
    post-logout-redirect-uris: [https://app-%05[2]d.example.com/]
    grant-types: [authorization_code, refresh_token]
    scopes: [openid, profile, email, offline_access, "%[3]s:read"]
    consent: true
`, name, i, api)
		case 1: // service
			fmt.Fprintf(&y, `  %[1]s:
    profile: token
    secret: ${CLIENT_%05[2]d_SECRET}
    token-endpoint-auth-method: client_secret_post
    grant-types: [client_credentials]
    scopes: ["%[3]s:read", "%[3]s:write"]
    audiences: [https://%[3]s.example.com]
    access-tokens: {format: opaque, lifetime: 10m}
`, name, i, api)
		case 2: // native app
			fmt.Fprintf(&y, `  %[1]s:
    profile: token
    token-endpoint-auth-method: none
    redirect-uris: ["com.example.app%05[2]d:/oauth2redirect", "http://127.0.0.1/callback"]
    grant-types: [authorization_code, refresh_token]
    scopes: [openid, profile, offline_access]
`, name, i)
		case 3: // single-page app
			fmt.Fprintf(&y, `  %[1]s:
    profile: token
    redirect-uris: [https://spa-%05[2]d.example.com/cb]
    grant-types: [authorization_code]
    scopes: [openid, profile, "%[3]s:read"]
    tags: [spa]
    enabled: %[4]t
`, name, i, api, i%50 != 3)
		}
		if i%4 <= 1 {
			if _, err := rand.Read(secret); err != nil {
				tb.Fatal(err)
			}
			fmt.Fprintf(&e, "CLIENT_%05d_SECRET=%s\n", i, hex.EncodeToString(secret))
		}
	}
	return y.String(), e.String()
}

// benchConfig writes config.d (base, keys, profiles, clients) and the
// secrets env file, and returns the env file's path.
func benchConfig(tb testing.TB, dir string, clients int) string {
	tb.Helper()
	secrets := tb.TempDir()
	k0 := testkit.KeyFile(tb, secrets, "k0")
	clientsYAML, env := clientsConfig(tb, clients)
	envPath := filepath.Join(secrets, "clients.env")
	if err := os.WriteFile(envPath, []byte(env), 0o600); err != nil {
		tb.Fatal(err)
	}
	testkit.WriteAtomic(tb, filepath.Join(dir, "00-base.yaml"), testkit.Head(testkit.SQLiteYAML(filepath.Join(secrets, "keygate.db")), "token"))
	testkit.WriteAtomic(tb, filepath.Join(dir, "10-keys.yaml"), testkit.KeysConfig(map[string]string{"k0": k0}))
	testkit.WriteAtomic(tb, filepath.Join(dir, "20-profiles.yaml"), profilesConfig(issuerOf(0), "k0"))
	testkit.WriteAtomic(tb, filepath.Join(dir, "30-clients.yaml"), clientsYAML)
	return envPath
}

// startBenchNode serves benchConfig with the shipped reload settings.
func startBenchNode(b *testing.B, clients int) (*testNode, string) {
	b.Helper()
	dir := b.TempDir()
	env := benchConfig(b, dir, clients)
	s := testSettings(dir, settingDefault(b, "ReloadDebounce"), settingDefault(b, "ReloadPoll"))
	s.EnvFiles = []string{env}
	n := startTestNode(b, s, nil, nil)
	if got := len(n.holder.Current().Snapshot().Clients); got < clients*9/10 {
		b.Fatalf("the node loaded %d clients, want about %d", got, clients)
	}
	return n, filepath.Join(dir, "20-profiles.yaml")
}

// ---- statistics ----

func latencyQuantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func toMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func toUS(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// reloadDuration is the sum and count of keygate_config_reload_duration_seconds
// (fingerprint + load + build of each success or failure).
func reloadDuration(b *testing.B, n *testNode) (sum float64, count uint64) {
	b.Helper()
	mfs, err := n.metrics.Registry().Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "keygate_config_reload_duration_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleSum(), h.GetSampleCount()
		}
	}
	b.Fatal("no keygate_config_reload_duration_seconds")
	return 0, 0
}

// ---- BenchmarkReloadLatency ----

// BenchmarkReloadLatency measures, per op, the time from the rename of an
// edited profiles file into config.d to the first discovery response of the
// public listener with the new issuer (polled every millisecond), with the
// shipped debounce and poll settings and the watcher as the only trigger.
// The clients file does not change. Reported: median_ms, p99_ms, max_ms,
// and reload_ms, the mean time the reloader spent per reload (fingerprint,
// load, build), so latency ≈ debounce + reload_ms + polling.
func BenchmarkReloadLatency(b *testing.B) {
	for _, clients := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			n, profiles := startBenchNode(b, clients)
			hc := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 5 * time.Second}
			defer hc.CloseIdleConnections()
			issuer := func() string {
				code, body, err := testkit.HTTPGet(hc, n.public+discoveryPath)
				if err != nil || code != http.StatusOK {
					return ""
				}
				var d struct{ Issuer string }
				_ = json.Unmarshal(body, &d)
				return d.Issuer
			}
			sum0, count0 := reloadDuration(b, n)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				want := issuerOf(i + 1)
				b.StopTimer()
				tmp, err := testkit.Stage(profiles, profilesConfig(want, "k0"))
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				t0 := time.Now()
				if err := os.Rename(tmp, profiles); err != nil {
					b.Fatal(err)
				}
				if !testkit.Poll(5*time.Second, time.Millisecond, func() bool { return issuer() == want }) {
					b.Fatalf("reload %d: %s not served within 5s; status %+v", i+1, want, n.StatusSnapshot())
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			sum1, count1 := reloadDuration(b, n)
			slices.Sort(lat)
			b.ReportMetric(toMS(latencyQuantile(lat, 0.5)), "median_ms")
			b.ReportMetric(toMS(latencyQuantile(lat, 0.99)), "p99_ms")
			b.ReportMetric(toMS(lat[len(lat)-1]), "max_ms")
			if count1 > count0 {
				b.ReportMetric((sum1-sum0)/float64(count1-count0)*1000, "reload_ms")
			}
		})
	}
}

// ---- BenchmarkLoad10kClients ----

// memSampler samples the heap every interval and keeps the peaks. It reads
// runtime/metrics, which does not stop the world: runtime.ReadMemStats
// every 2ms did, and the profile showed ~20% of the load's CPU time in
// asyncPreempt waiting for those stops.
type memSampler struct {
	stop               chan struct{}
	done               chan struct{}
	peakInuse, peakSys uint64
}

// heapInuseMetrics sum to MemStats.HeapInuse; totalMetric is MemStats.Sys.
var (
	heapInuseMetrics = []string{"/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes"}
	totalMetric      = "/memory/classes/total:bytes"
)

func sampleMem(interval time.Duration) *memSampler {
	s := &memSampler{stop: make(chan struct{}), done: make(chan struct{})}
	samples := []metrics.Sample{{Name: heapInuseMetrics[0]}, {Name: heapInuseMetrics[1]}, {Name: totalMetric}}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			metrics.Read(samples)
			inuse := samples[0].Value.Uint64() + samples[1].Value.Uint64()
			s.peakInuse, s.peakSys = max(s.peakInuse, inuse), max(s.peakSys, samples[2].Value.Uint64())
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *memSampler) finish() (peakInuse, peakSys uint64) {
	close(s.stop)
	<-s.done
	return s.peakInuse, s.peakSys
}

// BenchmarkLoad10kClients is config.Load of a config.d with 10,000 clients
// (secrets from an env file). Besides time and allocations per load it
// reports: alloc_MB/op (TotalAlloc growth per load), peak_heap_MB (the
// highest heap in use (MemStats.HeapInuse) sampled every 1ms while loading, absolute),
// peak_heap_over_base_MB (the same above the heap before the first load),
// peak_sys_MB (highest MemStats.Sys), and snapshot_MB (heap a loaded
// snapshot keeps alive).
func BenchmarkLoad10kClients(b *testing.B) {
	const clients = 10_000
	dir := b.TempDir()
	env := benchConfig(b, dir, clients)
	opts := config.Options{Dir: dir, EnvFiles: []string{env}, Role: "default"}
	snap, err := config.Load(opts) // also warms the page cache
	if err != nil {
		b.Fatal(err)
	}
	if len(snap.Clients) < clients*9/10 {
		b.Fatalf("loaded %d clients", len(snap.Clients))
	}
	snap = nil
	base := heapInuseAfterGC()
	var m0, m1 goruntime.MemStats
	goruntime.ReadMemStats(&m0)
	sampler := sampleMem(time.Millisecond)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if snap, err = config.Load(opts); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	peakInuse, peakSys := sampler.finish()
	goruntime.ReadMemStats(&m1)
	kept := heapInuseAfterGC()
	if snap == nil {
		b.Fatal("no snapshot")
	}
	b.ReportMetric(toMB(m1.TotalAlloc-m0.TotalAlloc)/float64(b.N), "alloc_MB/op")
	b.ReportMetric(toMB(peakInuse), "peak_heap_MB")
	b.ReportMetric(toMB(peakInuse-min(base, peakInuse)), "peak_heap_over_base_MB")
	b.ReportMetric(toMB(peakSys), "peak_sys_MB")
	b.ReportMetric(toMB(kept-min(base, kept)), "snapshot_MB")
	goruntime.KeepAlive(snap)
}

// ---- BenchmarkRequestsDuringReloads ----

const (
	reqClients      = 8
	reqsPerOp       = 500 // requests per op and phase, over all clients
	reqRounds       = 4   // idle and reloading phases alternate, so drift in the machine's load hits both
	reloadPeriod    = 50 * time.Millisecond
	minRoundReloads = 3 // a reloading phase lasts until this many reloads were applied in it
	requestTimeout  = 5 * time.Second
	phaseCap        = 60 * time.Second
)

// requestPhase sends GET url from reqClients goroutines (fasthttp client,
// keep-alive) until total requests are done and until() holds (nil: at
// once), and returns the latencies.
func requestPhase(b *testing.B, hc *fasthttp.HostClient, url string, total int, until func() bool) []time.Duration {
	b.Helper()
	var (
		next   atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup
		lats   = make([][]time.Duration, reqClients)
		end    = time.Now().Add(phaseCap)
	)
	more := func() bool {
		if next.Add(1) <= int64(total) {
			return true
		}
		return until != nil && !until() && time.Now().Before(end)
	}
	for c := range reqClients {
		lats[c] = make([]time.Duration, 0, total/reqClients+1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(url)
			for more() {
				t0 := time.Now()
				err := hc.DoTimeout(req, resp, requestTimeout)
				d := time.Since(t0)
				if err != nil || resp.StatusCode() != fasthttp.StatusOK {
					failed.Add(1)
					continue
				}
				lats[c] = append(lats[c], d)
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		b.Errorf("%d requests failed", f)
	}
	return slices.Concat(lats...)
}

// reloadDriver rewrites the profiles file with a new issuer every period
// and asks for a reload (as SIGHUP would; the watcher also sees the
// write), until stopped. stop returns the last issuer written.
func reloadDriver(b *testing.B, n *testNode, profiles string, gen *int, period time.Duration) (stop func() string) {
	quit, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			*gen++
			tmp := profiles + ".tmp~"
			if err := os.WriteFile(tmp, []byte(profilesConfig(issuerOf(*gen), "k0")), 0o644); err != nil {
				b.Error(err)
				return
			}
			if err := os.Rename(tmp, profiles); err != nil {
				b.Error(err)
				return
			}
			n.Reload()
			select {
			case <-quit:
				return
			case <-t.C:
			}
		}
	}()
	return func() string {
		close(quit)
		<-stopped
		return issuerOf(*gen)
	}
}

// BenchmarkRequestsDuringReloads: GET jwks latency from 8 concurrent
// keep-alive clients, with the config untouched (idle) and while the
// profiles file is rewritten and a reload requested every 50ms (reload).
// Phases alternate over 4 rounds; each op adds 500 requests to each phase,
// and a reloading round lasts at least until 3 reloads were applied in it
// (with 10,000 clients a reload takes longer than 50ms, so the reloader
// runs back to back). Reported: p50 and p99 of both phases in µs,
// p99_ratio (reload/idle), and reloads, the reloads applied in the reloading
// phases.
func BenchmarkRequestsDuringReloads(b *testing.B) {
	for _, clients := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			n, profiles := startBenchNode(b, clients)
			hc := &fasthttp.HostClient{Addr: strings.TrimPrefix(n.public, "http://"), MaxConns: reqClients}
			defer hc.CloseIdleConnections()
			control := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 5 * time.Second}
			defer control.CloseIdleConnections()
			url := n.public + jwksPath
			requestPhase(b, hc, url, 200, nil) // warm the connections
			perRound := max(b.N*reqsPerOp/reqRounds, 1)
			var idle, reloading []time.Duration
			var reloads int64
			gen := 0
			b.ResetTimer()
			for range reqRounds {
				idle = append(idle, requestPhase(b, hc, url, perRound, nil)...)

				before := n.StatusSnapshot().Reloads
				applied := func() bool { return n.StatusSnapshot().Reloads-before >= minRoundReloads }
				stop := reloadDriver(b, n, profiles, &gen, reloadPeriod)
				reloading = append(reloading, requestPhase(b, hc, url, perRound, applied)...)
				last := stop()
				// Let the last reload finish before the next idle phase.
				b.StopTimer()
				if !testkit.Poll(30*time.Second, time.Millisecond, func() bool {
					code, body, err := testkit.HTTPGet(control, n.public+discoveryPath)
					return err == nil && code == http.StatusOK && strings.Contains(string(body), `"issuer":"`+last+`"`)
				}) {
					b.Fatalf("%s not served within 30s", last)
				}
				reloads += n.StatusSnapshot().Reloads - before
				b.StartTimer()
			}
			b.StopTimer()
			slices.Sort(idle)
			slices.Sort(reloading)
			b.ReportMetric(toUS(latencyQuantile(idle, 0.5)), "idle_p50_us")
			b.ReportMetric(toUS(latencyQuantile(idle, 0.99)), "idle_p99_us")
			b.ReportMetric(toUS(latencyQuantile(reloading, 0.5)), "reload_p50_us")
			b.ReportMetric(toUS(latencyQuantile(reloading, 0.99)), "reload_p99_us")
			b.ReportMetric(float64(latencyQuantile(reloading, 0.99))/float64(max(latencyQuantile(idle, 0.99), 1)), "p99_ratio")
			b.ReportMetric(float64(reloads), "reloads")
		})
	}
}
