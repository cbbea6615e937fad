package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/storage/postgres/pgtest"
	"github.com/keygate/keygate/internal/testkit"
)

const (
	clusterIssuer = "http://localhost/oauth/v2"
	svcSecret     = "svc-secret-0123456789abcdef"
	svcOpqSecret  = "svc-opaque-secret-0123456789abcdef"
)

// clusterConfig: one token profile on a postgres data source whose URL is
// $PG_URL, with a JWT client (svc), an opaque one (svc-opaque), a
// private_key_jwt one (svc-key, public key pub) and a resource server (rs).
func clusterConfig(t *testing.T, pub string) string {
	t.Helper()
	indented := "        " + strings.ReplaceAll(strings.TrimSpace(pub), "\n", "\n        ")
	return pgClusterConfig(t, "token", `profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: `+clusterIssuer+`
    signing-keys: [k1]
    endpoints: [discovery, jwks, token, introspect, revoke]
`, `clients:
  svc:
    profile: token
    secret: $SVC_SECRET
    grant-types: [client_credentials]
    scopes: [jobs]
  svc-opaque:
    profile: token
    secret: $SVC_OPAQUE_SECRET
    grant-types: [client_credentials]
    scopes: [jobs]
    access-tokens: {format: opaque}
  svc-key:
    profile: token
    grant-types: [client_credentials]
    scopes: [jobs]
    public-keys:
      - |
`+indented+`
  rs:
    profile: token
    secret: $RS_SECRET
    grant-types: [client_credentials]
    introspect-all-tokens: true
`)
}

// pgClusterConfig is a config of one role in zone eu, serving profiles
// (comma-separated), on the postgres data source $PG_URL, with the signing
// key k1 and the given profiles and clients sections: the shape every
// two-nodes-on-one-PostgreSQL test starts from.
func pgClusterConfig(t *testing.T, profiles, profilesYAML, clientsYAML string) string {
	t.Helper()
	k1 := testkit.KeyFile(t, t.TempDir(), "k1")
	return testkit.ConfigDir(t, map[string]string{
		"00-service.yaml": `schema: 1
service-roles:
  default: {zone: eu, profiles: [` + profiles + `]}
zones:
  eu: {data-source: eu-db}
data-sources:
  eu-db: {type: postgres, url: $PG_URL, max-connections: 4}
`,
		"10-keys.yaml":     testkit.KeysConfig(map[string]string{"k1": k1}),
		"20-profiles.yaml": profilesYAML,
		"30-clients.yaml":  clientsYAML,
	})
}

// issue gets a client_credentials token from n's token endpoint.
func (n *node) issue(t testing.TB, form url.Values, user, pass string) string {
	t.Helper()
	form.Set("grant_type", "client_credentials")
	code, body := postForm(t, n.Public()+"/oauth/v2/token", form, user, pass)
	if code != http.StatusOK {
		t.Fatalf("token from %s: %d %s", n.Public(), code, body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("token response %s: %v", body, err)
	}
	return tr.AccessToken
}

// assertion signs a private_key_jwt client assertion (RFC 7523 §3) for
// svc-key with a fresh jti.
func assertion(t *testing.T, key jwk.Key) string {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewBuilder().
		Issuer("svc-key").Subject("svc-key").
		Audience([]string{clusterIssuer + "/token"}).
		JwtID(model.NewID()).
		IssuedAt(now).Expiration(now.Add(time.Minute)).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, key))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

func assertionForm(a string) url.Values {
	return url.Values{
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {a},
	}
}

// TestTwoNodesOnePostgres: two runtime processes serve one config on one
// PostgreSQL. A token (JWT and opaque) issued on A is active on B; revoked
// on B it is inactive on A at once (no cache between them); a
// private_key_jwt assertion used on A is refused on B as a replay.
func TestTwoNodesOnePostgres(t *testing.T) {
	pgURL := pgtest.SchemaURL(t, pgtest.Schema(t)) // skips loudly, or fails with CI=true, when unreachable

	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	clientKey, err := jwk.FromRaw(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := clusterConfig(t, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))

	env := []string{"PG_URL=" + pgURL, "SVC_SECRET=" + svcSecret, "SVC_OPAQUE_SECRET=" + svcOpqSecret, "RS_SECRET=" + resourceSecret}
	// Started together: both migrate the fresh schema at once.
	a := launch(t, dir, append(env, "KEYGATE_NODE_ID=node-a")...)
	b := launch(t, dir, append(env, "KEYGATE_NODE_ID=node-b")...)
	a.AwaitServing(30 * time.Second)
	b.AwaitServing(30 * time.Second)
	a.waitReady(t)
	b.waitReady(t)
	if a.Public() == b.Public() {
		t.Fatal("both nodes on one address")
	}

	for _, c := range []struct{ format, client, secret string }{
		{"jwt", "svc", svcSecret},
		{"opaque", "svc-opaque", svcOpqSecret},
	} {
		t.Run(c.format, func(t *testing.T) {
			tok := a.issue(t, url.Values{}, c.client, c.secret)
			if isJWT := strings.Count(tok, ".") == 2; isJWT != (c.format == "jwt") {
				t.Fatalf("a %s client got %q", c.format, tok)
			}
			onA := introspect(t, a.Public()+"/oauth/v2/introspect", tok)
			onB := introspect(t, b.Public()+"/oauth/v2/introspect", tok)
			if !onB.Active || onB.ClientID != c.client || onB.Jti == "" || onB.Jti != onA.Jti || onB.Exp != onA.Exp {
				t.Fatalf("issued on A, introspected on B: %+v (on A: %+v)", onB, onA)
			}
			revoke(t, b.Public()+"/oauth/v2/revoke", tok, c.client, c.secret)
			// At once: one request, no polling.
			if in := introspect(t, a.Public()+"/oauth/v2/introspect", tok); in.Active {
				t.Errorf("revoked on B, still active on A: %+v", in)
			}
			if in := introspect(t, b.Public()+"/oauth/v2/introspect", tok); in.Active {
				t.Errorf("revoked on B, still active on B: %+v", in)
			}
		})
	}

	t.Run("private_key_jwt replay across nodes", func(t *testing.T) {
		used := assertion(t, clientKey)
		tok := a.issue(t, assertionForm(used), "", "")
		if in := introspect(t, b.Public()+"/oauth/v2/introspect", tok); !in.Active || in.ClientID != "svc-key" {
			t.Errorf("token of an assertion on A, introspected on B: %+v", in)
		}
		form := assertionForm(used)
		form.Set("grant_type", "client_credentials")
		code, body := postForm(t, b.Public()+"/oauth/v2/token", form, "", "")
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		if code != http.StatusUnauthorized || e.Error != "invalid_client" {
			t.Errorf("assertion replayed on B: %d %s; want 401 invalid_client", code, body)
		}
		// The cause is only in B's (debug) log, which arrives through a pipe.
		testkit.WaitFor(t, 15*time.Second, "B to log the refusal as a replay", func() bool { return b.Logs.Contains("assertion jti replayed") })
		if got, ok := metricValue(b.Metrics(), "keygate_oauth_errors_total",
			map[string]string{"profile": "token", "endpoint": "token", "error": "invalid_client", "reason": "assertion_replayed"}); !ok || got != 1 {
			t.Errorf("B's invalid_client count = %v (found %v), want 1", got, ok)
		}
		// A fresh assertion works on B: the refusal was the replay.
		b.issue(t, assertionForm(assertion(t, clientKey)), "", "")
	})

	for _, n := range []*node{a, b} {
		for _, s := range []string{svcSecret, svcOpqSecret, resourceSecret, pgURL} {
			if n.Logs.Contains(s) {
				t.Errorf("node %s logged a secret", n.Public())
			}
		}
	}
}
