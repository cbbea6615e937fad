package admin

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/bundle"
	"github.com/keygate/keygate/internal/datasource"
	"github.com/keygate/keygate/internal/publish"
	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/testkit"
)

const token = "test-admin-token-0123456789"

func cfg(dbPath, issuerPath string) string {
	return fmt.Sprintf(`schema: 1
service-roles:
  default: {zone: z, profiles: [authn]}
zones:
  z: {data-source: d}
data-sources:
  d: {type: sqlite, path: "${DB_DIR}/%s"}
profiles:
  authn: {type: authentication, path: /%s, authenticators: {password: {type: password}}}
`, filepath.Base(dbPath), issuerPath)
}

type fixture struct {
	api    *Server
	srv    *httptest.Server
	pubDir string
	db     string
	// st is the zones' database, made before the admin first opens it: a
	// publish writes audit events there from a goroutine of its own, and
	// two pools creating one SQLite file at once can find it locked.
	st model.Store
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	pubDir := t.TempDir()
	p, err := publish.New(pubDir, 10)
	if err != nil {
		t.Fatal(err)
	}
	pools := datasource.New(datasource.Options{Migrate: true})
	t.Cleanup(func() { pools.Close() })
	dbDir := t.TempDir()
	st := testkit.SQLiteAt(t, filepath.Join(dbDir, "k.db"))
	api := New(Config{Publisher: p, SigningKey: ed25519.NewKeyFromSeed(make([]byte, 32)), Token: []byte(token),
		ConfigDir: t.TempDir(), Pools: pools, Environ: []string{"DB_DIR=" + dbDir}})
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return &fixture{api: api, srv: srv, pubDir: pubDir, db: filepath.Join(dbDir, "k.db"), st: st}
}

func (f *fixture) do(t testing.TB, method, path, tok string, body any) (int, http.Header, []byte) {
	t.Helper()
	data, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(data))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header, buf.Bytes()
}

func listing(t *testing.T, dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestAuthentication(t *testing.T) {
	f := newFixture(t)
	for _, tok := range []string{"", "nope", token + "x"} {
		code, h, body := f.do(t, "GET", "/admin/v1/bundles", tok, nil)
		if code != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") || !strings.Contains(string(body), "invalid_token") {
			t.Errorf("token %q: %d %v %s", tok, code, h, body)
		}
	}
	if code, _, _ := f.do(t, "GET", "/admin/v1/bundles", token, nil); code != http.StatusOK {
		t.Fatalf("valid token: %d", code)
	}
}

func TestRefusedBundleWritesNothingAndListsEveryError(t *testing.T) {
	f := newFixture(t)
	before := listing(t, f.pubDir)
	broken := strings.Replace(cfg(f.db, "a"), "profiles: [authn]", "profiles: [missing]", 1)
	code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: map[string]string{"a.yaml": broken, "../x.yaml": "", "b.txt": ""}})
	if code != http.StatusUnprocessableEntity {
		t.Fatalf("%d %s", code, body)
	}
	var p problem
	json.Unmarshal(body, &p)
	if len(p.Errors) != 2 || !strings.Contains(body2(p), "../x.yaml") || !strings.Contains(body2(p), "b.txt") {
		t.Fatalf("errors: %q", p.Errors)
	}
	code, _, body = f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: map[string]string{"a.yaml": broken, "b.yaml": "zones:\n  z: {data-source: d}\n"}})
	json.Unmarshal(body, &p)
	if code != http.StatusUnprocessableEntity || !strings.Contains(body2(p), `"missing"`) || !strings.Contains(body2(p), "already defined") || strings.Contains(body2(p), os.TempDir()) {
		t.Fatalf("%d %q", code, p.Errors)
	}
	if after := listing(t, f.pubDir); !slices.Equal(before, after) {
		t.Fatalf("publish dir changed: %q → %q", before, after)
	}
}

func body2(p problem) string { return strings.Join(p.Errors, "\n") }

func TestEnvFilesMustDeclareEveryRoleVariable(t *testing.T) {
	f := newFixture(t)
	files := map[string]string{"a.yaml": cfg(f.db, "a")}
	code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: files, EnvFiles: map[string]map[string]string{
		"staging": {"staging.env": "OTHER=1\n"}, "production": {"production.env": "DB_DIR=\n"}}})
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(body), "env_files.staging: service role default needs variable DB_DIR") || strings.Contains(string(body), "production") {
		t.Fatalf("%d %s", code, body)
	}
	code, _, body = f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: files, Author: "me", EnvFiles: map[string]map[string]string{"production": {"p.env": "DB_DIR=\n"}}})
	var m struct {
		Version   string
		Variables map[string][]string
		Signature string
	}
	json.Unmarshal(body, &m)
	if code != http.StatusCreated || m.Version != "v1" || m.Signature == "" || !slices.Equal(m.Variables["default"], []string{"DB_DIR"}) {
		t.Fatalf("%d %s", code, body)
	}
	if code, _, body := f.do(t, "POST", "/admin/v1/bundles/v9/activate", token, nil); code != http.StatusNotFound {
		t.Fatalf("activate unknown: %d %s", code, body)
	}
}

func TestClusterAndPhasedUpgrade(t *testing.T) {
	f := newFixture(t)
	files := map[string]string{"a.yaml": cfg(f.db, "a")}
	if code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: files}); code != http.StatusCreated {
		t.Fatalf("%d %s", code, body)
	}
	ctx := context.Background()
	st := f.st
	now := time.Now()
	for _, n := range []model.NodeStatus{
		{ID: "live", Role: "default", Zone: "z", ConfigVersion: "v1", HeartbeatAt: now, ExpiresAt: now.Add(time.Hour), Details: map[string]any{"config_schema_max": 0}},
		{ID: "gone", Role: "default", Zone: "z", ConfigVersion: "v0", HeartbeatAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour)},
	} {
		if err := st.Nodes().Heartbeat(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	code, _, body := f.do(t, "GET", "/admin/v1/cluster", token, nil)
	var c struct {
		Nodes  []NodeInfo
		Errors []string
	}
	json.Unmarshal(body, &c)
	if code != http.StatusOK || len(c.Nodes) != 2 {
		t.Fatalf("%d %s", code, body)
	}
	for _, n := range c.Nodes {
		if n.Stale != (n.ID == "gone") || n.DataSource != "d" {
			t.Errorf("node %+v", n)
		}
	}
	// A live node supports only schema 0 (artificially): schema 1 is refused unless forced.
	code, _, body = f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: files})
	if code != http.StatusConflict || !strings.Contains(string(body), "live") {
		t.Fatalf("%d %s", code, body)
	}
	if code, _, body := f.do(t, "POST", "/admin/v1/bundles?force=true", token, Upload{Files: files}); code != http.StatusCreated {
		t.Fatalf("forced: %d %s", code, body)
	}
}

// A bundle's ${file:} targets are the runtime nodes' secrets: the admin
// never reads them, so no upload can make it quote a file of its host, and
// a path outside the allowed directories is refused without a read.
func TestBundleFileTargetsAreNeverRead(t *testing.T) {
	secretDir := t.TempDir()
	stolen := filepath.Join(secretDir, "admin-token")
	if err := os.WriteFile(stolen, []byte("not a url TOPSECRET-CONTENT"), 0o600); err != nil {
		t.Fatal(err)
	}
	withIssuer := func(path string) map[string]string {
		return map[string]string{"a.yaml": cfg("k.db", "authn") + `  token:
    type: token
    path: /oauth/v2
    issuer: ${file:` + path + `}
    signing-keys: [k]
    endpoints: [discovery]
keys:
  k: {algorithm: ES256, private-key: "${file:` + filepath.Join(secretDir, "k.pem") + `}"}
`}
	}
	f := newFixture(t)
	f.api.c.FileDirs = []string{secretDir}

	// Inside the allowed directories: accepted unread, like a vault value.
	code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: withIssuer(stolen)})
	if code != http.StatusCreated {
		t.Fatalf("bundle with an allowed ${file:} target: %d %s", code, body)
	}
	if strings.Contains(string(body), "TOPSECRET") {
		t.Fatalf("the admin quoted a file of its host: %s", body)
	}

	// Outside them: refused, naming the path and the setting, nothing written.
	before := listing(t, f.pubDir)
	outside := filepath.Join(t.TempDir(), "x")
	for _, p := range []string{"/proc/self/environ", outside, secretDir + "/../" + filepath.Base(outside)} {
		code, _, body = f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: withIssuer(p)})
		if code != http.StatusUnprocessableEntity || !strings.Contains(string(body), "KEYGATE_FILE_DIRS") {
			t.Errorf("bundle reading %s: %d %s", p, code, body)
		}
	}
	if after := listing(t, f.pubDir); !slices.Equal(before, after) {
		t.Errorf("a refused bundle changed the publish dir: %v → %v", before, after)
	}
}

// The GitOps case: secrets are placeholders the admin cannot resolve. A
// dangling reference beside them is still found, and nothing is written.
func TestPlaceholderSecretsDoNotHideBrokenReferences(t *testing.T) {
	f := newFixture(t)
	files := map[string]string{"a.yaml": cfg("k.db", "authn") + `  token:
    type: token
    path: /oauth/v2
    issuer: https://id.example.com/oauth/v2
    signing-keys: [k]
    endpoints: [discovery, token]
keys:
  k: {algorithm: ES256, private-key: $SIGNING_KEY}
clients:
  orphan:
    profile: no-such-profile
    secret: $ORPHAN_SECRET
    grant-types: [client_credentials]
  typo:
    profile: token
    secret: $TYPO_SECRET
    grant-types: [client_credential]
`}
	before := listing(t, f.pubDir)
	code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: files})
	if code != http.StatusUnprocessableEntity {
		t.Fatalf("bundle with a dangling reference: %d %s", code, body)
	}
	var p problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`clients.orphan.profile: refers to profile "no-such-profile", which is not defined`,
		`clients.typo.grant-types[0]: "client_credential" is not one of`,
	} {
		if !strings.Contains(body2(p), want) {
			t.Errorf("refusal lacks %q: %s", want, body)
		}
	}
	if after := listing(t, f.pubDir); !slices.Equal(before, after) {
		t.Errorf("a refused bundle changed the publish dir: %v → %v", before, after)
	}
}

// The per-role view: converged only when every live node serves the
// active version with a good last reload on a schema it supports.
func TestRoleViews(t *testing.T) {
	active := bundle.Manifest{Version: "v7", Schema: 2}
	nodes := []NodeInfo{
		{ID: "a1", Role: "edge-a", ConfigVersion: "v7", LastReload: "success", SchemaMax: 2},
		{ID: "a2", Role: "edge-a", ConfigVersion: "v7", LastReload: "success", SchemaMax: 3},
		{ID: "a3", Role: "edge-a", ConfigVersion: "v6", Stale: true, SchemaMax: 2},
		{ID: "b1", Role: "edge-b", ConfigVersion: "v6", LastReload: "failure", SchemaMax: 2},
		{ID: "b2", Role: "edge-b", ConfigVersion: "v6", LastReload: "success", SchemaMax: 1},
	}
	v := roleViews(nodes, func(string) bundle.Manifest { return active })
	a, b := v["edge-a"], v["edge-b"]
	if !a.Converged || a.Nodes != 2 || !slices.Equal(a.Stale, []string{"a3"}) || len(a.Behind) != 0 {
		t.Errorf("edge-a: %+v", a)
	}
	if b.Converged || !slices.Equal(b.Behind, []string{"b1", "b2"}) || !slices.Equal(b.Failing, []string{"b1"}) ||
		!slices.Equal(b.Unsupported, []string{"b2"}) {
		t.Errorf("edge-b: %+v", b)
	}
	if v := roleViews([]NodeInfo{{ID: "c", Role: "r", Stale: true}}, func(string) bundle.Manifest { return active })["r"]; v.Converged {
		t.Errorf("a role with no live node converged: %+v", v)
	}
}

// A plan shows, per role, exactly the entries a change touches, with
// secrets only as "differs", and writes nothing.
func TestPlanShowsExactlyTheChangedEntries(t *testing.T) {
	f := newFixture(t)
	files := func(scope, endpoints, secret string) map[string]string {
		return map[string]string{"a.yaml": `schema: 1
service-roles:
  default: {zone: z, profiles: [token]}
  other: {zone: z, profiles: [authn]}
zones:
  z: {data-source: d}
data-sources:
  d: {type: sqlite, path: "${DB_DIR}/k.db"}
keys:
  k: {algorithm: ES256, private-key: $SIGNING_KEY}
profiles:
  token: {type: token, path: /oauth/v2, issuer: "https://id.example.com/oauth/v2", signing-keys: [k], endpoints: [` + endpoints + `]}
  authn: {type: authentication, path: /authn, authenticators: {password: {type: password}}}
clients:
  svc: {profile: token, secret: "` + secret + `", grant-types: [client_credentials], scopes: [` + scope + `]}
  other: {profile: token, secret: "$OTHER_SECRET", grant-types: [client_credentials], scopes: [read]}
`}
	}
	if code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: files("read", "discovery, token", "$SVC_SECRET")}); code != http.StatusCreated {
		t.Fatalf("publish v1: %d %s", code, body)
	}
	before := listing(t, f.pubDir)
	code, _, body := f.do(t, "POST", "/admin/v1/bundles/plan", token, Upload{Files: files("write", "discovery, token, jwks", "$SVC_SECRET_2")})
	if code != http.StatusOK {
		t.Fatalf("plan: %d %s", code, body)
	}
	var p Plan
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if !p.Valid || p.ActiveVersion != "v1" {
		t.Fatalf("plan %s", body)
	}
	var lines []string
	for _, c := range p.Roles["default"].Changes {
		lines = append(lines, c.String())
	}
	want := []string{
		`+ profiles.token.endpoints[2]: "jwks"`,
		`~ clients.svc.scopes[0]: "read" → "write"`,
	}
	slices.Sort(lines)
	slices.Sort(want)
	if !slices.Equal(lines, want) {
		t.Errorf("default role changes:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if got := p.Roles["default"].NewVariables; !slices.Equal(got, []string{"SVC_SECRET_2"}) {
		t.Errorf("new variables %v", got)
	}
	if len(p.Roles["other"].Changes) != 0 {
		t.Errorf("the other role, which serves neither entry, changes: %+v", p.Roles["other"].Changes)
	}
	if after := listing(t, f.pubDir); !slices.Equal(before, after) {
		t.Errorf("a plan changed the publish dir: %v → %v", before, after)
	}
	// An invalid upload: the plan says why, with nothing written.
	code, _, body = f.do(t, "POST", "/admin/v1/bundles/plan", token, Upload{Files: map[string]string{"a.yaml": "clients: {x: {profile: nope}}\n"}})
	if err := json.Unmarshal(body, &p); code != http.StatusOK || err != nil || p.Valid || len(p.Errors) == 0 {
		t.Errorf("plan of an invalid bundle: %d %s", code, body)
	}
}

// Every reference and structural error the loader knows is caught with the
// secrets around it left as placeholders the admin cannot resolve, and a
// refused bundle writes nothing.
func TestGateWithPlaceholderSecrets(t *testing.T) {
	good := map[string]string{
		"00.yaml": `schema: 1
service-roles:
  default: {zone: z, profiles: [token, authn]}
zones:
  z: {data-source: d}
data-sources:
  d: {type: postgres, url: $DB_URL}
keys:
  k: {algorithm: ES256, private-key: $SIGNING_KEY}
profiles:
  token: {type: token, path: /oauth/v2, issuer: "https://id.example.com/oauth/v2", signing-keys: [k], endpoints: [discovery, token, authorize], authentication-profile: authn}
  authn: {type: authentication, path: /authn, authenticators: {password: {type: password}}}
`,
		"10.yaml": `clients:
  svc: {profile: token, secret: $SVC_SECRET, grant-types: [client_credentials], scopes: [read]}
`,
	}
	cases := []struct{ name, file, old, new, want string }{
		{"client of an unknown profile", "10.yaml", "profile: token", "profile: tokn", `clients.svc.profile: refers to profile "tokn", which is not defined (did you mean "token"?)`},
		{"role in an unknown zone", "00.yaml", "{zone: z,", "{zone: zz,", `service-roles.default.zone: refers to zone "zz", which is not defined`},
		{"role serving an unknown profile", "00.yaml", "profiles: [token, authn]", "profiles: [token, authn, scim]", `service-roles.default.profiles[2]: refers to profile "scim", which is not defined`},
		{"zone on an unknown data source", "00.yaml", "{data-source: d}", "{data-source: db}", `zones.z.data-source: refers to data source "db", which is not defined`},
		{"profile signing with an unknown key", "00.yaml", "signing-keys: [k]", "signing-keys: [k2]", `profiles.token.signing-keys[0]: refers to key "k2", which is not defined`},
		{"unknown authentication profile", "00.yaml", "authentication-profile: authn", "authentication-profile: login", `profiles.token.authentication-profile: refers to profile "login", which is not defined`},
		{"unknown key", "10.yaml", "scopes: [read]", "scope: [read]", `clients.svc.scope: unknown key "scope" (did you mean "scopes"?)`},
		{"bad enum", "10.yaml", "[client_credentials]", "[client-credentials]", `clients.svc.grant-types[0]: "client-credentials" is not one of`},
		{"bad data source type", "00.yaml", "type: postgres", "type: mysql", `data-sources.d.type: "mysql" is not one of sqlite, postgres`},
		{"duplicate name across files", "10.yaml", "clients:\n", "keys:\n  k: {algorithm: ES256, private-key: $K2}\nclients:\n", `keys.k: already defined at 00.yaml`},
		// What only building the role's handlers finds, as its nodes would,
		// with the key a stand-in for the vault's.
		{"two profiles on one path", "00.yaml", "path: /authn,", "path: /oauth/v2,", `service-roles.default.profiles[1]: profile "authn" has the same path /oauth/v2 as profile "token"`},
		{"authorize without a sign-in", "00.yaml", ", authentication-profile: authn", "", `profiles.token.authentication-profile: is required when the authorize endpoint is served`},
		{"two issuers with one metadata URL", "00.yaml", "profiles: [token, authn]", "profiles: [token, authn, other]", `profiles.other.issuer: its metadata URL /.well-known/oauth-authorization-server/oauth/v2 is already profile "token"'s in role "default"`},
	}
	// Cases that need a second edit: file, old, new.
	second := map[string][3]string{
		"two issuers with one metadata URL": {"10.yaml", "clients:\n", "profiles:\n  other: {type: token, path: /other, issuer: \"https://other.example.com/oauth/v2\", signing-keys: [k], endpoints: [discovery]}\nclients:\n"},
	}
	f := newFixture(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range good {
				files[k] = v
			}
			if !strings.Contains(files[tc.file], tc.old) {
				t.Fatalf("case does not apply: %q", tc.old)
			}
			files[tc.file] = strings.Replace(files[tc.file], tc.old, tc.new, 1)
			if e, ok := second[tc.name]; ok {
				files[e[0]] = strings.Replace(files[e[0]], e[1], e[2], 1)
			}
			before := listing(t, f.pubDir)
			code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: files})
			var p problem
			_ = json.Unmarshal(body, &p)
			if code != http.StatusUnprocessableEntity || !strings.Contains(body2(p), tc.want) {
				t.Errorf("%d, want 422 naming %q:\n%s", code, tc.want, body2(p))
			}
			if after := listing(t, f.pubDir); !slices.Equal(before, after) {
				t.Errorf("a refused bundle changed the publish dir")
			}
		})
	}
	code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: good})
	var pub published
	if code != http.StatusCreated || json.Unmarshal(body, &pub) != nil {
		t.Fatalf("the good bundle: %d %s", code, body)
	}
	// The vault's values are listed as not checked here, each with what
	// it needs; nothing else is.
	want := []string{
		"00.yaml:7:28: data-sources.d.url: not checked: needs variable DB_URL",
		"00.yaml:9:38: keys.k.private-key: not checked: needs variable SIGNING_KEY",
		"10.yaml:2:33: clients.svc.secret: not checked: needs variable SVC_SECRET",
	}
	if !slices.Equal(pub.NotChecked, want) {
		t.Errorf("not_checked %q, want %q", pub.NotChecked, want)
	}
}

// The go-live lint runs on every bundle: its findings come back with the
// manifest, and a production bundle with an error-level finding is
// refused unless forced.
func TestPublishRunsTheGoLiveLint(t *testing.T) {
	f := newFixture(t)
	files := map[string]string{"a.yaml": cfg("k.db", "authn") + `  token: {type: token, path: /oauth/v2, issuer: "https://id.example.com/oauth/v2", signing-keys: [k], endpoints: [discovery, token]}
keys:
  k: {algorithm: ES256, private-key: $SIGNING_KEY}
clients:
  svc: {profile: token, secret: "a-literal-secret-in-git-0123", grant-types: [client_credentials]}
`}
	before := listing(t, f.pubDir)
	code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: files, Stage: "production"})
	var p problem
	_ = json.Unmarshal(body, &p)
	if code != http.StatusUnprocessableEntity || p.Error != "lint_failed" || !strings.Contains(body2(p), "clients.svc.secret: error [literal-secret]") {
		t.Fatalf("production bundle with a literal secret: %d %s", code, body)
	}
	if strings.Contains(string(body), "a-literal-secret-in-git") {
		t.Errorf("the refusal quotes the secret: %s", body)
	}
	if after := listing(t, f.pubDir); !slices.Equal(before, after) {
		t.Errorf("a refused bundle changed the publish dir")
	}
	// Staging: published, with the finding beside the manifest.
	code, _, body = f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: files, Stage: "staging"})
	var out struct {
		Version string   `json:"version"`
		Lint    []string `json:"lint"`
	}
	if err := json.Unmarshal(body, &out); code != http.StatusCreated || err != nil || out.Version == "" ||
		!strings.Contains(strings.Join(out.Lint, "\n"), "[literal-secret]") {
		t.Fatalf("staging publish: %d %s", code, body)
	}
	// Production, forced.
	if code, _, body := f.do(t, "POST", "/admin/v1/bundles?force=true", token, Upload{Files: files, Stage: "production"}); code != http.StatusCreated {
		t.Errorf("forced production publish: %d %s", code, body)
	}
}
