package tests

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/storage/postgres/pgtest"
)

const (
	parSecret   = "par-rp-secret-0123456789abcdef"
	parRedirect = "https://rp.example.com/cb"
)

// parConfig: a token profile that serves par (and requires it) with a
// login, on a postgres data source whose URL is $PG_URL, and one
// confidential client, rp.
func parConfig(t *testing.T) string {
	t.Helper()
	return pgClusterConfig(t, "token, authn", `profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: `+clusterIssuer+`
    signing-keys: [k1]
    authentication-profile: authn
    endpoints: [discovery, jwks, authorize, token, par]
    pushed-authorization-requests: {lifetime: 90s, required: true}
  authn:
    type: authentication
    path: /authn
    authenticators:
      password: {type: password}
`, `clients:
  rp:
    profile: token
    secret: $RP_SECRET
    redirect-uris: [`+parRedirect+`]
    grant-types: [authorization_code]
    scopes: [openid]
`)
}

// noRedirects reports redirects instead of following them.
var noRedirects = &http.Client{Timeout: 10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// push pushes rp's authorization request to n and returns its request_uri.
func (n *node) push(t *testing.T, state string) string {
	t.Helper()
	code, body := postForm(t, n.Public()+"/oauth/v2/par", url.Values{
		"client_id": {"rp"}, "response_type": {"code"}, "redirect_uri": {parRedirect}, "scope": {"openid"}, "state": {state},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"},
	}, "rp", parSecret)
	var r struct {
		RequestURI string `json:"request_uri"`
		ExpiresIn  int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &r); code != http.StatusCreated || err != nil || r.RequestURI == "" || r.ExpiresIn != 90 {
		t.Fatalf("push to %s: %d %s", n.Public(), code, body)
	}
	return r.RequestURI
}

// TestPARAcrossNodes: two runtime processes on one PostgreSQL. A request
// pushed to either is used at the other; and when browsers race to use
// one request_uri on both nodes at once, exactly one wins (it goes on to
// the login page) and every other gets the error page, on either node.
func TestPARAcrossNodes(t *testing.T) {
	pgURL := pgtest.SchemaURL(t, pgtest.Schema(t)) // skips loudly, or fails with CI=true, when unreachable
	dir := parConfig(t)
	env := []string{"PG_URL=" + pgURL, "RP_SECRET=" + parSecret}
	a := launch(t, dir, append(env, "KEYGATE_NODE_ID=node-a")...)
	b := launch(t, dir, append(env, "KEYGATE_NODE_ID=node-b")...)
	a.AwaitServing(30 * time.Second)
	b.AwaitServing(30 * time.Second)
	a.waitReady(t)
	b.waitReady(t)

	authorize := func(n *node, requestURI string) (int, string) {
		resp, err := noRedirects.Get(n.Public() + "/oauth/v2/authorize?" + url.Values{"client_id": {"rp"}, "request_uri": {requestURI}}.Encode())
		if err != nil {
			t.Errorf("authorize at %s: %v", n.Public(), err)
			return 0, ""
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location")
	}

	const rounds, racers = 10, 8
	var uris []string
	for round := range rounds {
		pushTo := []*node{a, b}[round%2]
		uri := pushTo.push(t, "st-race")
		uris = append(uris, uri)
		codes := make([]int, racers)
		locs := make([]string, racers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				codes[i], locs[i] = authorize([]*node{a, b}[i%2], uri)
			}()
		}
		close(start)
		wg.Wait()
		wins := 0
		for i, code := range codes {
			switch {
			case code == http.StatusFound && strings.HasPrefix(locs[i], "/authn/login?return_to="):
				wins++
			case code != http.StatusBadRequest:
				t.Errorf("round %d, racer %d: %d %s; want the login redirect or the error page", round, i, code, locs[i])
			}
		}
		if wins != 1 {
			t.Errorf("round %d: %d of %d racers used the request_uri, want exactly 1 (statuses %v)", round, wins, racers, codes)
		}
	}

	// Every loser was refused as request_uri_unknown, on one node or the other.
	losers := 0.0
	for _, n := range []*node{a, b} {
		v, _ := metricValue(n.Metrics(), "keygate_oauth_errors_total",
			map[string]string{"profile": "token", "endpoint": "authorize", "error": "invalid_request", "reason": "request_uri_unknown"})
		losers += v
	}
	if losers != rounds*(racers-1) {
		t.Errorf("request_uri_unknown refusals on both nodes: %v, want %d", losers, rounds*(racers-1))
	}

	// The requirement holds on both nodes: a request not pushed is refused.
	for _, n := range []*node{a, b} {
		resp, err := noRedirects.Get(n.Public() + "/oauth/v2/authorize?" + url.Values{"client_id": {"rp"}, "response_type": {"code"},
			"redirect_uri": {parRedirect}, "scope": {"openid"}, "state": {"st"},
			"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc == nil || loc.Query().Get("error") != "invalid_request" ||
			loc.Query().Get("iss") != clusterIssuer {
			t.Errorf("%s: not pushed: %d %v", n.Public(), resp.StatusCode, loc)
		}
	}

	for _, n := range []*node{a, b} {
		for _, s := range append([]string{parSecret, pgURL}, uris...) {
			if n.Logs.Contains(strings.TrimPrefix(s, "urn:ietf:params:oauth:request_uri:")) {
				t.Errorf("node %s logged a secret or a request_uri", n.Public())
			}
		}
	}
}
