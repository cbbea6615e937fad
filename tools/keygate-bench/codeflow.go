package main

// The codeflow scenario measures what a user's sign-in costs: full OpenID
// Connect authorization-code flows with a password login, end to end over
// HTTP, each with its own cookie state:
//
//	GET  {token}/authorize (PKCE S256, state, nonce)  -> 302 to {authn}/login?return_to=...
//	GET  {authn}/login                                -> 200, csrf hidden field + its cookie (authn.CSRFCookie)
//	POST {authn}/login (username, password, csrf, return_to) -> 303 back to authorize (+ SSO session cookie)
//	GET  {token}/authorize                            -> 302 to the redirect URI with code and state
//	POST {token}/token (authorization_code, code_verifier, client_secret_basic) -> 200 with an ID token
//
// One flow is one "request" of the JSON line: throughput_rps is flows per
// second, p50/p99/p999 are per flow, server_cpu_per_req_us is server CPU
// per flow. The login runs one argon2id verification at the password
// authenticator's default cost (19 MiB, t=2, p=1), which dominates.
//
// The redirect URI is on 127.0.0.1 but nothing listens there: the flow
// reads the code from the Location header and follows no redirect to it.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/profile/authn"
	"github.com/keygate/keygate/internal/testkit"
)

const (
	kindCodeflow = "codeflow"

	authnPath      = "/authn"
	codeflowClient = "bench-web"
	codeflowUser   = "bench-user"
	// codeflowPassword is a development-only password of the bench's user.
	codeflowPassword = "bench-user-password-correct-horse"
	codeflowRedirect = "http://127.0.0.1:9/callback"
)

// defaultCodeflowConcurrency (-codeflow-c 0) is one flow per core: a
// flow's server CPU is ~90 % one argon2id derivation, which runs on one
// core (p=1), so one flow in flight per core saturates the machine. More
// does not add throughput but lowers it: each hash in flight streams
// through its own 19 MiB (well past the caches) and allocates it afresh,
// so hashes contend for memory bandwidth and GC, and CPU per flow rises
// (measured on 2 cores: c=2 28.5 ms/flow, c=4 29-36, c=8 49) while
// latency and RSS grow.
func defaultCodeflowConcurrency() int { return runtime.NumCPU() }

func codeflowConcurrency(o options) int {
	if o.codeflowC > 0 {
		return o.codeflowC
	}
	return defaultCodeflowConcurrency()
}

// writeCodeflowConfig writes the scenario's config: a token profile with
// authorize and token backed by an authentication profile with the
// password authenticator at its default argon2id cost, and a confidential
// client (client_secret_basic) with a loopback redirect URI.
func writeCodeflowConfig(dir string, s scenario, k *benchKeys, dbPath string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	body := "# Written by keygate-bench (codeflow).\n" +
		testkit.Head(dataSource(s, dbPath), "token", "authn") +
		testkit.KeysSection(k.keyRefs("ES256")...) +
		fmt.Sprintf(`profiles:
  token:
    type: token
    path: %s
    issuer: %s
    signing-keys: [%s]
    endpoints: [discovery, jwks, authorize, token, userinfo]
    authentication-profile: authn
    # Long enough for the userinfo scenario's tokens, issued before it.
    access-tokens: {format: jwt, lifetime: 1h}
  authn:
    type: authentication
    path: %s
    authenticators:
      password: {type: password}
    sessions: {idle-lifetime: 1h, absolute-lifetime: 12h}
clients:
  %s:
    profile: token
    secret: "${BENCH_CLIENT_SECRET}"
    redirect-uris: [%q]
    grant-types: [authorization_code]
    scopes: [openid, profile]
`, profilePath, issuer, keyNames["ES256"], authnPath, codeflowClient, codeflowRedirect)
	return os.WriteFile(filepath.Join(dir, "00-bench.yaml"), []byte(body), 0o600)
}

// userAdd creates the bench's user with `keygate user add`, the password
// on stdin, as an operator would.
func userAdd(ctx context.Context, binary, dir string, env []string) error {
	cmd := exec.CommandContext(ctx, binary, "user", "add", "--zone", "local", "--username", codeflowUser, "--name", "Bench User")
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin = strings.NewReader(codeflowPassword + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("keygate user add: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "created user "+codeflowUser) {
		return fmt.Errorf("keygate user add said: %s", out)
	}
	return nil
}

// runCodeflow is runKeygate for the codeflow scenario: the same node
// start-up, CPU windows and result line, with a user created first and a
// flow driver instead of a request driver.
func runCodeflow(ctx context.Context, o options, s scenario, k *benchKeys, work string, pg *postgres) (*result, error) {
	c := codeflowConcurrency(o)
	n, err := startSignInNode(ctx, o, s, k, work, pg)
	defer n.close()
	if err != nil {
		return nil, err
	}
	profile, srv := n.profile, n.srv

	f := newFlower(srv.public, c)
	defer f.hc.CloseIdleConnections()
	// One flow before loading: a configuration error shows as such.
	if err := f.flow(); err != nil {
		return nil, fmt.Errorf("first flow: %w\n%s", err, srv.logTail())
	}

	w := newWindow(srv, srv.pid, profile)
	out := driveFlows(ctx, f.flow, c, o.warmup, o.duration, w.begin, w.end)
	r, err := w.nodeResult(s, c, out)
	if err != nil {
		return nil, err
	}
	w.reportNode(s, out)
	return r, nil
}

// startSignInNode starts a node on the codeflow config and creates the
// bench's user. The node is returned for closing even on error.
func startSignInNode(ctx context.Context, o options, s scenario, k *benchKeys, work string, pg *postgres) (*scenarioNode, error) {
	binary, err := userAddBinary(ctx, o, work)
	if err != nil {
		return &scenarioNode{}, err
	}
	n, err := startScenarioNode(ctx, o, s, work, binary, pg, func(configDir, db string) error {
		return writeCodeflowConfig(configDir, s, k, db)
	})
	if err != nil {
		return n, err
	}
	// After the node is ready, so the schema is migrated.
	return n, userAdd(ctx, binary, n.dir, n.env)
}

// userAddBinary is the keygate binary for `keygate user add`, built when
// the node runs in-process (-cpuprofile) and so none was.
func userAddBinary(ctx context.Context, o options, work string) (string, error) {
	if o.binary != "" {
		return o.binary, nil
	}
	binary := filepath.Join(work, "keygate")
	if _, err := os.Stat(binary); err != nil {
		logf("building ./cmd/keygate (for keygate user add)")
		if err := testkit.BuildKeygate(ctx, binary, "-trimpath"); err != nil {
			return "", fmt.Errorf("build ./cmd/keygate: %w", err)
		}
	}
	return binary, nil
}

// driveFlows is drive for flows: c workers run flow back to back for
// warmup+duration; flows started and finished inside the measured window
// count, with their latency.
func driveFlows(ctx context.Context, flow func() error, c int, warmup, duration time.Duration, onStart, onEnd func()) *outcome {
	return runWorkers(ctx, c, warmup, duration, onStart, onEnd, func(int) (func() error, func()) { return flow, nil })
}

// flower runs flows against one node over a shared keep-alive transport;
// the cookie state is per flow.
type flower struct {
	base  string // http://host:port
	hc    *http.Client
	authz string
}

func newFlower(addr string, c int) *flower {
	tr := &http.Transport{
		MaxIdleConns:        2 * c,
		MaxIdleConnsPerHost: 2 * c,
		IdleConnTimeout:     time.Minute,
	}
	return &flower{
		base: "http://" + addr,
		hc: &http.Client{
			Transport: tr,
			Timeout:   30 * time.Second,
			// Redirects are steps of the flow, taken by hand.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		authz: "Basic " + base64.StdEncoding.EncodeToString([]byte(codeflowClient+":"+clientSecret)),
	}
}

// jar is one flow's cookies, by name. The node sets its cookies Secure;
// the bench talks plain HTTP on loopback (as behind a TLS-terminating
// proxy), so it sends them back regardless, which net/http/cookiejar would
// not.
type jar map[string]string

func (j jar) take(resp *http.Response) {
	for _, ck := range resp.Cookies() {
		if ck.MaxAge < 0 || ck.Value == "" {
			delete(j, ck.Name)
		} else {
			j[ck.Name] = ck.Value
		}
	}
}

func (j jar) header() string {
	var b strings.Builder
	for k, v := range j {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(k + "=" + v)
	}
	return b.String()
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func randB64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// do sends req with the jar's cookies, takes the response's cookies, and
// checks the status; it returns the body (bounded) and the Location.
func (f *flower) do(req *http.Request, j jar, want int, step string) ([]byte, string, error) {
	if h := j.header(); h != "" {
		req.Header.Set("Cookie", h)
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", step, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", step, err)
	}
	if resp.StatusCode != want {
		return nil, "", fmt.Errorf("%s: status %d, want %d (Location %q): %.200s", step, resp.StatusCode, want, resp.Header.Get("Location"), body)
	}
	j.take(resp)
	return body, resp.Header.Get("Location"), nil
}

// flow runs one full code flow with fresh cookies.
func (f *flower) flow() error {
	_, err := f.codeFlow(jar{}, true)
	return err
}

// codeFlow runs a code flow with the cookies in j and returns the access
// token. With login, the user signs in on the way (steps 1 to 3) and j
// keeps the SSO session; without, j's session answers at once.
func (f *flower) codeFlow(j jar, login bool) (string, error) {
	verifier := randB64(32)
	sum := sha256.Sum256([]byte(verifier))
	state, nonce := randB64(16), randB64(16)
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {codeflowClient},
		"redirect_uri":          {codeflowRedirect},
		"scope":                 {"openid profile"},
		"state":                 {state},
		"nonce":                 {nonce},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}

	authorize := profilePath + "/authorize?" + q.Encode()
	loc := authorize
	if login {
		var err error
		if loc, err = f.login(j, authorize); err != nil {
			return "", err
		}
	}

	// 4. authorize with the session: the code, to the redirect URI.
	req, _ := http.NewRequest(http.MethodGet, f.base+loc, nil)
	_, loc, err := f.do(req, j, http.StatusFound, "authorize with session")
	if err != nil {
		return "", err
	}
	cb, err := url.Parse(loc)
	if err != nil || !strings.HasPrefix(loc, codeflowRedirect+"?") {
		return "", fmt.Errorf("authorize with session: redirected to %q, want %s", loc, codeflowRedirect)
	}
	if cb.Query().Get("state") != state || cb.Query().Get("code") == "" {
		return "", fmt.Errorf("authorize with session: bad callback %q", loc)
	}

	// 5. the code exchange.
	tf := url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {codeflowRedirect}, "code_verifier": {verifier}}
	req, _ = http.NewRequest(http.MethodPost, f.base+profilePath+"/token", strings.NewReader(tf.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", f.authz)
	body, _, err := f.do(req, j, http.StatusOK, "token")
	if err != nil {
		return "", err
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		IDToken     string `json:"id_token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" || tr.IDToken == "" {
		return "", fmt.Errorf("token: unexpected body %.200s", body)
	}
	return tr.AccessToken, nil
}

// login takes authorize (a path and query) without a session to the login
// page and signs in: steps 1 to 3. It returns where the login sends the
// browser back to: authorize again.
func (f *flower) login(j jar, authorize string) (string, error) {
	// 1. authorize without a session: to the login page.
	req, _ := http.NewRequest(http.MethodGet, f.base+authorize, nil)
	_, loc, err := f.do(req, j, http.StatusFound, "authorize")
	if err != nil {
		return "", err
	}
	lu, err := url.Parse(loc)
	if err != nil || lu.Path != authnPath+"/login" {
		return "", fmt.Errorf("authorize: redirected to %q, want %s/login", loc, authnPath)
	}
	returnTo := lu.Query().Get("return_to")

	// 2. the login page: the CSRF token in the form and in the cookie.
	req, _ = http.NewRequest(http.MethodGet, f.base+lu.RequestURI(), nil)
	body, _, err := f.do(req, j, http.StatusOK, "GET login")
	if err != nil {
		return "", err
	}
	m := csrfField.FindSubmatch(body)
	if m == nil {
		return "", errors.New("GET login: no csrf field in the page")
	}
	csrf := html.UnescapeString(string(m[1]))
	if j[authn.CSRFCookie] != csrf {
		return "", errors.New("GET login: the csrf field and the keygate_csrf cookie differ")
	}

	// 3. sign in: back to authorize with a session.
	form := url.Values{"username": {codeflowUser}, "password": {codeflowPassword}, "csrf": {csrf}, "return_to": {returnTo}}
	req, _ = http.NewRequest(http.MethodPost, f.base+authnPath+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	_, loc, err = f.do(req, j, http.StatusSeeOther, "POST login")
	if err != nil {
		return "", err
	}
	if loc != returnTo {
		return "", fmt.Errorf("POST login: redirected to %q, want the return_to", loc)
	}
	return loc, nil
}
