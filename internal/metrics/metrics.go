// Package metrics holds every Keygate Prometheus collector (keygate_*) in one
// registry of its own, so tests and a second server in one process never
// collide on the global default registry.
//
// Labels carry config names (profiles, roles) and fixed vocabularies
// (endpoints, grant types, OAuth error codes, HTTP status) only: never a
// secret, a token, a user or a raw request path, which would leak or explode
// cardinality.
package metrics

import (
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Reload results, the values of keygate_config_reloads_total{result}.
const (
	ResultSuccess   = "success"
	ResultFailure   = "failure"
	ResultUnchanged = "unchanged"
)

var (
	// reloadBuckets span a cached rebuild (~1ms) to a slow data-source ping (5s).
	reloadBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	// requestBuckets span a pre-serialized JWKS hit (0.1ms) to a slow token grant.
	requestBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
)

// Metrics is the node's collectors. Methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	reloadSuccess, reloadFailure, reloadUnchanged prometheus.Counter
	lastSuccessTime                               prometheus.Gauge
	lastSuccessful                                prometheus.Gauge
	reloadDuration                                prometheus.Histogram
	info                                          *configInfo

	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	tokens          *prometheus.CounterVec
	oauthErrors     *prometheus.CounterVec

	requestCache cache[requestKey, requestObservers]
	tokenCache   cache[[2]string, prometheus.Counter]
	errorCache   cache[[4]string, prometheus.Counter]

	gcDeleted *prometheus.CounterVec
	gcRuns    *prometheus.CounterVec

	auditEvents *prometheus.CounterVec
}

// New registers every collector, plus the Go runtime and process collectors,
// on a fresh registry.
func New() *Metrics {
	reloads := counterVec("keygate_config_reloads_total", "Config reload attempts by result (success, failure, unchanged).", "result")
	m := &Metrics{
		reg:             prometheus.NewRegistry(),
		reloadSuccess:   reloads.WithLabelValues(ResultSuccess),
		reloadFailure:   reloads.WithLabelValues(ResultFailure),
		reloadUnchanged: reloads.WithLabelValues(ResultUnchanged),
		lastSuccessTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keygate_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful config load.",
		}),
		lastSuccessful: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keygate_config_last_reload_successful",
			Help: "Whether the last config reload attempt succeeded (1) or failed (0).",
		}),
		reloadDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keygate_config_reload_duration_seconds",
			Help:    "Time to load, build and swap a config snapshot, failed attempts included.",
			Buckets: reloadBuckets,
		}),
		info: &configInfo{desc: prometheus.NewDesc(
			"keygate_config_info",
			"The config snapshot being served (always 1).",
			[]string{"hash", "version", "role"}, nil,
		)},
		requests: counterVec("keygate_http_requests_total", "HTTP requests served by profile, endpoint and status code.", "profile", "endpoint", "code"),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keygate_http_request_duration_seconds",
			Help:    "HTTP request latency by profile and endpoint.",
			Buckets: requestBuckets,
		}, []string{"profile", "endpoint"}),
		tokens:      counterVec("keygate_tokens_issued_total", "Tokens issued by profile and grant type.", "profile", "grant_type"),
		oauthErrors: counterVec("keygate_oauth_errors_total", "OAuth error responses by profile, endpoint, error code and reason (a fixed word, finer than the code: wrong_secret, code_expired, ...).", "profile", "endpoint", "error", "reason"),
		gcDeleted:   counterVec("keygate_storage_gc_deleted_total", "Expired rows deleted by the periodic storage GC, by data source.", "data_source"),
		gcRuns:      counterVec("keygate_storage_gc_runs_total", "Periodic storage GC runs by data source and result (success, failure).", "data_source", "result"),
		auditEvents: counterVec("keygate_audit_events_total", "Security events written to the audit trail by type (login_success, login_failure, lockout, refresh_token_reuse, ...).", "type"),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		reloads, m.lastSuccessTime, m.lastSuccessful, m.reloadDuration, m.info,
		m.requests, m.requestDuration, m.tokens, m.oauthErrors,
		m.gcDeleted, m.gcRuns, m.auditEvents,
	)
	return m
}

// counterVec is a counter with labels, the kind most keygate_* series are.
func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

// Registry is what the ops listener serves on /metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ReloadSucceeded records a snapshot now being served; call it for the
// initial load too, so the gauges are right from start-up. Only this
// config's info series remains.
func (m *Metrics) ReloadSucceeded(hash, version, role string, d time.Duration) {
	m.reloadSuccess.Inc()
	m.reloadDuration.Observe(d.Seconds())
	m.lastSuccessTime.SetToCurrentTime()
	m.lastSuccessful.Set(1)
	m.info.set(hash, version, role)
}

// ReloadFailed records an attempt whose snapshot was not served; the
// previous config's info series stays, since that config is still served.
func (m *Metrics) ReloadFailed(d time.Duration) {
	m.reloadFailure.Inc()
	m.reloadDuration.Observe(d.Seconds())
	m.lastSuccessful.Set(0)
}

// ReloadUnchanged records a check that found the inputs' hash unchanged and
// skipped the rebuild. It leaves the gauges alone: it did not try to load.
func (m *Metrics) ReloadUnchanged() {
	m.reloadUnchanged.Inc()
}

// ObserveRequest counts one HTTP request and its latency. It is on the hot
// path: after the first call for a (profile, endpoint, status) it does not
// allocate. endpoint must come from a fixed set (the profile's endpoint
// names, or e.g. "not_found"), never the raw path: every distinct value
// stays cached and exported for the life of the process.
func (m *Metrics) ObserveRequest(profile, endpoint string, status int, d time.Duration) {
	k := requestKey{profile, endpoint, status}
	o, ok := m.requestCache.get(k)
	if !ok {
		o = m.requestCache.add(k, func() requestObservers {
			return requestObservers{
				count:    m.requests.WithLabelValues(profile, endpoint, strconv.Itoa(status)),
				duration: m.requestDuration.WithLabelValues(profile, endpoint),
			}
		})
	}
	o.count.Inc()
	o.duration.Observe(d.Seconds())
}

// TokenIssued counts an issued token; grant is the grant_type value
// (authorization_code, client_credentials, refresh_token).
func (m *Metrics) TokenIssued(profile, grant string) {
	k := [2]string{profile, grant}
	c, ok := m.tokenCache.get(k)
	if !ok {
		c = m.tokenCache.add(k, func() prometheus.Counter { return m.tokens.WithLabelValues(profile, grant) })
	}
	c.Inc()
}

// OAuthError counts an OAuth error response; code is the RFC 6749 error code
// (invalid_grant, …) and reason the error's fixed reason word, never its
// description, which may echo client input.
func (m *Metrics) OAuthError(profile, endpoint, code, reason string) {
	k := [4]string{profile, endpoint, code, reason}
	c, ok := m.errorCache.get(k)
	if !ok {
		c = m.errorCache.add(k, func() prometheus.Counter { return m.oauthErrors.WithLabelValues(profile, endpoint, code, reason) })
	}
	c.Inc()
}

// AuditEvent counts a security event of the audit trail; typ is one of
// the catalogue's fixed types. Sign-ins and reuse are rare next to
// requests, so the child is resolved per call.
func (m *Metrics) AuditEvent(typ string) { m.auditEvents.WithLabelValues(typ).Inc() }

// Ready exports fn, called at each scrape, as keygate_ready: 1 when the
// node would answer /readyz 200, so alerts see what the probe sees.
func (m *Metrics) Ready(fn func() bool) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keygate_ready",
		Help: "1 when the node is ready to serve (what /readyz answers), else 0.",
	}, func() float64 {
		if fn() {
			return 1
		}
		return 0
	}))
}

// StorageGC records one periodic GC run on a data source (its config name,
// never its URL): the rows it deleted, and whether it failed. A failed run
// may still have deleted rows (GC deletes in batches). It runs every few
// minutes, so it resolves its children per call.
func (m *Metrics) StorageGC(dataSource string, deleted int64, err error) {
	result := ResultSuccess
	if err != nil {
		result = ResultFailure
	}
	m.gcRuns.WithLabelValues(dataSource, result).Inc()
	// Touch the series even at 0, so rate() works from the first run.
	c := m.gcDeleted.WithLabelValues(dataSource)
	if deleted > 0 {
		c.Add(float64(deleted))
	}
}

type requestKey struct {
	profile, endpoint string
	status            int
}

type requestObservers struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// cache maps label values to their resolved children. Reads are a lock-free
// load of an immutable map (no hashing of a joined string, no boxing, as
// WithLabelValues and sync.Map would cost); writes copy it, which is fine
// because the label sets are small and fixed after warm-up.
type cache[K comparable, V any] struct {
	m  atomic.Pointer[map[K]V]
	mu sync.Mutex // serializes writers
}

func (c *cache[K, V]) get(k K) (V, bool) {
	if p := c.m.Load(); p != nil {
		v, ok := (*p)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// add stores newValue() under k unless a racing writer already did, and
// returns the stored value.
func (c *cache[K, V]) add(k K, newValue func() V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := map[K]V{}
	if old := c.m.Load(); old != nil {
		if v, ok := (*old)[k]; ok {
			return v
		}
		next = maps.Clone(*old)
	}
	v := newValue()
	next[k] = v
	c.m.Store(&next)
	return v
}

// configInfo exports keygate_config_info for the served config only. Holding
// the labels atomically means a scrape never sees zero or two series, as it
// could between GaugeVec.Reset and Set.
type configInfo struct {
	desc   *prometheus.Desc
	labels atomic.Pointer[[3]string]
}

func (c *configInfo) set(hash, version, role string) {
	c.labels.Store(&[3]string{hash, version, role})
}

func (c *configInfo) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *configInfo) Collect(ch chan<- prometheus.Metric) {
	if l := c.labels.Load(); l != nil {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, l[0], l[1], l[2])
	}
}
