package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/testkit"
)

// Secrets of the test clients, injected through the environment as a vault
// would (the config holds only $placeholders).
const (
	billingSecret  = "billing-secret-0123456789abcdef"
	opaqueSecret   = "opaque-secret-0123456789abcdef"
	resourceSecret = "resource-server-secret-0123456789"
	billingAud     = "https://billing.example.com"
)

var clientSecretsEnv = []string{
	"BILLING_SECRET=" + billingSecret,
	"OPAQUE_SECRET=" + opaqueSecret,
	"RS_SECRET=" + resourceSecret,
}

// oauthConfig is a token profile serving every endpoint built so far, on a
// data source db (a flow-style YAML map), with three clients: billing
// (client_credentials, JWT, client_secret_basic), opaque (opaque tokens,
// client_secret_post) and rs (a resource server that introspects).
func oauthConfig(t *testing.T, dataSource string) (dir string, setIssuer func(string), setBillingScopes func(...string)) {
	t.Helper()
	k1 := testkit.KeyFile(t, t.TempDir(), "k1")
	profiles := func(issuer string) string {
		return fmt.Sprintf(`profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: %s
    signing-keys: [k1]
    endpoints: [discovery, jwks, token, introspect, revoke]
    access-tokens: {format: jwt, lifetime: 5m}
`, issuer)
	}
	clients := func(billingScopes ...string) string {
		return fmt.Sprintf(`clients:
  billing:
    profile: token
    secret: $BILLING_SECRET
    grant-types: [client_credentials]
    scopes: [%s]
    audiences: [%s]
  opaque:
    profile: token
    secret: $OPAQUE_SECRET
    token-endpoint-auth-method: client_secret_post
    grant-types: [client_credentials]
    scopes: [reports]
    access-tokens: {format: opaque, lifetime: 10m}
  rs:
    profile: token
    secret: $RS_SECRET
    grant-types: [client_credentials]
    introspect-all-tokens: true
`, strings.Join(billingScopes, ", "), billingAud)
	}
	dir = testkit.ConfigDir(t, map[string]string{
		"00-service.yaml": `schema: 1
service-roles:
  default: {zone: local, profiles: [token]}
zones:
  local: {data-source: db}
data-sources:
  db: ` + dataSource + "\n",
		"10-keys.yaml":     testkit.KeysConfig(map[string]string{"k1": k1}),
		"20-profiles.yaml": profiles("http://localhost/oauth/v2"),
		"30-clients.yaml":  clients("invoices:read"),
	})
	setIssuer = func(issuer string) { testkit.WriteAtomic(t, filepath.Join(dir, "20-profiles.yaml"), profiles(issuer)) }
	setBillingScopes = func(s ...string) { testkit.WriteAtomic(t, filepath.Join(dir, "30-clients.yaml"), clients(s...)) }
	return dir, setIssuer, setBillingScopes
}

// fullDiscovery is the part of the metadata the tests follow.
type fullDiscovery struct {
	Issuer                string `json:"issuer"`
	TokenEndpoint         string `json:"token_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	RevocationEndpoint    string `json:"revocation_endpoint"`
}

// introspected is an RFC 7662 response.
type introspected struct {
	Active   bool            `json:"active"`
	Scope    string          `json:"scope"`
	ClientID string          `json:"client_id"`
	Sub      string          `json:"sub"`
	Jti      string          `json:"jti"`
	Iss      string          `json:"iss"`
	Exp      int64           `json:"exp"`
	Aud      json.RawMessage `json:"aud"`
}

// postForm posts an application/x-www-form-urlencoded body, with HTTP Basic
// credentials when user is not empty.
func postForm(t testing.TB, endpoint string, form url.Values, user, pass string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// introspect asks endpoint about token as the resource server rs.
func introspect(t *testing.T, endpoint, token string) introspected {
	t.Helper()
	code, body := postForm(t, endpoint, url.Values{"token": {token}}, "rs", resourceSecret)
	if code != http.StatusOK {
		t.Fatalf("introspect: %d %s", code, body)
	}
	var r introspected
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("introspect: %v in %s", err, body)
	}
	return r
}

// revoke revokes token at endpoint as user (RFC 7009: always 200).
func revoke(t *testing.T, endpoint, token, user, pass string) {
	t.Helper()
	if code, body := postForm(t, endpoint, url.Values{"token": {token}, "token_type_hint": {"access_token"}}, user, pass); code != http.StatusOK {
		t.Fatalf("revoke as %s: %d %s", user, code, body)
	}
}

// sample is one line of the Prometheus text format: name{labels} value.
var sample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)`)
var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// metricValue finds the sample of name with exactly labels in a /metrics
// page.
func metricValue(page, name string, labels map[string]string) (float64, bool) {
	for _, line := range strings.Split(page, "\n") {
		m := sample.FindStringSubmatch(line)
		if m == nil || m[1] != name {
			continue
		}
		got := map[string]string{}
		for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
			got[p[1]] = p[2]
		}
		if len(got) != len(labels) {
			continue
		}
		same := true
		for k, v := range labels {
			if got[k] != v {
				same = false
			}
		}
		if same {
			v, err := strconv.ParseFloat(m[3], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// TestTokenServiceWithRealClients drives the built binary with clients no
// one here wrote: golang.org/x/oauth2's client credentials flow, and jwx
// verifying the token against the JWKS found through discovery. Then
// introspection, revocation, metrics, and a reload of the client's scopes.
func TestTokenServiceWithRealClients(t *testing.T) {
	db := filepath.Join(t.TempDir(), "keygate.db")
	dir, setIssuer, setBillingScopes := oauthConfig(t, testkit.SQLiteYAML(db))
	n := startNode(t, dir, clientSecretsEnv...)
	n.waitReady(t)

	// The issuer must be the address the node listens on, which is known
	// only now: reconfigure it, as an operator would.
	issuer := n.Public() + "/oauth/v2"
	before := n.Status()
	setIssuer(issuer)
	if s := n.WaitLoaded(before); !s.LoadedSince(before) {
		t.Fatalf("reload with the node's issuer: %+v", s)
	}
	var d fullDiscovery
	testkit.GetJSON(t, n.Public()+"/oauth/v2/.well-known/openid-configuration", &d)
	if d.Issuer != issuer || d.TokenEndpoint != issuer+"/token" || d.JWKSURI != issuer+"/jwks" ||
		d.IntrospectionEndpoint != issuer+"/introspect" || d.RevocationEndpoint != issuer+"/revoke" {
		t.Fatalf("discovery: %+v", d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, client)
	billing := clientcredentials.Config{
		ClientID:     "billing",
		ClientSecret: billingSecret,
		TokenURL:     d.TokenEndpoint,
		AuthStyle:    oauth2.AuthStyleInHeader, // one request per Token call
	}

	// 1. A JWT access token, verified against the JWKS from discovery.
	tok, err := billing.Token(ctx)
	if err != nil {
		t.Fatalf("client credentials: %v", err)
	}
	if tok.TokenType != "Bearer" || tok.Expiry.IsZero() || time.Until(tok.Expiry) > 5*time.Minute+time.Minute {
		t.Errorf("token type %q, expiry %v", tok.TokenType, tok.Expiry)
	}
	set, err := jwk.Fetch(ctx, d.JWKSURI, jwk.WithHTTPClient(client))
	if err != nil {
		t.Fatalf("fetch JWKS: %v", err)
	}
	parsed, err := jwt.Parse([]byte(tok.AccessToken), jwt.WithKeySet(set), jwt.WithValidate(true),
		jwt.WithIssuer(issuer), jwt.WithAudience(billingAud), jwt.WithSubject("billing"),
		jwt.WithRequiredClaim(jwt.JwtIDKey), jwt.WithRequiredClaim(jwt.IssuedAtKey))
	if err != nil {
		t.Fatalf("the access token does not verify against the discovered JWKS: %v", err)
	}
	msg, err := jws.Parse([]byte(tok.AccessToken))
	if err != nil {
		t.Fatal(err)
	}
	if typ := msg.Signatures()[0].ProtectedHeaders().Type(); typ != "at+jwt" {
		t.Errorf("typ = %q, want at+jwt (RFC 9068)", typ)
	}
	if cid, _ := parsed.Get("client_id"); cid != "billing" {
		t.Errorf("client_id claim = %v", cid)
	}
	if scope, _ := parsed.Get("scope"); scope != "invoices:read" {
		t.Errorf("scope claim = %v", scope)
	}

	// 2. Introspection: active, and what it says matches the JWT.
	in := introspect(t, d.IntrospectionEndpoint, tok.AccessToken)
	if !in.Active || in.ClientID != "billing" || in.Sub != "billing" || in.Scope != "invoices:read" ||
		in.Jti != parsed.JwtID() || in.Iss != issuer || in.Exp != parsed.Expiration().Unix() {
		t.Errorf("introspection of a fresh JWT: %+v", in)
	}

	// 3. Revocation: another client's revocation is ignored (and answered
	// 200, RFC 7009 §2.2); the owner's makes the token inactive.
	revoke(t, d.RevocationEndpoint, tok.AccessToken, "rs", resourceSecret)
	if in := introspect(t, d.IntrospectionEndpoint, tok.AccessToken); !in.Active {
		t.Fatal("a client revoked another client's token")
	}
	revoke(t, d.RevocationEndpoint, tok.AccessToken, "billing", billingSecret)
	if in := introspect(t, d.IntrospectionEndpoint, tok.AccessToken); in.Active {
		t.Errorf("introspection after revocation: %+v", in)
	}

	// 4. Opaque tokens (client_secret_post) round-trip the same way.
	opaque := clientcredentials.Config{ClientID: "opaque", ClientSecret: opaqueSecret, TokenURL: d.TokenEndpoint,
		AuthStyle: oauth2.AuthStyleInParams}
	otok, err := opaque.Token(ctx)
	if err != nil {
		t.Fatalf("client credentials (opaque): %v", err)
	}
	if strings.Count(otok.AccessToken, ".") != 0 {
		t.Errorf("opaque token looks like a JWT: %q", otok.AccessToken)
	}
	if in := introspect(t, d.IntrospectionEndpoint, otok.AccessToken); !in.Active || in.ClientID != "opaque" || in.Scope != "reports" {
		t.Errorf("introspection of a fresh opaque token: %+v", in)
	}
	code, body := postForm(t, d.RevocationEndpoint, url.Values{"token": {otok.AccessToken},
		"client_id": {"opaque"}, "client_secret": {opaqueSecret}}, "", "")
	if code != http.StatusOK {
		t.Fatalf("revoke (client_secret_post): %d %s", code, body)
	}
	if in := introspect(t, d.IntrospectionEndpoint, otok.AccessToken); in.Active {
		t.Errorf("opaque token after revocation: %+v", in)
	}

	// 5. A wrong secret: invalid_client, through the library too.
	wrong := billing
	wrong.ClientSecret = "not-the-billing-secret-at-all"
	_, err = wrong.Token(ctx)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %v", err)
	}

	// 6. /metrics counts the tokens by grant type and the error by code.
	page := n.Metrics()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"keygate_tokens_issued_total", map[string]string{"profile": "token", "grant_type": "client_credentials"}, 2},
		{"keygate_oauth_errors_total", map[string]string{"profile": "token", "endpoint": "token", "error": "invalid_client", "reason": "wrong_secret"}, 1},
	} {
		if got, ok := metricValue(page, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	for _, secret := range []string{billingSecret, opaqueSecret, resourceSecret, tok.AccessToken, otok.AccessToken} {
		if strings.Contains(page, secret) || n.Logs.Contains(secret) {
			t.Errorf("a secret or token appears in /metrics or the logs")
		}
	}

	// 7. A reload that changes the client's scopes applies to the next
	// token request.
	writer := billing
	writer.Scopes = []string{"invoices:write"}
	if _, err := writer.Token(ctx); !errors.As(err, &re) || re.ErrorCode != "invalid_scope" {
		t.Fatalf("a scope the client does not have: %v", err)
	}
	before = n.Status()
	setBillingScopes("invoices:read", "invoices:write")
	if s := n.WaitLoaded(before); !s.LoadedSince(before) {
		t.Fatalf("reload with the new scopes: %+v", s)
	}
	wtok, err := writer.Token(ctx)
	if err != nil {
		t.Fatalf("after the reload added invoices:write: %v", err)
	}
	if in := introspect(t, d.IntrospectionEndpoint, wtok.AccessToken); !in.Active || in.Scope != "invoices:write" {
		t.Errorf("token after the scope reload: %+v", in)
	}
	// And the default scope is now every scope of the client.
	all, err := billing.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := all.Extra("scope"); got != "invoices:read invoices:write" {
		t.Errorf("default scope after the reload = %v", got)
	}
	before = n.Status()
	setBillingScopes("invoices:write")
	if s := n.WaitLoaded(before); !s.LoadedSince(before) {
		t.Fatalf("reload removing invoices:read: %+v", s)
	}
	reader := billing
	reader.Scopes = []string{"invoices:read"}
	if _, err := reader.Token(ctx); !errors.As(err, &re) || re.ErrorCode != "invalid_scope" {
		t.Errorf("a scope removed by the reload: %v", err)
	}
}

// TestStorageGCDeletesExpiredRows: with a short KEYGATE_GC_INTERVAL the node
// deletes an opaque token row that expired longer ago than the GC grace,
// keeps one that expired within it (other nodes' clocks may lag) and a live
// one, counts the deletion in /metrics, and still shuts down cleanly.
func TestStorageGCDeletesExpiredRows(t *testing.T) {
	db := filepath.Join(t.TempDir(), "keygate.db")
	dir, _, _ := oauthConfig(t, testkit.SQLiteYAML(db))
	n := startNode(t, dir, append(clientSecretsEnv, "KEYGATE_GC_INTERVAL=100ms")...)
	n.waitReady(t)

	// Another process on the same database file (the node has migrated it).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := testkit.SQLiteAt(t, db)
	now := time.Now()
	rows := map[string]time.Time{
		"expired-an-hour-ago":     now.Add(-time.Hour),
		"expired-a-second-ago":    now.Add(-time.Second), // within the grace: kept
		"valid-for-another-hour":  now.Add(time.Hour),
		"expired-ten-minutes-ago": now.Add(-10 * time.Minute),
	}
	for handle, exp := range rows {
		if err := st.AccessTokens().Create(ctx, model.AccessToken{
			Hash: model.HashSecret(handle), JTI: model.NewID(), ClientID: "opaque", Subject: "opaque",
			Scopes: []string{"reports"}, Profile: "token", IssuedAt: exp.Add(-time.Hour), ExpiresAt: exp,
		}); err != nil {
			t.Fatalf("create %s: %v", handle, err)
		}
	}
	exists := func(handle string) bool {
		_, err := st.AccessTokens().Get(ctx, model.HashSecret(handle))
		if err != nil && !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("get %s: %v", handle, err)
		}
		return err == nil
	}
	testkit.WaitFor(t, 15*time.Second, "the GC to delete the rows expired beyond the grace", func() bool {
		return !exists("expired-an-hour-ago") && !exists("expired-ten-minutes-ago")
	})
	// Several more runs must leave the others alone.
	runs := func() float64 {
		v, _ := metricValue(n.Metrics(), "keygate_storage_gc_runs_total", map[string]string{"data_source": "db", "result": "success"})
		return v
	}
	after := runs()
	testkit.WaitFor(t, 15*time.Second, "three more GC runs", func() bool { return runs() >= after+3 })
	for _, handle := range []string{"expired-a-second-ago", "valid-for-another-hour"} {
		if !exists(handle) {
			t.Errorf("GC deleted %s", handle)
		}
	}
	if got, ok := metricValue(n.Metrics(), "keygate_storage_gc_deleted_total", map[string]string{"data_source": "db"}); !ok || got < 2 {
		t.Errorf("keygate_storage_gc_deleted_total{data_source=db} = %v (found %v), want ≥ 2", got, ok)
	}
	// Logged at info with the counts (the log arrives through a pipe).
	logged := func() (total int64) {
		for _, line := range strings.Split(n.Logs.String(), "\n") {
			var e struct {
				Level        string `json:"level"`
				Msg          string `json:"msg"`
				DataSource   string `json:"data_source"`
				AccessTokens int64  `json:"access_tokens"`
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "storage GC" && e.Level == "INFO" && e.DataSource == "db" {
				total += e.AccessTokens
			}
		}
		return total
	}
	testkit.WaitFor(t, 15*time.Second, "info logs of the GC counting 2 deleted access tokens", func() bool { return logged() == 2 })

	// A token the node issues is untouched by GC runs.
	code, body := postForm(t, n.Public()+"/oauth/v2/token", url.Values{"grant_type": {"client_credentials"},
		"client_id": {"opaque"}, "client_secret": {opaqueSecret}}, "", "")
	if code != http.StatusOK {
		t.Fatalf("token: %d %s", code, body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatal(err)
	}
	after = runs()
	testkit.WaitFor(t, 15*time.Second, "two more GC runs", func() bool { return runs() >= after+2 })
	if in := introspect(t, n.Public()+"/oauth/v2/introspect", tr.AccessToken); !in.Active {
		t.Errorf("a live opaque token after GC runs: %+v", in)
	}

	// Shutdown stops the GC before the pools close: a clean exit, no GC
	// failure logged.
	n.Signal(syscall.SIGTERM)
	if code := n.WaitExit(15 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	if n.Logs.Contains("storage GC failed") {
		t.Error("a GC run failed (used a closed pool?)")
	}
}
