package served

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/clientip"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/datasource"
	"github.com/keygate/keygate/internal/profile/authn"
	"github.com/keygate/keygate/internal/storage/model"
)

// snapWithSQLite is testSnapshot with the default role's zone on a sqlite
// data source at path.
func snapWithSQLite(t testing.TB, path string) *config.Snapshot {
	t.Helper()
	s := testSnapshot(t)
	s.Zones = map[string]*config.Zone{"local": {Meta: meta("local"), DataSource: "local-db"}}
	s.DataSources = map[string]*config.DataSource{
		"local-db": {Meta: meta("local-db"), Type: config.DataSourceSQLite, Path: path, MaxConnections: 4},
	}
	return s
}

// The store follows the set: shared while the data source is
// unchanged, replaced when it changes, and the old one is closed only
// after the last request on the old set.
func TestBuildAcquiresZoneStoreAcrossSwaps(t *testing.T) {
	ctx := context.Background()
	pools := datasource.New(datasource.Options{Migrate: true})
	t.Cleanup(func() { pools.Close() })
	deps := Deps{Stores: pools}
	dir := t.TempDir()
	h := &Holder{}
	t.Cleanup(func() { h.Swap(nil) })

	a, err := Build(snapWithSQLite(t, filepath.Join(dir, "a.db")), deps)
	if err != nil {
		t.Fatal(err)
	}
	if a.Store() == nil || a.DataSource() != "local-db" {
		t.Fatalf("store %v, data source %q", a.Store(), a.DataSource())
	}
	if err := a.Store().Ping(ctx); err != nil {
		t.Fatal(err)
	}
	h.Swap(a)

	// Unchanged data source: the same pool.
	inflight := h.acquire()
	b, err := Build(snapWithSQLite(t, filepath.Join(dir, "a.db")), deps)
	if err != nil {
		t.Fatal(err)
	}
	if b.Store() != a.Store() {
		t.Fatal("a reload with an unchanged data source opened a new pool")
	}
	h.Swap(b)
	inflight.release()
	waitDone(t, a)
	if err := b.Store().Ping(ctx); err != nil {
		t.Fatalf("closing the old set closed the shared pool: %v", err)
	}

	// Changed path: a new pool; the old one answers until b's last request.
	inflight = h.acquire()
	c, err := Build(snapWithSQLite(t, filepath.Join(dir, "c.db")), deps)
	if err != nil {
		t.Fatal(err)
	}
	if c.Store() == b.Store() {
		t.Fatal("a changed data source reused the old pool")
	}
	h.Swap(c)
	if err := b.Store().Ping(ctx); err != nil {
		t.Fatalf("old pool closed under an in-flight request: %v", err)
	}
	inflight.release()
	waitDone(t, b)
	if err := b.Store().Ping(ctx); err == nil {
		t.Error("old pool still open after its set's last request")
	}
	if err := c.Store().Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if got := pools.Open(); len(got) != 1 {
		t.Errorf("open pools = %v, want one", got)
	}
}

func TestBuildFailsOnUnopenableDataSource(t *testing.T) {
	pools := datasource.New(datasource.Options{Migrate: true})
	t.Cleanup(func() { pools.Close() })
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Build(snapWithSQLite(t, filepath.Join(file, "k.db")), Deps{Stores: pools})
	if err == nil || !strings.Contains(err.Error(), "data source local-db") {
		t.Fatalf("err = %v", err)
	}
	if got := pools.Open(); len(got) != 0 {
		t.Errorf("pools left open: %v", got)
	}
}

// A build that fails after acquiring releases the store.
func TestFailedBuildReleasesStore(t *testing.T) {
	pools := datasource.New(datasource.Options{Migrate: true})
	t.Cleanup(func() { pools.Close() })
	snap := snapWithSQLite(t, filepath.Join(t.TempDir(), "k.db"))
	snap.Profiles["token"].SigningKeys = []string{"missing"}
	if _, err := Build(snap, Deps{Stores: pools}); err == nil {
		t.Fatal("build succeeded")
	}
	if got := pools.Open(); len(got) != 0 {
		t.Errorf("pools left open after a failed build: %v", got)
	}
}

// Deps.ClientIP reaches the authentication profiles: behind a trusted
// proxy, the audit event names the client it forwarded, not the proxy.
func TestClientIPReachesAuthentication(t *testing.T) {
	pools := datasource.New(datasource.Options{Migrate: true})
	t.Cleanup(func() { pools.Close() })
	snap := snapWithSQLite(t, filepath.Join(t.TempDir(), "k.db"))
	snap.Profiles["authn"].Authenticators["password"].Argon2 = config.Argon2Params{MemoryKiB: 1024, Iterations: 1, Parallelism: 1}
	// A token profile outside the role that signs in at authn, so the
	// login's return_to is valid.
	snap.Profiles["signs-in"] = &config.Profile{Meta: meta("signs-in"), Type: config.ProfileToken, Path: "/signs-in", AuthenticationProfile: "authn"}
	ips, err := clientip.New([]string{"10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	r := build(t, snap, Deps{Stores: pools, ClientIP: ips})

	// The login form's token, from the login page.
	var page fasthttp.RequestCtx
	var get fasthttp.Request
	get.SetRequestURI("/authn/login?return_to=" + url.QueryEscape("/signs-in/authorize?client_id=web-app"))
	page.Init(&get, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 40000}, nil)
	r.handler(&page)
	var cookie fasthttp.Cookie
	cookie.SetKey(authn.CSRFCookie)
	if !page.Response.Header.Cookie(&cookie) {
		t.Fatalf("login page set no CSRF cookie: %d", page.Response.StatusCode())
	}
	tok := string(cookie.Value())
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI("/authn/login")
	req.Header.SetContentType("application/x-www-form-urlencoded")
	req.Header.SetCookie(authn.CSRFCookie, tok)
	req.Header.Set(fasthttp.HeaderXForwardedFor, "192.0.2.1, 203.0.113.9")
	req.SetBodyString(url.Values{"username": {"nobody"}, "password": {"wrong"}, "csrf": {tok},
		"return_to": {"/signs-in/authorize?client_id=web-app"}}.Encode())
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 40000}, nil)
	r.handler(&ctx)
	if ctx.Response.StatusCode() != 400 {
		t.Fatalf("login: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	ev, err := r.Store().Audit().List(context.Background(), model.AuditQuery{Type: authn.AuditLoginFailure, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 1 || ev[0].IP != "203.0.113.9" {
		t.Errorf("login_failure events %+v, want one from 203.0.113.9", ev)
	}
}
