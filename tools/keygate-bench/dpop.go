package main

// The cc-dpop scenario is cc-jwt-es256 with a DPoP proof (RFC 9449) on
// every request, so its line set against cc-jwt-es256's says what binding
// a token costs: the proof's signature check and the replay check, one
// insert into the zone's database per request. Every request carries a
// proof of its own (a proof is single use), signed before the run with
// one Ed25519 key, so the load generator's CPU goes to sending, not to
// signing; -proofs bounds how many (a run that uses them all fails with
// replay errors rather than measuring cached ones).

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// dpopProofs signs n proofs for POST htu, each with its own jti, on every
// core.
func dpopProofs(ctx context.Context, n int, htu string) ([][]byte, error) {
	_, raw, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	priv, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, err
	}
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		return nil, err
	}
	h := jws.NewHeaders()
	if err := h.Set(jws.TypeKey, "dpop+jwt"); err != nil {
		return nil, err
	}
	if err := h.Set(jws.JWKKey, pub); err != nil {
		return nil, err
	}
	out := make([][]byte, n)
	workers := runtime.NumCPU()
	var wg sync.WaitGroup
	errs := make([]error, workers)
	iat := time.Now().Unix()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n && ctx.Err() == nil; i += workers {
				payload, _ := json.Marshal(map[string]any{"jti": fmt.Sprintf("bench-%d-%d", iat, i), "htm": "POST", "htu": htu, "iat": iat})
				p, err := jws.Sign(payload, jws.WithKey(jwa.EdDSA, priv, jws.WithProtectedHeaders(h)))
				if err != nil {
					errs[w] = err
					return
				}
				out[i] = p
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, ctx.Err()
}

// dpopCost compares the DPoP-bound client_credentials with the unbound one
// of the same run and storage.
type dpopCost struct {
	Scenario   string  `json:"scenario"` // "dpop-cost"
	Storage    string  `json:"storage"`
	Ratio      float64 `json:"ratio"`     // bound throughput over unbound
	CPURatio   float64 `json:"cpu_ratio"` // unbound CPU per token over bound
	BoundRPS   float64 `json:"bound_rps"`
	UnboundRPS float64 `json:"unbound_rps"`
	BoundCPU   float64 `json:"bound_cpu_per_token_us"`
	UnboundCPU float64 `json:"unbound_cpu_per_token_us"`
	BoundP99   float64 `json:"bound_p99_ms"`
	UnboundP99 float64 `json:"unbound_p99_ms"`
}

func compareDPoP(storage string, bound, unbound *result) (dpopCost, bool) {
	if bound == nil || unbound == nil || bound.Throughput <= 0 || unbound.Throughput <= 0 || bound.ServerCPUPerReqUS <= 0 {
		return dpopCost{}, false
	}
	return dpopCost{Scenario: "dpop-cost", Storage: storage,
		Ratio: round(bound.Throughput/unbound.Throughput, 3), CPURatio: round(unbound.ServerCPUPerReqUS/bound.ServerCPUPerReqUS, 3),
		BoundRPS: bound.Throughput, UnboundRPS: unbound.Throughput, BoundCPU: bound.ServerCPUPerReqUS,
		UnboundCPU: unbound.ServerCPUPerReqUS, BoundP99: bound.P99, UnboundP99: unbound.P99}, true
}
