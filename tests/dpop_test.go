package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/storage/postgres/pgtest"
)

const dpopSecret = "dpop-svc-secret-0123456789abcdef"

// dpopConfig: a token profile that demands DPoP server nonces, on a
// postgres data source whose URL is $PG_URL, with one machine client that
// must use DPoP.
func dpopConfig(t *testing.T) string {
	t.Helper()
	return pgClusterConfig(t, "token", `profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: `+clusterIssuer+`
    signing-keys: [k1]
    endpoints: [discovery, jwks, token, introspect]
    dpop: {nonce: true}
`, `clients:
  svc:
    profile: token
    secret: $SVC_SECRET
    grant-types: [client_credentials]
    scopes: [a:read]
    dpop: required
`)
}

// dpopToken asks n for a token with proof; it returns the status, the
// body and the DPoP-Nonce header.
func dpopToken(t *testing.T, n *node, proof string) (int, map[string]any, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, n.Public()+"/oauth/v2/token", strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc", dpopSecret)
	req.Header.Set("DPoP", proof)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m, resp.Header.Get("DPoP-Nonce")
}

// TestDPoPAcrossNodes: two runtime processes on one PostgreSQL. A nonce
// handed out by one node is accepted by the other (derived, not stored),
// and a proof accepted by node A is refused as replayed at node B.
func TestDPoPAcrossNodes(t *testing.T) {
	pgURL := pgtest.SchemaURL(t, pgtest.Schema(t)) // skips loudly, or fails with CI=true, when unreachable
	dir := dpopConfig(t)
	env := []string{"PG_URL=" + pgURL, "SVC_SECRET=" + dpopSecret}
	a := launch(t, dir, append(env, "KEYGATE_NODE_ID=node-a")...)
	b := launch(t, dir, append(env, "KEYGATE_NODE_ID=node-b")...)
	a.AwaitServing(30 * time.Second)
	b.AwaitServing(30 * time.Second)
	a.waitReady(t)
	b.waitReady(t)

	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := jwk.FromRaw(raw)
	pub, _ := jwk.PublicKeyOf(priv)
	proof := func(nonce string) string {
		claims := map[string]any{"jti": model.NewID(), "htm": "POST", "htu": clusterIssuer + "/token", "iat": time.Now().Unix()}
		if nonce != "" {
			claims["nonce"] = nonce
		}
		payload, _ := json.Marshal(claims)
		h := jws.NewHeaders()
		_ = h.Set(jws.TypeKey, "dpop+jwt")
		_ = h.Set(jws.JWKKey, pub)
		tok, err := jws.Sign(payload, jws.WithKey(jwa.ES256, priv, jws.WithProtectedHeaders(h)))
		if err != nil {
			t.Fatal(err)
		}
		return string(tok)
	}

	// Node A demands a nonce; node B accepts it.
	st, m, nonce := dpopToken(t, a, proof(""))
	if st != http.StatusBadRequest || m["error"] != "use_dpop_nonce" || nonce == "" {
		t.Fatalf("no nonce at A: %d %v nonce %q", st, m, nonce)
	}
	p := proof(nonce)
	if st, m, _ := dpopToken(t, b, p); st != http.StatusOK || m["token_type"] != "DPoP" {
		t.Fatalf("A's nonce at B: %d %v", st, m)
	}
	// The same proof, now at A, is a replay: B recorded it in the shared
	// database.
	if st, m, _ := dpopToken(t, a, p); st != http.StatusBadRequest || m["error"] != "invalid_dpop_proof" {
		t.Fatalf("B's proof replayed at A: %d %v", st, m)
	}
	// And the other way round.
	p = proof(nonce)
	if st, m, _ := dpopToken(t, a, p); st != http.StatusOK {
		t.Fatalf("fresh proof at A: %d %v", st, m)
	}
	if st, m, _ := dpopToken(t, b, p); st != http.StatusBadRequest || m["error"] != "invalid_dpop_proof" {
		t.Fatalf("A's proof replayed at B: %d %v", st, m)
	}
	replays := 0.0
	for _, n := range []*node{a, b} {
		v, _ := metricValue(n.Metrics(), "keygate_oauth_errors_total",
			map[string]string{"profile": "token", "endpoint": "token", "error": "invalid_dpop_proof", "reason": "dpop_replayed"})
		replays += v
	}
	if replays != 2 {
		t.Errorf("dpop_replayed refusals on both nodes: %v, want 2", replays)
	}
}
