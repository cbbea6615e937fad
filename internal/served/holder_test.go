package served

import (
	"fmt"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const deadline = 10 * time.Second

func waitDone(t testing.TB, r *Set) {
	t.Helper()
	select {
	case <-r.Done():
	case <-time.After(deadline):
		t.Fatalf("set %s not closed within %s", r.snapHash(), deadline)
	}
}

func isDone(r *Set) bool {
	select {
	case <-r.Done():
		return true
	default:
		return false
	}
}

// probe is a test set that records its closes and flags a request that
// runs while (or after) it is closed.
type probe struct {
	*Set
	id         string
	closes     atomic.Int32
	closed     atomic.Bool
	violations *atomic.Int64
}

func newProbe(id string, violations *atomic.Int64, serve func(p *probe, ctx *fasthttp.RequestCtx)) *probe {
	p := &probe{id: id, violations: violations}
	p.Set = newSet(nil, Deps{})
	p.closers = append(p.closers, func() error {
		p.closes.Add(1)
		p.closed.Store(true)
		return nil
	})
	p.handler = func(ctx *fasthttp.RequestCtx) {
		if p.closed.Load() {
			p.violations.Add(1)
		}
		if serve != nil {
			serve(p, ctx)
		}
		ctx.SetBodyString(p.id)
		if p.closed.Load() {
			p.violations.Add(1)
		}
	}
	return p
}

func TestServeBeforeFirstSwap(t *testing.T) {
	var h Holder
	if h.Current() != nil {
		t.Fatal("zero Holder has a set")
	}
	resp := serve(h.Serve, "GET", "/oauth/v2/jwks")
	if resp.status != 503 || resp.body != `{"error":"temporarily_unavailable"}` ||
		resp.header["Content-Type"] != "application/json" || resp.header["Retry-After"] != "1" {
		t.Fatalf("got %+v", resp)
	}
}

func TestSwapClosesIdleSetAtOnce(t *testing.T) {
	var h Holder
	var v atomic.Int64
	a, b := newProbe("a", &v, nil), newProbe("b", &v, nil)
	if prev := h.Swap(a.Set); prev != nil {
		t.Fatal("first Swap returned a set")
	}
	if resp := serve(h.Serve, "GET", "/"); resp.body != "a" {
		t.Fatalf("served %q", resp.body)
	}
	if prev := h.Swap(a.Set); prev != a.Set || isDone(a.Set) {
		t.Fatal("re-installing the current set retired it")
	}
	if prev := h.Swap(b.Set); prev != a.Set {
		t.Fatal("Swap did not return the previous set")
	}
	// Idle: closed synchronously by Swap.
	if !isDone(a.Set) || a.closes.Load() != 1 {
		t.Fatalf("idle set not closed by Swap (closes %d)", a.closes.Load())
	}
	if h.Current() != b.Set {
		t.Fatal("Current is not the installed set")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("Swap of a retired set did not panic")
			}
		}()
		h.Swap(a.Set)
	}()
	if h.Current() != b.Set {
		t.Fatal("failed Swap changed the current set")
	}
	h.Swap(nil)
	if !isDone(b.Set) {
		t.Fatal("Swap(nil) did not retire the set")
	}
	if resp := serve(h.Serve, "GET", "/"); resp.status != 503 {
		t.Fatalf("after Swap(nil): %d", resp.status)
	}
	if v.Load() != 0 {
		t.Fatalf("%d requests ran in a closed set", v.Load())
	}
}

// TestRequestServedWhollyByItsSet: a request that started on A
// finishes on A even if B is swapped in meanwhile, and A is closed only
// after that request ends.
func TestRequestServedWhollyByItsSet(t *testing.T) {
	var h Holder
	var v atomic.Int64
	entered, unblock := make(chan struct{}), make(chan struct{})
	a := newProbe("A", &v, func(_ *probe, _ *fasthttp.RequestCtx) {
		close(entered)
		<-unblock
	})
	b := newProbe("B", &v, nil)
	h.Swap(a.Set)

	got := make(chan response, 1)
	go func() { got <- serve(h.Serve, "GET", "/slow") }()
	select {
	case <-entered:
	case <-time.After(deadline):
		t.Fatal("request never reached set A")
	}

	if prev := h.Swap(b.Set); prev != a.Set {
		t.Fatal("Swap did not return A")
	}
	if isDone(a.Set) {
		t.Fatal("A closed while a request was in it")
	}
	if resp := serve(h.Serve, "GET", "/fast"); resp.body != "B" {
		t.Fatalf("new request served by %q, want B", resp.body)
	}
	if isDone(a.Set) {
		t.Fatal("A closed while a request was in it")
	}

	close(unblock)
	select {
	case resp := <-got:
		if resp.body != "A" {
			t.Fatalf("in-flight request answered by %q, want A", resp.body)
		}
	case <-time.After(deadline):
		t.Fatal("in-flight request did not finish")
	}
	waitDone(t, a.Set)
	if a.closes.Load() != 1 || isDone(b.Set) || v.Load() != 0 {
		t.Fatalf("A closes %d, B done %v, violations %d", a.closes.Load(), isDone(b.Set), v.Load())
	}
}

// TestSwapUnderLoad swaps 1000 times while goroutines serve: every retired
// set is closed exactly once, never while a request is in it, and no
// request finds no set.
func TestSwapUnderLoad(t *testing.T) {
	const (
		servers = 4
		swaps   = 1000
	)
	var (
		h          Holder
		violations atomic.Int64
		served     atomic.Int64
		unserved   atomic.Int64
		straddled  atomic.Int64 // requests during which their set was retired
		stop       = make(chan struct{})
		wg         sync.WaitGroup
	)
	// Yield mid-request so swaps land while requests are in flight; and hold
	// the very first request until its set is retired, so at least one
	// request straddles a swap however the scheduler runs on a busy machine.
	var heldOne atomic.Bool
	slow := func(p *probe, _ *fasthttp.RequestCtx) {
		if p.id == "0" && heldOne.CompareAndSwap(false, true) {
			until := time.Now().Add(10 * time.Second)
			for p.refs.Load()&retiredBit == 0 && time.Now().Before(until) {
				goruntime.Gosched()
			}
		}
		goruntime.Gosched()
		if p.refs.Load()&retiredBit != 0 {
			straddled.Add(1)
		}
	}
	probes := []*probe{newProbe("0", &violations, slow)}
	h.Swap(probes[0].Set)

	seen := make([]map[string]bool, servers)
	for i := range servers {
		seen[i] = map[string]bool{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var req fasthttp.Request
			req.SetRequestURI("/oauth/v2/jwks")
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, nil, nil)
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx.Response.Reset()
				h.Serve(&ctx)
				if ctx.Response.StatusCode() != 200 || len(ctx.Response.Body()) == 0 {
					unserved.Add(1)
				}
				seen[i][string(ctx.Response.Body())] = true
				served.Add(1)
				// Busy servers would starve the swapper on a small
				// machine (a 10ms time slice per swap).
				goruntime.Gosched()
			}
		}()
	}

	for i := 1; i <= swaps; i++ {
		// Let some requests run on the current set first, so swaps
		// interleave with requests rather than racing ahead of them.
		before, until := served.Load(), time.Now().Add(deadline)
		for served.Load() == before {
			if time.Now().After(until) {
				t.Fatal("servers made no progress")
			}
			goruntime.Gosched()
		}
		p := newProbe(fmt.Sprint(i), &violations, slow)
		probes = append(probes, p)
		h.Swap(p.Set)
	}
	close(stop)
	wg.Wait()
	h.Swap(nil)

	for _, p := range probes {
		waitDone(t, p.Set)
		if n := p.closes.Load(); n != 1 {
			t.Errorf("set %s closed %d times", p.id, n)
		}
	}
	if n := violations.Load(); n != 0 {
		t.Errorf("%d requests ran in a closed set", n)
	}
	if n := unserved.Load(); n != 0 {
		t.Errorf("%d requests found no set", n)
	}
	distinct := map[string]bool{}
	for _, s := range seen {
		for id := range s {
			distinct[id] = true
		}
	}
	t.Logf("%d requests over %d swaps, served by %d distinct sets; %d in flight across a swap",
		served.Load(), swaps, len(distinct), straddled.Load())
	if straddled.Load() == 0 {
		t.Error("no request was in flight during a swap; the test proves nothing")
	}
	if len(distinct) < swaps/2 {
		t.Errorf("only %d sets served requests; the test did not interleave", len(distinct))
	}
}
