package tests

// A database that hangs, turns read-only or has its file deleted, as a
// running node meets it: each answers clearly and fails closed.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/storage/postgres/pgtest"
	"github.com/keygate/keygate/internal/testkit"
)

// pausableProxy forwards TCP to target until paused; while paused it
// holds every byte, as a database that stopped answering (a GC pause, a
// network partition) does.
type pausableProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	paused bool
	resume chan struct{}
}

func newPausableProxy(t *testing.T, target string) *pausableProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pausableProxy{ln: ln, target: target, resume: make(chan struct{})}
	t.Cleanup(func() { p.Resume(); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *pausableProxy) Addr() string { return p.ln.Addr().String() }

func (p *pausableProxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused {
		p.paused, p.resume = true, make(chan struct{})
	}
}

func (p *pausableProxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused {
		p.paused = false
		close(p.resume)
	}
}

// gate blocks while paused.
func (p *pausableProxy) gate() {
	p.mu.Lock()
	paused, resume := p.paused, p.resume
	p.mu.Unlock()
	if paused {
		<-resume
	}
}

func (p *pausableProxy) serve(c net.Conn) {
	defer c.Close()
	p.gate()
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.gate()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
}

// pgRole is a login role of its own on the test server, so a test can
// make the database read-only for it alone.
type pgRole struct {
	t     *testing.T
	name  string
	admin string // the server URL as the test superuser
}

func newPGRole(t *testing.T) *pgRole {
	t.Helper()
	admin := pgtest.URL(t) // skips loudly, or fails with CI=true, when unreachable
	var b [5]byte
	_, _ = rand.Read(b[:])
	r := &pgRole{t: t, name: "kg_role_" + hex.EncodeToString(b[:]), admin: admin}
	r.exec("CREATE ROLE " + pgx.Identifier{r.name}.Sanitize() + " LOGIN SUPERUSER")
	t.Cleanup(func() {
		r.terminate()
		r.exec("DROP ROLE IF EXISTS " + pgx.Identifier{r.name}.Sanitize())
	})
	return r
}

func (r *pgRole) exec(sql string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, r.admin)
	if err != nil {
		r.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
}

// url is the server URL as this role, on schema, at host (host:port).
func (r *pgRole) url(schema, host string) string {
	u, _ := url.Parse(pgtest.SchemaURL(r.t, schema))
	u.User = url.User(r.name)
	if host != "" {
		u.Host = host
	}
	return u.String()
}

// readOnly makes every new transaction of the role read-only and ends its
// sessions, as a failover to a replica does to a node's connections.
func (r *pgRole) readOnly(on bool) {
	r.t.Helper()
	r.exec(fmt.Sprintf("ALTER ROLE %s SET default_transaction_read_only = %t", pgx.Identifier{r.name}.Sanitize(), on))
	r.terminate()
}

func (r *pgRole) terminate() {
	r.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '" + r.name + "'")
}

// faultConfig is a token profile with an opaque-token client and a login,
// on the data source given as YAML.
func faultConfig(t *testing.T, addr, dataSource string) string {
	t.Helper()
	k := testkit.KeyFile(t, t.TempDir(), "k1")
	return testkit.ConfigDir(t, map[string]string{
		"00.yaml": `schema: 1
service-roles:
  default: {zone: local, profiles: [token, authn]}
zones:
  local: {data-source: db}
data-sources:
  db: ` + dataSource + "\n",
		"10.yaml": testkit.KeysConfig(map[string]string{"k1": k}),
		"20.yaml": `profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: http://` + addr + `/oauth/v2
    signing-keys: [k1]
    endpoints: [discovery, jwks, authorize, token, introspect]
    authentication-profile: authn
  authn:
    type: authentication
    path: /authn
    authenticators:
      password: {type: password, argon2: {memory-kib: 1024, iterations: 1, parallelism: 1}, lockout: {max-failures: 3}}
`,
		"30.yaml": `clients:
  svc-opaque:
    profile: token
    secret: svc-opaque-secret-0123456789
    grant-types: [client_credentials]
    scopes: [jobs]
    access-tokens: {format: opaque}
  rp:
    profile: token
    secret: rp-secret-0123456789abcdef
    redirect-uris: [` + fedRPRedirect + `]
    grant-types: [authorization_code]
    scopes: [openid]
`,
	})
}

// tokenAttempt asks for an opaque token and returns the status, the
// Retry-After header and the body.
func tokenAttempt(t *testing.T, n *node) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, n.Public()+"/oauth/v2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc-opaque", "svc-opaque-secret-0123456789")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(body)
}

// A PostgreSQL that stops answering: requests that need it get 503 with
// Retry-After within the data source's timeout instead of hanging, the
// node reports itself not ready, and it recovers when the database does.
func TestPausedPostgresAnswers503(t *testing.T) {
	role := newPGRole(t)
	schema := pgtest.Schema(t)
	pgHost, _ := url.Parse(pgtest.URL(t))
	proxy := newPausableProxy(t, pgHost.Host)
	addr := fedPort(t)
	dir := faultConfig(t, addr, "{type: postgres, url: $PG_URL, timeout: 1s}")
	n := startNode(t, dir, "KEYGATE_LISTEN_ADDR="+addr, "PG_URL="+role.url(schema, proxy.Addr()))
	if code, _, body := tokenAttempt(t, n); code != http.StatusOK {
		t.Fatalf("token before the pause: %d %s", code, body)
	}

	proxy.Pause()
	start := time.Now()
	code, retry, body := tokenAttempt(t, n)
	took := time.Since(start)
	if code != http.StatusServiceUnavailable || retry == "" || !strings.Contains(body, `"temporarily_unavailable"`) {
		t.Errorf("token while the database hangs: %d Retry-After %q %s", code, retry, body)
	}
	if took > 10*time.Second {
		t.Errorf("the answer took %s; the data source's timeout is 1s", took)
	}
	testkit.WaitFor(t, 15*time.Second, "/readyz to fail", func() bool { c, _ := testkit.Get(n.Ops() + "/readyz"); return c == http.StatusServiceUnavailable })
	if n.Logs.Contains(pgHost.Host) || n.Logs.Contains(proxy.Addr()) || n.Logs.Contains(role.name) || n.Logs.Contains("user=") {
		t.Errorf("a log names the database's port or user:\n%s", n.Logs)
	}

	proxy.Resume()
	testkit.WaitFor(t, 30*time.Second, "tokens again", func() bool { c, _, _ := tokenAttempt(t, n); return c == http.StatusOK })
	testkit.WaitFor(t, 15*time.Second, "/readyz again", func() bool { c, _ := testkit.Get(n.Ops() + "/readyz"); return c == http.StatusOK })
}

// A PostgreSQL that turns read-only: a sign-in cannot be recorded, so it
// is refused unchecked, with the wrong-password answer whether or not the
// password is right; /readyz says the database refuses writes; and the
// guesses made meanwhile cannot pass the lockout once it is writable.
func TestReadOnlyPostgresFailsLoginsClosed(t *testing.T) {
	role := newPGRole(t)
	schema := pgtest.Schema(t)
	addr := fedPort(t)
	pgURL := role.url(schema, "")
	dir := faultConfig(t, addr, "{type: postgres, url: $PG_URL, timeout: 2s}")
	n := startNode(t, dir, "KEYGATE_LISTEN_ADDR="+addr, "PG_URL="+pgURL)
	add := exec.Command(binary, "user", "add", "--dir", dir, "--zone", "local", "--username", "alice")
	add.Env = []string{"PATH=" + os.Getenv("PATH"), "PG_URL=" + pgURL}
	add.Stdin = strings.NewReader("alice-correct-password")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("keygate user add: %v\n%s", err, out)
	}
	authURL := "http://" + addr + "/oauth/v2/authorize?response_type=code&client_id=rp&scope=openid&state=s&code_challenge_method=S256&code_challenge=" +
		"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&redirect_uri=" + url.QueryEscape(fedRPRedirect)
	try := func(pw string) (int, string) {
		t.Helper()
		br := newFedBrowser()
		resp, body := br.get(t, authURL)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("login page: %d %s", resp.StatusCode, body)
		}
		resp, body = br.login(t, resp.Request.URL.String(), body, "alice", pw)
		return resp.StatusCode, body
	}

	role.readOnly(true)
	testkit.WaitFor(t, 15*time.Second, "/readyz to say the database refuses writes", func() bool {
		c, body := testkit.Get(n.Ops() + "/readyz")
		return c == http.StatusServiceUnavailable && strings.Contains(string(body), "refuses writes")
	})
	rightCode, rightBody := try("alice-correct-password")
	for range 5 {
		wrongCode, wrongBody := try("a-wrong-guess")
		if wrongCode != rightCode || !strings.Contains(wrongBody, "Incorrect username or password.") ||
			!strings.Contains(rightBody, "Incorrect username or password.") {
			t.Fatalf("read-only database: right password %d, wrong one %d:\n%s\n---\n%s", rightCode, wrongCode, rightBody, wrongBody)
		}
	}
	if rightCode != http.StatusBadRequest {
		t.Errorf("right password on a read-only database: %d", rightCode)
	}

	role.readOnly(false)
	testkit.WaitFor(t, 15*time.Second, "/readyz again", func() bool { c, _ := testkit.Get(n.Ops() + "/readyz"); return c == http.StatusOK })
	// The refused sign-ins checked no password: the right one works.
	resp := func() int { c, _ := try("alice-correct-password"); return c }()
	if resp != http.StatusSeeOther && resp != http.StatusFound && resp != http.StatusOK {
		t.Errorf("right password once writable: %d", resp)
	}
}

// A deleted SQLite file: the node would go on writing to the deleted
// inode; /readyz says so instead of 200.
func TestDeletedSQLiteFileIsNotReady(t *testing.T) {
	db := filepath.Join(t.TempDir(), "k.db")
	addr := fedPort(t)
	n := startNode(t, faultConfig(t, addr, "{type: sqlite, path: "+db+"}"), "KEYGATE_LISTEN_ADDR="+addr)
	testkit.WaitFor(t, 15*time.Second, "/readyz", func() bool { c, _ := testkit.Get(n.Ops() + "/readyz"); return c == http.StatusOK })
	for _, f := range []string{db, db + "-wal", db + "-shm"} {
		_ = os.Remove(f)
	}
	testkit.WaitFor(t, 15*time.Second, "/readyz to report the deleted file", func() bool {
		c, body := testkit.Get(n.Ops() + "/readyz")
		return c == http.StatusServiceUnavailable && strings.Contains(string(body), "deleted or replaced")
	})
}
