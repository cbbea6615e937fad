package served

import (
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// Holder holds the current set. Its zero value is ready and serves 503
// until the first Swap. One goroutine (the reloader) calls Swap; any
// number call Serve.
//
// Reference counting is lock-free: Set.refs counts in-flight requests
// and its retiredBit marks a set swapped out. Once the bit is set the
// count only falls, so the request (or the Swap) that sees it reach zero
// closes the set, exactly once. A request that loaded a set just as
// it was retired fails its CAS and reloads the current pointer, which Swap
// stored before retiring.
type Holder struct {
	cur atomic.Pointer[Set]
}

// Current returns the installed set (nil before the first Swap) for
// inspection, e.g. its Snapshot for /status. It takes no reference: do not
// serve requests with it.
func (h *Holder) Current() *Set { return h.cur.Load() }

// Swap installs next and retires the previous set, which is closed
// after its last in-flight request finishes (at once, on this goroutine, if
// none is in flight; otherwise on a goroutine of its own). It returns the
// previous set (may be nil); wait on its Done to know it has drained.
// Swap(nil) retires the current set and makes Serve answer 503.
// Swapping in the installed set again is a no-op that returns it.
// A set belongs to one Holder and is installed once: Swap panics if
// next was already retired.
func (h *Holder) Swap(next *Set) *Set {
	if next != nil && next.refs.Load()&retiredBit != 0 {
		panic("runtime: Swap of a retired runtime")
	}
	prev := h.cur.Swap(next)
	if prev != nil && prev != next {
		prev.retire()
	}
	return prev
}

// Serve is the public listener's fasthttp handler: it serves the request
// wholly with the set current when it arrived.
func (h *Holder) Serve(ctx *fasthttp.RequestCtx) {
	r := h.acquire()
	if r == nil {
		// Not ready: no snapshot has loaded yet (RFC 9110 §15.6.4).
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
		writeError(&ctx.Response, fasthttp.StatusServiceUnavailable)
		return
	}
	defer r.release()
	r.handler(ctx)
}

// acquire returns the current set with a reference taken, or nil.
func (h *Holder) acquire() *Set {
	for {
		r := h.cur.Load()
		if r == nil {
			return nil
		}
		n := r.refs.Load()
		if n&retiredBit == 0 && r.refs.CompareAndSwap(n, n+1) {
			return r
		}
		// Retired (h.cur has already moved on) or a concurrent change of
		// the count: load both again.
	}
}

// release drops a reference; the last one out of a retired set closes
// it. Closing runs on its own goroutine so that what Close releases (pools,
// later) does not delay this response.
func (r *Set) release() {
	if r.refs.Add(-1) == retiredBit {
		go r.closeRetired()
	}
}

// retire marks the set swapped out and closes it if it is idle.
func (r *Set) retire() {
	old := r.refs.Or(retiredBit)
	if old&retiredBit != 0 {
		return // already retired
	}
	if old == 0 {
		r.closeRetired()
	}
}

func (r *Set) closeRetired() {
	if err := r.Close(); err != nil {
		r.log.Error("closing retired runtime", "hash", r.snapHash(), "err", err)
	}
}

func (r *Set) snapHash() string {
	if r.snap == nil {
		return ""
	}
	return r.snap.Hash
}
