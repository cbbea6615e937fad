package main

// Peers: with -peers and a Dex binary (-dex PATH or $KEYGATE_BENCH_DEX),
// the bench runs the same client_credentials and JWKS loads against Dex,
// in the same run and on the same machine as keygate's, and prints a
// ratio line for each. The bench builds and downloads nothing for it: the
// comparison runs when a binary is given and is skipped, saying so, when
// not.
//
// Dex runs with memory storage, an ES256 signer (Dex versions without the
// signer setting ignore it and sign RS256; the line's peer_alg says which
// was measured, read from Dex's JWKS), one static confidential client and
// only the client_credentials grant. Dex refuses scopes it does not know,
// so its token requests carry none: keygate's carry one, so keygate does a
// little more work per token (the scope check and claim).

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/testkit"
)

const (
	kindPeer = "peer"
	// dexEnv names the Dex binary when -dex is not given.
	dexEnv = "KEYGATE_BENCH_DEX"
)

// peerScenarios are the peer loads, each with the keygate scenario it is
// compared with.
func peerScenarios() []scenario {
	return []scenario{
		{name: "dex-cc", kind: kindPeer, alg: "ES256", format: "jwt", peerOf: "cc-jwt-es256/sqlite"},
		{name: "dex-jwks", kind: kindPeer, alg: "ES256", peerOf: "jwks/sqlite"},
	}
}

// dexConfig is Dex's configuration for the bench, on addr.
func dexConfig(addr string) string {
	return fmt.Sprintf(`issuer: http://%[1]s/dex
storage: {type: memory}
web: {http: %[1]s}
logger: {level: info, format: json}
oauth2:
  grantTypes: [client_credentials]
  skipApprovalScreen: true
signer:
  type: local
  config: {algorithm: ES256, keysRotationPeriod: 6h}
connectors:
  - {type: mockCallback, id: mock, name: Mock}
staticClients:
  - id: %[2]s
    name: %[2]s
    secret: %[3]s
    redirectURIs: ["http://127.0.0.1:9/callback"]
`, addr, clientID, clientSecret)
}

// runPeer starts Dex, waits for its discovery document, and drives the
// scenario's load against it, measured like keygate.
func runPeer(ctx context.Context, o options, s scenario, work string) (*result, string, error) {
	dir, err := os.MkdirTemp(work, s.name+"-")
	if err != nil {
		return nil, "", err
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, "", err
	}
	cfg := filepath.Join(dir, "dex.yaml")
	if err := os.WriteFile(cfg, []byte(dexConfig(addr)), 0o600); err != nil {
		return nil, "", err
	}
	cmd := exec.CommandContext(ctx, o.dex, "serve", cfg)
	cmd.Dir = dir
	cmd.Env = serverEnv("", "")
	p, err := testkit.Start(cmd, "listening on")
	if err != nil {
		return nil, "", fmt.Errorf("start dex: %w", err)
	}
	srv := &server{Proc: p, pid: cmd.Process.Pid, public: addr}
	defer srv.stop()
	alg, err := awaitDex(ctx, srv, addr)
	if err != nil {
		return nil, "", err
	}
	var l load
	switch s.name {
	case "dex-cc":
		l = load{addr: addr, setup: formPost(addr, "/dex/token", "grant_type=client_credentials"), want: []byte(`{"access_token":"`)}
	default:
		// Dex indents its JWKS, so only the opening brace is fixed.
		l = load{addr: addr, want: []byte(`{`), setup: func(_ int, req *fasthttp.Request) {
			req.Header.SetMethod(fasthttp.MethodGet)
			req.SetRequestURI("http://" + addr + "/dex/keys")
		}}
	}
	w := newWindow(srv, srv.pid, "")
	out := drive(ctx, l, o.concurrency, o.warmup, o.duration, w.begin, w.end)
	r, err := w.nodeResult(s, o.concurrency, out)
	if err != nil {
		return nil, "", err
	}
	r.Storage = "memory"
	reportErrors(s, out)
	return r, alg, nil
}

// awaitDex polls Dex's JWKS until it has a key (Dex makes its first
// signing key after it starts serving), up to 30 s, and returns the key's
// algorithm.
func awaitDex(ctx context.Context, srv *server, addr string) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !srv.Alive() {
			return "", fmt.Errorf("dex exited:\n%s", srv.logTail())
		}
		resp, err := httpc.Get("http://" + addr + "/dex/keys")
		if err == nil {
			var ks struct {
				Keys []struct {
					Alg string `json:"alg"`
				} `json:"keys"`
			}
			err = json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&ks)
			resp.Body.Close()
			if err == nil && len(ks.Keys) > 0 {
				return ks.Keys[0].Alg, nil
			}
		}
		if err != nil {
			last = err.Error()
		}
		sleepUntil(ctx, time.Now().Add(100*time.Millisecond))
	}
	return "", fmt.Errorf("dex served no signing key within 30s (%s):\n%s", last, srv.logTail())
}

func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// peerRatio compares keygate's scenario with the peer's, measured in the
// same run: ratio is keygate's throughput over the peer's, cpu_ratio the
// peer's server CPU per request over keygate's (above 1: keygate is
// cheaper), p99_ratio keygate's p99 over the peer's.
type peerRatio struct {
	Scenario   string  `json:"scenario"` // "peer"
	Peer       string  `json:"peer"`
	PeerAlg    string  `json:"peer_alg,omitempty"`
	Keygate    string  `json:"keygate"`
	Against    string  `json:"against"`
	Ratio      float64 `json:"ratio"`
	CPURatio   float64 `json:"cpu_ratio"`
	P99Ratio   float64 `json:"p99_ratio"`
	KeygateRPS float64 `json:"keygate_rps"`
	PeerRPS    float64 `json:"peer_rps"`
	KeygateCPU float64 `json:"keygate_cpu_per_req_us"`
	PeerCPU    float64 `json:"peer_cpu_per_req_us"`
	KeygateP99 float64 `json:"keygate_p99_ms"`
	PeerP99    float64 `json:"peer_p99_ms"`
	Run        int     `json:"run,omitempty"`
}

func comparePeer(s scenario, peerAlg string, k, p *result) (peerRatio, bool) {
	if k == nil || p == nil || k.Throughput <= 0 || p.Throughput <= 0 || k.ServerCPUPerReqUS <= 0 || p.ServerCPUPerReqUS <= 0 || p.P99 <= 0 {
		return peerRatio{}, false
	}
	return peerRatio{
		Scenario: "peer", Peer: "dex", PeerAlg: peerAlg, Keygate: s.peerOf, Against: s.name,
		Ratio: round(k.Throughput/p.Throughput, 3), CPURatio: round(p.ServerCPUPerReqUS/k.ServerCPUPerReqUS, 3),
		P99Ratio: round(k.P99/p.P99, 3), KeygateRPS: k.Throughput, PeerRPS: p.Throughput,
		KeygateCPU: k.ServerCPUPerReqUS, PeerCPU: p.ServerCPUPerReqUS, KeygateP99: k.P99, PeerP99: p.P99,
	}, true
}
