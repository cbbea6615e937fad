package served

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/secret"
	"github.com/keygate/keygate/internal/testkit"
)

var (
	pemOnce         sync.Once
	ecPEM, rsaSmPEM string
	errPEM          error
)

// testPEMs returns an ES256 key and a 1024-bit RSA key, generated once.
func testPEMs(t testing.TB) (ec, shortRSA string) {
	t.Helper()
	pemOnce.Do(func() {
		k, err := testkit.NewKey("ES256")
		if err != nil {
			errPEM = err
			return
		}
		ecPEM = string(k.PEM)
		rk, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			errPEM = err
			return
		}
		rsaSmPEM = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}))
	})
	if errPEM != nil {
		t.Fatal(errPEM)
	}
	return ecPEM, rsaSmPEM
}

func meta(name string) config.Meta { return config.Meta{Name: name} }

// testSnapshot is the SPEC.md example, reduced to what Build reads.
func testSnapshot(t testing.TB) *config.Snapshot {
	t.Helper()
	ec, _ := testPEMs(t)
	return &config.Snapshot{
		Schema: 1,
		Role:   "default",
		Hash:   "test",
		Entries: config.Entries{
			ServiceRoles: map[string]*config.ServiceRole{
				"default": {Meta: meta("default"), Zone: "local", Profiles: []string{"authn", "token"}},
				"eu-edge": {Meta: meta("eu-edge"), Zone: "eu", Profiles: []string{"token-external"}},
			},
			Keys: map[string]*config.Key{
				"signing-2026": {Meta: meta("signing-2026"), Algorithm: config.AlgES256, PrivateKey: secret.New(ec)},
			},
			Profiles: map[string]*config.Profile{
				"token": {Meta: meta("token"), Type: config.ProfileToken, Path: "/oauth/v2",
					Issuer: "https://id.example.com/oauth/v2", SigningKeys: []string{"signing-2026"},
					Endpoints: []string{"discovery", "jwks"}},
				"token-external": {Meta: meta("token-external"), Type: config.ProfileToken, Path: "/ext",
					Issuer: "https://api.example.com/ext", SigningKeys: []string{"signing-2026"},
					Endpoints: []string{"jwks", "discovery"}},
				"authn": {Meta: meta("authn"), Type: config.ProfileAuthentication, Path: "/authn",
					Authenticators: map[string]*config.Authenticator{"password": {Name: "password", Type: "password"}}},
				"users": {Meta: meta("users"), Type: config.ProfileUserManagement, Path: "/scim/v2", TokenProfile: "token"},
			},
			Clients: map[string]*config.Client{
				"web-app": {Meta: meta("web-app"), Profile: "token", Scopes: []string{"openid", "profile"}},
			},
		},
	}
}

type observation struct {
	profile, endpoint string
	status            int
	d                 time.Duration
}

type recorder struct {
	mu  sync.Mutex
	obs []observation
}

func (r *recorder) ObserveRequest(profile, endpoint string, status int, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.obs = append(r.obs, observation{profile, endpoint, status, d})
}

func (r *recorder) last(t *testing.T) observation {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.obs) == 0 {
		t.Fatal("no observation")
	}
	return r.obs[len(r.obs)-1]
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

type response struct {
	status int
	header map[string]string
	body   string
}

// serve runs one in-memory request through h.
func serve(h fasthttp.RequestHandler, method, uri string) response {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	h(&ctx)
	r := response{status: ctx.Response.StatusCode(), body: string(ctx.Response.Body()), header: map[string]string{}}
	for _, k := range []string{"Content-Type", "Cache-Control", "Allow", "Retry-After"} {
		r.header[k] = string(ctx.Response.Header.Peek(k))
	}
	return r
}

func build(t *testing.T, snap *config.Snapshot, deps Deps) *Set {
	t.Helper()
	r, err := Build(snap, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestBuildServesRoleProfiles(t *testing.T) {
	log, _ := testLogger()
	rec := &recorder{}
	snap := testSnapshot(t)
	r := build(t, snap, Deps{Logger: log, Observer: rec})
	if r.Snapshot() != snap {
		t.Fatal("Snapshot() is not the snapshot built from")
	}
	var h Holder
	h.Swap(r)

	resp := serve(h.Serve, "GET", "/oauth/v2/jwks")
	if resp.status != 200 || resp.header["Content-Type"] != "application/jwk-set+json" {
		t.Fatalf("jwks: %+v", resp)
	}
	set, err := jwk.Parse([]byte(resp.body))
	if err != nil || set.Len() != 1 {
		t.Fatalf("jwks parse: %v (%s)", err, resp.body)
	}
	if o := rec.last(t); o.profile != "token" || o.endpoint != "jwks" || o.status != 200 || o.d <= 0 {
		t.Fatalf("observation %+v", o)
	}

	resp = serve(h.Serve, "GET", "/oauth/v2/.well-known/openid-configuration")
	var md map[string]any
	if err := json.Unmarshal([]byte(resp.body), &md); err != nil || md["issuer"] != "https://id.example.com/oauth/v2" {
		t.Fatalf("discovery: %d %s", resp.status, resp.body)
	}
	if o := rec.last(t); o.endpoint != "discovery" {
		t.Fatalf("observation %+v", o)
	}

	// eu-edge's profile is not in this role.
	if resp := serve(h.Serve, "GET", "/ext/jwks"); resp.status != 404 {
		t.Fatalf("other role's profile served: %d", resp.status)
	}
	// The authentication profile is mounted; its login page needs a
	// return_to (tested in internal/profile/authn).
	if resp := serve(h.Serve, "GET", "/authn/login"); resp.status != 400 || !strings.Contains(resp.body, "sign-in link is not valid") {
		t.Fatalf("/authn/login: %d %s", resp.status, resp.body)
	}
	if o := rec.last(t); o.profile != "authn" || o.endpoint != "login" {
		t.Fatalf("observation %+v", o)
	}
}

// A role that lists a user-management profile serves SCIM at its path,
// guarded by its token profile's access tokens.
func TestBuildServesUserManagement(t *testing.T) {
	snap := testSnapshot(t)
	snap.ServiceRoles["default"].Profiles = append(snap.ServiceRoles["default"].Profiles, "users")
	rt, err := Build(snap, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if resp := serve(rt.handler, "GET", "/scim/v2/ServiceProviderConfig"); resp.status != 200 || !strings.Contains(resp.body, `"patch":{"supported":true}`) {
		t.Fatalf("ServiceProviderConfig: %d %s", resp.status, resp.body)
	}
	if resp := serve(rt.handler, "GET", "/scim/v2/Users"); resp.status != 401 || !strings.Contains(resp.body, "urn:ietf:params:scim:api:messages:2.0:Error") {
		t.Fatalf("Users without a token: %d %s", resp.status, resp.body)
	}
}

func TestBuildOtherRole(t *testing.T) {
	snap := testSnapshot(t)
	snap.Role = "eu-edge"
	var h Holder
	h.Swap(build(t, snap, Deps{}))
	if resp := serve(h.Serve, "GET", "/ext/jwks"); resp.status != 200 {
		t.Fatalf("/ext/jwks: %d", resp.status)
	}
	if resp := serve(h.Serve, "GET", "/oauth/v2/jwks"); resp.status != 404 {
		t.Fatalf("/oauth/v2/jwks on eu-edge: %d", resp.status)
	}
}

func TestErrorsAreJSON(t *testing.T) {
	rec := &recorder{}
	var h Holder
	h.Swap(build(t, testSnapshot(t), Deps{Observer: rec}))

	cases := []struct {
		method, path      string
		status            int
		body              string
		profile, endpoint string
	}{
		{"GET", "/nowhere", 404, `{"error":"not_found"}`, NoProfile, EndpointOther},
		{"GET", "/", 404, `{"error":"not_found"}`, NoProfile, EndpointOther},
		{"GET", "/oauth/v2/nothing", 404, `{"error":"not_found"}`, "token", EndpointOther},
		{"POST", "/oauth/v2/token", 404, `{"error":"not_found"}`, "token", EndpointOther}, // not listed in this profile
		{"GET", "/OAUTH/V2/JWKS", 404, `{"error":"not_found"}`, NoProfile, EndpointOther},
		{"DELETE", "/oauth/v2/jwks", 405, `{"error":"method_not_allowed"}`, "token", "jwks"},
		{"BREW", "/oauth/v2/jwks", 501, `{"error":"not_implemented"}`, NoProfile, EndpointOther},
	}
	for _, c := range cases {
		t.Run(c.method+c.path, func(t *testing.T) {
			resp := serve(h.Serve, c.method, c.path)
			if resp.status != c.status || resp.body != c.body {
				t.Fatalf("got %d %s, want %d %s", resp.status, resp.body, c.status, c.body)
			}
			if resp.header["Content-Type"] != "application/json" || resp.header["Cache-Control"] != "no-store" {
				t.Fatalf("headers %v", resp.header)
			}
			if o := rec.last(t); o.profile != c.profile || o.endpoint != c.endpoint || o.status != c.status {
				t.Fatalf("observation %+v", o)
			}
		})
	}
	if resp := serve(h.Serve, "DELETE", "/oauth/v2/jwks"); resp.header["Allow"] != "GET, HEAD" {
		t.Fatalf("405 without Allow: %v", resp.header)
	}
}

// TestErrorHandlerHidesInternals drives the set's error path with
// handlers that fail in every way a future endpoint could.
func TestErrorHandlerHidesInternals(t *testing.T) {
	log, logs := testLogger()
	rec := &recorder{}
	r := newSet(testSnapshot(t), Deps{Logger: log, Observer: rec})
	app := fiber.New(fiber.Config{ErrorHandler: r.handleError, DisableStartupMessage: true})
	app.Get("/error", r.instrument("p", "error"), func(*fiber.Ctx) error {
		return errors.New("dial tcp 10.0.0.7:5432: password authentication failed")
	})
	app.Get("/panic", r.instrument("p", "panic"), func(*fiber.Ctx) error { panic("boom: internal state") })
	app.Get("/fiber400", r.instrument("p", "bad"), func(*fiber.Ctx) error {
		return fiber.NewError(400, "raw detail from a parser")
	})
	app.Get("/teapot", r.instrument("p", "teapot"), func(*fiber.Ctx) error { return fiber.ErrTeapot })
	app.Get("/wrapped", r.instrument("p", "wrapped"), func(*fiber.Ctx) error {
		return errors.Join(errors.New("ctx"), fiber.ErrUnauthorized)
	})
	h := app.Handler()

	cases := []struct {
		path, body, logged string
		status             int
	}{
		{"/error", `{"error":"server_error"}`, "password authentication failed", 500},
		{"/panic", `{"error":"server_error"}`, "boom: internal state", 500},
		{"/fiber400", `{"error":"invalid_request"}`, "", 400},
		{"/teapot", `{"error":"invalid_request"}`, "", 400},
		{"/wrapped", `{"error":"unauthorized"}`, "", 401},
	}
	for _, c := range cases {
		resp := serve(h, "GET", c.path)
		if resp.status != c.status || resp.body != c.body {
			t.Errorf("%s: %d %s, want %d %s", c.path, resp.status, resp.body, c.status, c.body)
		}
		if c.logged != "" && !strings.Contains(logs.String(), c.logged) {
			t.Errorf("%s: real error not logged:\n%s", c.path, logs)
		}
		if o := rec.last(t); o.status != c.status {
			t.Errorf("%s: observed status %d", c.path, o.status)
		}
	}
	if !strings.Contains(logs.String(), "stack=") {
		t.Error("panic logged without a stack")
	}
}

func TestBuildErrors(t *testing.T) {
	ec, shortRSA := testPEMs(t)
	cases := []struct {
		name string
		edit func(s *config.Snapshot)
		want []string // each must appear
	}{
		{"no-role", func(s *config.Snapshot) { s.Role = "nope" }, []string{`service-roles: role "nope" is not defined`}},
		{"missing-profile", func(s *config.Snapshot) {
			s.ServiceRoles["default"].Profiles = []string{"token", "ghost"}
		}, []string{`service-roles.default.profiles[1]: profile "ghost" is not defined`}},
		{"unknown-type", func(s *config.Snapshot) { s.Profiles["authn"].Type = "magic" }, []string{`profiles.authn.type: unknown profile type "magic"`}},
		{"missing-key", func(s *config.Snapshot) {
			s.Profiles["token"].SigningKeys = []string{"signing-2026", "gone"}
		}, []string{`profiles.token.signing-keys[1]: key "gone" is not defined`}},
		{"bad-key-with-position", func(s *config.Snapshot) {
			s.Keys["signing-2026"].PrivateKey = secret.New(shortRSA)
			s.Keys["signing-2026"].Algorithm = config.AlgRS256
			s.Keys["signing-2026"].Pos = config.Position{File: "keys.yaml", Line: 3, Column: 3}
		}, []string{"keys.yaml:3:3: keys.signing-2026.private-key: RSA key is 1024 bits; RS256 needs at least 2048"}},
		{"wrong-curve", func(s *config.Snapshot) { s.Keys["signing-2026"].Algorithm = config.AlgEdDSA },
			[]string{"keys.signing-2026.private-key: EdDSA needs an Ed25519 key, got a P-256 EC key"}},
		{"same-path", func(s *config.Snapshot) {
			s.ServiceRoles["default"].Profiles = []string{"token", "token-external"}
			s.Profiles["token-external"].Path = "/oauth/v2/"
		}, []string{`profiles.token-external.path: profile "token" is already mounted at "/oauth/v2/" in role "default"`}},
		{"duplicate-key", func(s *config.Snapshot) {
			s.Keys["copy"] = &config.Key{Meta: meta("copy"), Algorithm: config.AlgES256, PrivateKey: secret.New(ec)}
			s.Profiles["token"].SigningKeys = []string{"signing-2026", "copy"}
		}, []string{`profiles.token.signing-keys: keys "signing-2026" and "copy" are the same key`}},
		{"every-error-at-once", func(s *config.Snapshot) {
			s.ServiceRoles["default"].Profiles = []string{"token", "ghost", "authn"}
			s.Profiles["authn"].Type = "magic"
			s.Keys["signing-2026"].Algorithm = config.AlgRS256
		}, []string{`profile "ghost" is not defined`, `unknown profile type "magic"`, "RS256 needs an RSA key, got a P-256 EC key"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snap := testSnapshot(t)
			c.edit(snap)
			r, err := Build(snap, Deps{})
			if err == nil {
				_ = r.Close()
				t.Fatal("Build succeeded")
			}
			if r != nil {
				t.Fatal("Build returned a set with an error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%s\ndoes not contain\n%s", err, w)
				}
			}
			for _, line := range strings.Split(ec+shortRSA, "\n") {
				if len(line) > 20 && !strings.HasPrefix(line, "-----") && strings.Contains(err.Error(), line) {
					t.Fatalf("error contains key material: %s", err)
				}
			}
		})
	}
}

func TestCloseIsSafeAndIdempotent(t *testing.T) {
	var zero Set
	if err := zero.Close(); err != nil {
		t.Fatal(err)
	}
	calls := 0
	r := newSet(nil, Deps{})
	r.closers = append(r.closers, func() error { calls++; return errors.New("pool: close failed") })
	for range 3 {
		if err := r.Close(); err == nil || err.Error() != "pool: close failed" {
			t.Fatalf("Close: %v", err)
		}
	}
	if calls != 1 {
		t.Fatalf("closer ran %d times", calls)
	}
	select {
	case <-r.Done():
	default:
		t.Fatal("Done not closed")
	}
}

// TestListenerWiring serves a set the way cmd/keygate should: a
// fasthttp.Server whose Handler is Holder.Serve.
func TestListenerWiring(t *testing.T) {
	var h Holder
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: h.Serve, NoDefaultServerHeader: true}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) { return ln.Dial() },
	}}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get("http://keygate.test" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if code, body := get("/oauth/v2/jwks"); code != 503 || body != `{"error":"temporarily_unavailable"}` {
		t.Fatalf("before first swap: %d %s", code, body)
	}
	first := build(t, testSnapshot(t), Deps{})
	h.Swap(first)
	code, body1 := get("/oauth/v2/jwks")
	if code != 200 {
		t.Fatalf("jwks: %d", code)
	}

	// A reload with a new key: the next request sees it, the old set
	// drains and closes.
	next := testSnapshot(t)
	next.Keys["signing-2026"].PrivateKey = secret.New(string(testkit.MustKey(t, "ES256").PEM))
	if prev := h.Swap(build(t, next, Deps{})); prev != first {
		t.Fatal("Swap did not return the previous set")
	}
	waitDone(t, first)
	if _, body2 := get("/oauth/v2/jwks"); body2 == body1 {
		t.Fatal("jwks unchanged after swap")
	}
}
