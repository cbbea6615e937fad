package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// ---- latency histogram ----

// A log-linear histogram of nanoseconds (HDR-like): values below 128 ns
// have their own bucket; above, each power of two is split into 64
// buckets, so a bucket is at most 1/64 (1.6 %) of its value wide. Each
// worker owns one, so recording takes no lock; they are merged at the end.
const (
	subBits    = 7
	subCount   = 1 << subBits // 128 linear buckets, then 64 per octave
	halfCount  = subCount / 2
	numBuckets = subCount + (64-subBits)*halfCount
)

type histogram struct {
	counts [numBuckets]uint32
	total  uint64
}

func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits // >= 1
	mant := v >> uint(shift)         // in [64, 128)
	return subCount + (shift-1)*halfCount + int(mant-halfCount)
}

// bucketMid is the middle of bucket i's range, in nanoseconds.
func bucketMid(i int) float64 {
	if i < subCount {
		return float64(i)
	}
	j := i - subCount
	shift := j/halfCount + 1
	mant := uint64(j%halfCount + halfCount)
	lo := mant << uint(shift)
	return float64(lo) + float64(uint64(1)<<uint(shift))/2
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.total++
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
}

// quantile returns the q-quantile in milliseconds (0 when empty).
func (h *histogram) quantile(q float64) float64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			return bucketMid(i) / 1e6
		}
	}
	return bucketMid(numBuckets-1) / 1e6
}

// ---- load driver ----

// load describes the requests of one scenario.
type load struct {
	addr string // host:port on loopback
	// setup prepares worker w's request (method, URI, headers, body).
	setup func(w int, req *fasthttp.Request)
	// bodies, when set, are cycled through as request bodies (shared,
	// read-only): all workers take the next one from one cursor, so a
	// value comes round again only after every other has been sent.
	bodies [][]byte
	// authz, when set, are cycled through as Authorization header values
	// the same way; dpop as DPoP header values.
	authz [][]byte
	dpop  [][]byte
	// want is the prefix a successful response body has.
	want []byte
}

// outcome is what the measured window saw.
type outcome struct {
	requests     uint64
	errors       uint64
	warmupErrors uint64
	hist         histogram
	elapsed      time.Duration // the measured window
	errorSample  string
}

type worker struct {
	hist         histogram
	requests     uint64
	errors       uint64
	warmupErrors uint64
	sample       string
}

// drive runs c workers sending l's requests for warmup+duration; only
// requests started and finished inside the measured window count. onStart
// and onEnd are called at the window's edges (by the driver's goroutine,
// not a worker).
func drive(ctx context.Context, l load, c int, warmup, duration time.Duration, onStart, onEnd func()) *outcome {
	hc := &fasthttp.HostClient{
		Addr:                     l.addr,
		MaxConns:                 c,
		ReadTimeout:              10 * time.Second,
		WriteTimeout:             10 * time.Second,
		MaxIdleConnDuration:      time.Minute,
		MaxConnWaitTimeout:       10 * time.Second,
		NoDefaultUserAgentHeader: true,
	}
	defer hc.CloseIdleConnections()
	var cursor atomic.Uint64
	return runWorkers(ctx, c, warmup, duration, onStart, onEnd, func(w int) (func() error, func()) {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		l.setup(w, req)
		n, na, nd := uint64(len(l.bodies)), uint64(len(l.authz)), uint64(len(l.dpop))
		op := func() error {
			if n > 0 || na > 0 || nd > 0 {
				k := cursor.Add(1) - 1
				if n > 0 {
					req.SetBodyRaw(l.bodies[k%n])
				}
				if na > 0 {
					req.Header.SetBytesV(fasthttp.HeaderAuthorization, l.authz[k%na])
				}
				if nd > 0 {
					req.Header.SetBytesV("DPoP", l.dpop[k%nd])
				}
			}
			if err := hc.Do(req, resp); err != nil {
				return err
			}
			if resp.StatusCode() != fasthttp.StatusOK || !bytes.HasPrefix(resp.Body(), l.want) {
				return fmt.Errorf("status %d: %.200s", resp.StatusCode(), resp.Body())
			}
			return nil
		}
		return op, func() { fasthttp.ReleaseRequest(req); fasthttp.ReleaseResponse(resp) }
	})
}

// runWorkers runs c workers for warmup+duration, each calling its op (from
// newOp, with an optional done to release what the op holds) back to back.
// Only ops started and finished inside the measured window count, with
// their latency; errors are counted apart for the warm-up and the window.
// onStart and onEnd are called at the window's edges by this goroutine.
func runWorkers(ctx context.Context, c int, warmup, duration time.Duration, onStart, onEnd func(),
	newOp func(w int) (op func() error, done func())) *outcome {
	measureStart := time.Now().Add(warmup)
	end := measureStart.Add(duration)
	workers := make([]*worker, c)
	var wg sync.WaitGroup
	for w := range c {
		wk := &worker{}
		workers[w] = wk
		wg.Add(1)
		go func() {
			defer wg.Done()
			op, done := newOp(w)
			if done != nil {
				defer done()
			}
			for {
				t0 := time.Now()
				if !t0.Before(end) || ctx.Err() != nil {
					return
				}
				err := op()
				t1 := time.Now()
				if err != nil {
					if wk.sample == "" {
						wk.sample = err.Error()
					}
					if t0.Before(measureStart) {
						wk.warmupErrors++
					} else {
						wk.errors++
					}
					continue
				}
				if !t0.Before(measureStart) && !t1.After(end) {
					wk.requests++
					wk.hist.record(t1.Sub(t0))
				}
			}
		}()
	}
	out := &outcome{}
	sleepUntil(ctx, measureStart)
	if onStart != nil {
		onStart()
	}
	windowStart := time.Now()
	sleepUntil(ctx, end)
	out.elapsed = time.Since(windowStart)
	if onEnd != nil {
		onEnd()
	}
	wg.Wait()
	for _, wk := range workers {
		out.requests += wk.requests
		out.errors += wk.errors
		out.warmupErrors += wk.warmupErrors
		out.hist.merge(&wk.hist)
		if out.errorSample == "" {
			out.errorSample = wk.sample
		}
	}
	return out
}

func sleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

// ---- result ----

// result is one output line.
type result struct {
	Scenario          string  `json:"scenario"`
	Storage           string  `json:"storage"`
	Concurrency       int     `json:"concurrency"`
	DurationS         float64 `json:"duration_s"`
	Requests          uint64  `json:"requests"`
	Throughput        float64 `json:"throughput_rps"`
	P50               float64 `json:"p50_ms"`
	P99               float64 `json:"p99_ms"`
	P999              float64 `json:"p999_ms"`
	Errors            uint64  `json:"errors"`
	ServerCPU         float64 `json:"server_cpu_s"`
	ServerCPUPerReqUS float64 `json:"server_cpu_per_req_us"`
	ServerPeakRSSMB   float64 `json:"server_peak_rss_mb"`

	// Context for reading the figures on a shared machine, in CPU
	// seconds over the window: the bench process (the load generator),
	// every other process (PostgreSQL, and whatever else shares the
	// machine: a high value means a disturbed measurement), and interrupt
	// time (mostly loopback networking, charged to no process).
	BenchCPU float64 `json:"bench_cpu_s"`
	OtherCPU float64 `json:"other_cpu_s"`
	IRQCPU   float64 `json:"irq_cpu_s"`

	WarmupErrors uint64 `json:"warmup_errors,omitempty"`
	Run          int    `json:"run,omitempty"` // with -repeat
	// Reload scenarios: config rewrites in the window, and the node's
	// keygate_config_reloads_total deltas over the window.
	ReloadWrites   *int `json:"reload_writes,omitempty"`
	Reloads        *int `json:"reloads,omitempty"`
	ReloadFailures *int `json:"reload_failures,omitempty"`
}

func newResult(s scenario, c int, o *outcome, server, bench, host, irq cpuWindow, rssKB int64) *result {
	r := &result{
		Scenario:     s.name,
		Storage:      s.storage,
		Concurrency:  c,
		DurationS:    round(o.elapsed.Seconds(), 3),
		Requests:     o.requests,
		P50:          round(o.hist.quantile(0.50), 3),
		P99:          round(o.hist.quantile(0.99), 3),
		P999:         round(o.hist.quantile(0.999), 3),
		Errors:       o.errors,
		WarmupErrors: o.warmupErrors,
	}
	if r.Storage == "" {
		r.Storage = "none"
	}
	if o.elapsed > 0 {
		r.Throughput = round(float64(o.requests)/o.elapsed.Seconds(), 1)
	}
	r.ServerCPU = round(server.seconds(), 3)
	if o.requests > 0 {
		r.ServerCPUPerReqUS = round(server.seconds()/float64(o.requests)*1e6, 2)
	}
	r.ServerPeakRSSMB = round(float64(rssKB)/1024, 1)
	r.BenchCPU = round(bench.seconds(), 3)
	other := host.seconds() - server.seconds() - bench.seconds()
	if server.same(bench) { // a ceiling in-process: one process
		other = host.seconds() - bench.seconds()
	}
	r.OtherCPU = round(math.Max(other, 0), 3)
	r.IRQCPU = round(irq.seconds(), 3)
	return r
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
