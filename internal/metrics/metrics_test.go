package metrics

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

func TestRegistry(t *testing.T) {
	m := New()
	m.ReloadSucceeded("abc", "v1", "default", time.Millisecond)
	m.ObserveRequest("token", "jwks", 200, time.Millisecond)
	m.TokenIssued("token", "client_credentials")
	m.OAuthError("token", "token", "invalid_grant", "code_expired")

	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
		if n := f.GetName(); !strings.HasPrefix(n, "keygate_") && !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
			t.Errorf("unexpected metric %s", n)
		}
	}
	for _, want := range []string{
		"keygate_config_reloads_total",
		"keygate_config_last_reload_success_timestamp_seconds",
		"keygate_config_last_reload_successful",
		"keygate_config_info",
		"keygate_config_reload_duration_seconds",
		"keygate_http_requests_total",
		"keygate_http_request_duration_seconds",
		"keygate_tokens_issued_total",
		"keygate_oauth_errors_total",
		"go_goroutines",
	} {
		if !names[want] {
			t.Errorf("registry lacks %s", want)
		}
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "keygate_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// TestSeparateRegistries: two servers in one process (tests) must not clash.
func TestSeparateRegistries(t *testing.T) {
	a, b := New(), New()
	a.ReloadUnchanged()
	if got := value(t, b.reloadUnchanged); got != 0 {
		t.Errorf("second Metrics saw the first's reload: %v", got)
	}
}

func TestReloads(t *testing.T) {
	m := New()
	reloads := func(result string) float64 {
		return counterValue(t, m, "keygate_config_reloads_total", map[string]string{"result": result})
	}
	// Every result is exported from the start so rate() and alerts work.
	for _, r := range []string{ResultSuccess, ResultFailure, ResultUnchanged} {
		if got := reloads(r); got != 0 {
			t.Errorf("initial %s = %v", r, got)
		}
	}
	if got := infoSeries(t, m); len(got) != 0 {
		t.Errorf("info before any load = %v", got)
	}

	before := float64(time.Now().Unix())
	m.ReloadSucceeded("hash1", "v1", "default", 20*time.Millisecond)
	if got := reloads(ResultSuccess); got != 1 {
		t.Errorf("success = %v", got)
	}
	if got := value(t, m.lastSuccessful); got != 1 {
		t.Errorf("last_reload_successful = %v", got)
	}
	if got := value(t, m.lastSuccessTime); got < before || got > float64(time.Now().Unix()+1) {
		t.Errorf("last success timestamp = %v, want about %v", got, before)
	}
	wantInfo := []map[string]string{{"hash": "hash1", "version": "v1", "role": "default"}}
	if got := infoSeries(t, m); !sameSeries(got, wantInfo) {
		t.Errorf("info = %v, want %v", got, wantInfo)
	}

	m.ReloadFailed(5 * time.Millisecond)
	if got := reloads(ResultFailure); got != 1 {
		t.Errorf("failure = %v", got)
	}
	if got := value(t, m.lastSuccessful); got != 0 {
		t.Errorf("last_reload_successful after failure = %v", got)
	}
	if got := infoSeries(t, m); !sameSeries(got, wantInfo) {
		t.Errorf("info after a failure = %v; the served config is unchanged", got)
	}

	m.ReloadUnchanged()
	if got := reloads(ResultUnchanged); got != 1 {
		t.Errorf("unchanged = %v", got)
	}
	if got := value(t, m.lastSuccessful); got != 0 {
		t.Errorf("an unchanged check changed last_reload_successful to %v", got)
	}

	m.ReloadSucceeded("hash2", "v2", "default", time.Second)
	wantInfo = []map[string]string{{"hash": "hash2", "version": "v2", "role": "default"}}
	if got := infoSeries(t, m); !sameSeries(got, wantInfo) {
		t.Errorf("info after a second load = %v, want only %v", got, wantInfo)
	}
	if got := value(t, m.lastSuccessful); got != 1 {
		t.Errorf("last_reload_successful = %v", got)
	}

	h := histogram(t, m, "keygate_config_reload_duration_seconds", nil)
	if h.GetSampleCount() != 3 {
		t.Errorf("reload duration count = %d, want 3 (unchanged checks excluded)", h.GetSampleCount())
	}
	if want := 0.020 + 0.005 + 1; h.GetSampleSum() < want-1e-9 || h.GetSampleSum() > want+1e-9 {
		t.Errorf("reload duration sum = %v, want %v", h.GetSampleSum(), want)
	}
}

func TestObserveRequest(t *testing.T) {
	m := New()
	m.ObserveRequest("token", "token", 200, 2*time.Millisecond)
	m.ObserveRequest("token", "token", 200, 3*time.Millisecond)
	m.ObserveRequest("token", "token", 400, time.Millisecond)
	m.ObserveRequest("token-external", "jwks", 200, 100*time.Microsecond)

	for _, c := range []struct {
		profile, endpoint, code string
		want                    float64
	}{
		{"token", "token", "200", 2},
		{"token", "token", "400", 1},
		{"token-external", "jwks", "200", 1},
	} {
		labels := map[string]string{"profile": c.profile, "endpoint": c.endpoint, "code": c.code}
		if got := counterValue(t, m, "keygate_http_requests_total", labels); got != c.want {
			t.Errorf("requests%v = %v, want %v", labels, got, c.want)
		}
	}
	h := histogram(t, m, "keygate_http_request_duration_seconds", map[string]string{"profile": "token", "endpoint": "token"})
	if h.GetSampleCount() != 3 {
		t.Errorf("duration count = %d, want 3 (all codes share the histogram)", h.GetSampleCount())
	}
	if got := len(gather(t, m, "keygate_http_request_duration_seconds")); got != 2 {
		t.Errorf("duration series = %d, want 2 (no code label)", got)
	}
}

func TestTokensAndErrors(t *testing.T) {
	m := New()
	m.TokenIssued("token", "client_credentials")
	m.TokenIssued("token", "client_credentials")
	m.TokenIssued("token", "refresh_token")
	m.OAuthError("token", "token", "invalid_grant", "code_expired")
	m.OAuthError("token", "introspect", "invalid_client", "wrong_secret")

	if got := counterValue(t, m, "keygate_tokens_issued_total", map[string]string{"profile": "token", "grant_type": "client_credentials"}); got != 2 {
		t.Errorf("client_credentials = %v", got)
	}
	if got := counterValue(t, m, "keygate_tokens_issued_total", map[string]string{"profile": "token", "grant_type": "refresh_token"}); got != 1 {
		t.Errorf("refresh_token = %v", got)
	}
	if got := counterValue(t, m, "keygate_oauth_errors_total", map[string]string{"profile": "token", "endpoint": "token", "error": "invalid_grant", "reason": "code_expired"}); got != 1 {
		t.Errorf("invalid_grant = %v", got)
	}
	if got := len(gather(t, m, "keygate_oauth_errors_total")); got != 2 {
		t.Errorf("error series = %d", got)
	}
}

func TestStorageGC(t *testing.T) {
	m := New()
	m.StorageGC("local-db", 0, nil) // a first run with nothing to delete exports the series
	if got := counterValue(t, m, "keygate_storage_gc_deleted_total", map[string]string{"data_source": "local-db"}); got != 0 {
		t.Errorf("deleted after an empty run = %v", got)
	}
	m.StorageGC("local-db", 7, nil)
	m.StorageGC("local-db", 2, errors.New("batch 2: connection reset")) // a failed run may have deleted rows
	m.StorageGC("eu-db", 3, nil)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"keygate_storage_gc_deleted_total", map[string]string{"data_source": "local-db"}, 9},
		{"keygate_storage_gc_deleted_total", map[string]string{"data_source": "eu-db"}, 3},
		{"keygate_storage_gc_runs_total", map[string]string{"data_source": "local-db", "result": "success"}, 2},
		{"keygate_storage_gc_runs_total", map[string]string{"data_source": "local-db", "result": "failure"}, 1},
		{"keygate_storage_gc_runs_total", map[string]string{"data_source": "eu-db", "result": "success"}, 1},
	} {
		if got := counterValue(t, m, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "keygate_storage_gc") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// TestConcurrent runs first observations of the same keys from many
// goroutines: no count may be lost while the cache is being filled.
func TestConcurrent(t *testing.T) {
	m := New()
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				m.ObserveRequest("token", "token", 200+(i+w)%3, time.Millisecond)
				m.TokenIssued("token", "client_credentials")
				m.OAuthError("token", "token", "invalid_grant", "code_expired")
			}
		})
	}
	wg.Wait()
	var total float64
	for _, code := range []string{"200", "201", "202"} {
		total += counterValue(t, m, "keygate_http_requests_total", map[string]string{"profile": "token", "endpoint": "token", "code": code})
	}
	if total != workers*each {
		t.Errorf("requests = %v, want %d", total, workers*each)
	}
	if got := counterValue(t, m, "keygate_tokens_issued_total", map[string]string{"profile": "token", "grant_type": "client_credentials"}); got != workers*each {
		t.Errorf("tokens = %v", got)
	}
	if got := counterValue(t, m, "keygate_oauth_errors_total", map[string]string{"profile": "token", "endpoint": "token", "error": "invalid_grant", "reason": "code_expired"}); got != workers*each {
		t.Errorf("oauth errors = %v", got)
	}
}

// TestHotPathDoesNotAllocate enforces in every test run what the benchmark shows.
func TestHotPathDoesNotAllocate(t *testing.T) {
	m := New()
	m.ObserveRequest("token", "token", 200, time.Millisecond)
	m.TokenIssued("token", "client_credentials")
	m.OAuthError("token", "token", "invalid_grant", "code_expired")
	for name, f := range map[string]func(){
		"ObserveRequest": func() { m.ObserveRequest("token", "token", 200, time.Millisecond) },
		"TokenIssued":    func() { m.TokenIssued("token", "client_credentials") },
		"OAuthError":     func() { m.OAuthError("token", "token", "invalid_grant", "code_expired") },
	} {
		if allocs := testing.AllocsPerRun(1000, f); allocs != 0 {
			t.Errorf("%s: %v allocs per call, want 0", name, allocs)
		}
	}
}

func BenchmarkObserveRequest(b *testing.B) {
	m := New()
	profiles := []string{"token", "token-external"}
	endpoints := []string{"token", "jwks", "introspect", "discovery"}
	codes := []int{200, 400, 401}
	for _, p := range profiles {
		for _, e := range endpoints {
			for _, c := range codes {
				m.ObserveRequest(p, e, c, time.Millisecond)
			}
		}
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.ObserveRequest(profiles[i%2], endpoints[i%4], codes[i%3], 750*time.Microsecond)
			i++
		}
	})
}

// value reads a single-series counter or gauge (testutil.ToFloat64 would pull
// a module go.mod does not list).
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var out dto.Metric
	if err := (<-ch).Write(&out); err != nil {
		t.Fatal(err)
	}
	if out.Counter != nil {
		return out.GetCounter().GetValue()
	}
	return out.GetGauge().GetValue()
}

func gather(t *testing.T, m *Metrics, name string) []*dto.Metric {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}

func find(t *testing.T, m *Metrics, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	for _, metric := range gather(t, m, name) {
		if labelMap(metric).equal(labels) {
			return metric
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return nil
}

func counterValue(t *testing.T, m *Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	return find(t, m, name, labels).GetCounter().GetValue()
}

func histogram(t *testing.T, m *Metrics, name string, labels map[string]string) *dto.Histogram {
	t.Helper()
	return find(t, m, name, labels).GetHistogram()
}

func infoSeries(t *testing.T, m *Metrics) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, metric := range gather(t, m, "keygate_config_info") {
		if metric.GetGauge().GetValue() != 1 {
			t.Errorf("keygate_config_info = %v, want 1", metric.GetGauge().GetValue())
		}
		out = append(out, labelMap(metric))
	}
	return out
}

type labels map[string]string

func labelMap(m *dto.Metric) labels {
	l := labels{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

func (l labels) equal(o map[string]string) bool {
	if len(l) != len(o) {
		return false
	}
	for k, v := range o {
		if l[k] != v {
			return false
		}
	}
	return true
}

func sameSeries(got []map[string]string, want []map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !labels(got[i]).equal(want[i]) {
			return false
		}
	}
	return true
}
