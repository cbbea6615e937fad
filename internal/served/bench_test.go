package served

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

type nopObserver struct{}

func (nopObserver) ObserveRequest(string, string, int, time.Duration) {}

func benchCtx(b *testing.B) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURI("/oauth/v2/jwks")
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	return &ctx
}

func benchServe(b *testing.B, h fasthttp.RequestHandler) {
	ctx := benchCtx(b)
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		h(ctx)
		if ctx.Response.StatusCode() != fasthttp.StatusOK {
			b.Fatalf("status %d", ctx.Response.StatusCode())
		}
	}
}

// BenchmarkServeJWKS serves GET /oauth/v2/jwks in memory: through the
// set's handler directly ("app"), and through Holder.Serve (the
// reference counting of the swap layer), without and with an Observer.
// The parallel variant shows the cost of the shared reference count under
// contention.
func BenchmarkServeJWKS(b *testing.B) {
	for _, c := range []struct {
		name string
		obs  Observer
	}{{"noobs", nil}, {"observer", nopObserver{}}} {
		r, err := Build(testSnapshot(b), Deps{Observer: c.obs})
		if err != nil {
			b.Fatal(err)
		}
		var h Holder
		h.Swap(r)
		b.Run("app/"+c.name, func(b *testing.B) { benchServe(b, r.handler) })
		b.Run("holder/"+c.name, func(b *testing.B) { benchServe(b, h.Serve) })
		b.Run("holder-parallel/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := benchCtx(b)
				for pb.Next() {
					ctx.Response.Reset()
					h.Serve(ctx)
				}
			})
		})
		h.Swap(nil)
	}
}

// BenchmarkAcquireRelease is the swap layer alone: what Holder.Serve adds
// to every request on top of the set's handler.
func BenchmarkAcquireRelease(b *testing.B) {
	var h Holder
	h.Swap(newSet(nil, Deps{}))
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.acquire().release()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				h.acquire().release()
			}
		})
	})
	h.Swap(nil)
}
