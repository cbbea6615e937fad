package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/internal/placeholder"
	"github.com/keygate/keygate/internal/secret"
)

// FuzzLoad writes the fuzzed bytes as one YAML file (optionally beside a
// fixed valid base file) and loads it.
//
// Properties checked for every input:
//
//   - Load never panics.
//   - An error is an Errors, non-empty, and every *Error has a message and
//     names a file (a config file or the directory).
//   - A snapshot renders to well-formed YAML and diffs empty against itself.
//
// The secret property. The environment holds two kinds of variables:
// "secret" ones (SECRET, SECRET_URL, SECRET_KEY) whose values contain a
// marker, plus a ${file:} target ($DIR/secret.pem) that holds the marker, and
// ordinary ones with harmless values. A value written into a NON-secret field
// may legitimately be echoed (issuer: `must be an absolute URL, got "..."`),
// and the fuzzer is free to move $SECRET into an issuer, so "the marker
// never appears" is not a sound property on its own. Instead the test works
// out, exactly, whether the marker can reach a non-secret value: it walks the
// parsed YAML along the schema types, the way the decoder does (aliases
// followed, unknown keys, mismatched kinds and files over the alias
// expansion limit not decoded), and expands every
// scalar that lands in a non-secret field with the same environment. If any
// such value contains the marker, or the input has the marker literally, the
// input is "tainted" and only the first properties apply. Otherwise the
// marker reaches secret fields only, and then:
//
//   - no error message, no rendered output and no Diff entry contains it;
//   - loading again with a different marker of the same shape gives the very
//     same errors (messages never depend on a secret value), and Diff between
//     the two snapshots lists secret fields only, each shown as <redacted>.
//
// One deliberate exception: a ${file:PATH} error names PATH (paths are not
// secret, see placeholder.FileError), so a path built from a secret variable
// (${file:$SECRET}) is tainted too. Nobody keeps a secret in a path.
func FuzzLoad(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), true, false)
		f.Add([]byte(s), false, false)
	}
	f.Add([]byte(fuzzFull), false, true)
	f.Add([]byte(fuzzSeeds[0]), true, true)

	// One directory pair per process, rewritten for each input (inputs run
	// one at a time in a process): creating and removing temporary
	// directories for every input costs more than the load itself.
	dir, secrets := filepath.Join(f.TempDir(), "config.d"), filepath.Join(f.TempDir(), "secrets")
	for _, d := range []string{dir, secrets} {
		if err := os.Mkdir(d, 0o700); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(secrets, "plain.txt"), []byte("plain-file-value\n"), 0o600); err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, data []byte, withBase, lenient bool) {
		if withBase {
			writeFile(t, filepath.Join(dir, "00-base.yaml"), []byte(fuzzBase))
		} else if err := os.Remove(filepath.Join(dir, "00-base.yaml")); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "50-fuzz.yaml"), data)

		var snaps [2]*Snapshot
		var msgs [2]string
		for i, marker := range []string{fuzzMarkerA, fuzzMarkerB} {
			writeFile(t, filepath.Join(secrets, "secret.pem"), []byte(marker+"\n"))
			env := fuzzEnviron(marker, secrets)
			snap, err := loadChecked(t, Options{Dir: dir, Environ: env, ExcludeTags: []string{"under-test"}, Lenient: lenient})
			snaps[i], msgs[i] = snap, checkErrors(t, snap, err)
			if snap != nil {
				checkSnapshot(t, snap)
			}
		}

		var files [][]byte
		if withBase {
			files = append(files, []byte(fuzzBase))
		}
		files = append(files, data)
		if tainted(files, fuzzEnviron(fuzzMarkerA, secrets), fuzzMarkerA) ||
			tainted(files, fuzzEnviron(fuzzMarkerB, secrets), fuzzMarkerB) {
			return
		}

		for i, marker := range []string{fuzzMarkerA, fuzzMarkerB} {
			if strings.Contains(msgs[i], marker) {
				t.Fatalf("an error leaks a secret value:\n%s", msgs[i])
			}
			if snaps[i] != nil {
				out, _ := Render(snaps[i])
				if bytes.Contains(out, []byte(marker)) {
					t.Fatalf("render leaks a secret value:\n%s", out)
				}
			}
		}
		if msgs[0] != msgs[1] {
			t.Fatalf("errors depend on a secret value:\n%s\n--- vs ---\n%s", msgs[0], msgs[1])
		}
		if (snaps[0] == nil) != (snaps[1] == nil) {
			t.Fatalf("one marker loads, the other does not")
		}
		if snaps[0] == nil {
			return
		}
		for _, d := range Diff(snaps[0], snaps[1]) {
			shown := d.Before + d.After
			if !d.Secret || strings.Contains(shown, fuzzMarkerA) || strings.Contains(shown, fuzzMarkerB) ||
				strings.Trim(strings.ReplaceAll(shown, secret.Redacted, ""), " ") != "" {
				t.Fatalf("changing only secret values gives a non-secret or unredacted difference: %+v", d)
			}
		}
	})
}

const (
	fuzzMarkerA = "S3CRET-marker-value-7781"
	fuzzMarkerB = "S3CRET-marker-value-9924" // same shape: validation cannot tell them apart
)

// fuzzEnviron: SECRET* variables hold the marker; the rest are harmless.
func fuzzEnviron(marker, secretsDir string) []string {
	return []string{
		"SECRET=" + marker,
		"SECRET_URL=postgres://keygate:" + marker + "@db.example.com:5432/keygate",
		"SECRET_KEY=-----BEGIN PRIVATE KEY-----\n" + marker + "\n-----END PRIVATE KEY-----",
		"DIR=" + secretsDir,
		"BASE=https://id.example.com",
		"REDIRECT=https://app.example.com/cb",
		"TTL=5m",
		"CONNS=10",
		"NAME=token",
		"ROTATE=false",
		"KEY=not-a-secret",
		"URL=https://app.example.com/cb",
		"A=a",
		"B=b",
		"EMPTY=",
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkErrors checks the shape of Load's result and returns the error text.
func checkErrors(t *testing.T, snap *Snapshot, err error) string {
	t.Helper()
	if err == nil {
		if snap == nil {
			t.Fatal("Load returned neither a snapshot nor an error")
		}
		return ""
	}
	if snap != nil {
		t.Fatalf("Load returned a snapshot and an error: %v", err)
	}
	errs, ok := err.(Errors)
	if !ok {
		t.Fatalf("error is %T, want Errors: %v", err, err)
	}
	if len(errs) == 0 {
		t.Fatal("Load failed with an empty Errors")
	}
	for _, e := range errs {
		if e == nil || strings.TrimSpace(e.Msg) == "" || e.Pos.File == "" {
			t.Fatalf("error without message or file: %#v", e)
		}
	}
	return err.Error()
}

func checkSnapshot(t *testing.T, snap *Snapshot) {
	t.Helper()
	out, err := Render(snap)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatalf("render is not YAML: %v\n%s", err, out)
	}
	if d := Diff(snap, snap); len(d) != 0 {
		t.Fatalf("a snapshot differs from itself: %+v", d)
	}
	if len(snap.Hash) != 64 {
		t.Fatalf("hash %q", snap.Hash)
	}
}

// tainted reports whether marker can reach a non-secret value of the files'
// first documents (or appears literally in them): see FuzzLoad.
func tainted(files [][]byte, environ []string, marker string) bool {
	vars := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	w := &taintWalker{marker: marker, lookup: func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}}
	for _, data := range files {
		if bytes.Contains(data, []byte(marker)) {
			return true
		}
		var doc yaml.Node
		if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil || len(doc.Content) == 0 {
			continue
		}
		root := doc.Content[0]
		if _, ok := aliasLimit(root); !ok || root.Kind != yaml.MappingNode {
			continue // Load decodes nothing of it
		}
		for i := 0; i+1 < len(root.Content); i += 2 {
			if t, ok := fuzzSectionTypes[root.Content[i].Value]; ok {
				w.walk(root.Content[i+1], t)
			}
		}
		if w.tainted {
			return true
		}
	}
	return false
}

var fuzzSectionTypes = map[string]reflect.Type{
	"schema":        reflect.TypeFor[int](),
	"service-roles": reflect.TypeFor[map[string]*ServiceRole](),
	"zones":         reflect.TypeFor[map[string]*Zone](),
	"data-sources":  reflect.TypeFor[map[string]*DataSource](),
	"keys":          reflect.TypeFor[map[string]*Key](),
	"profiles":      reflect.TypeFor[map[string]*Profile](),
	"clients":       reflect.TypeFor[map[string]*Client](),
}

type taintWalker struct {
	marker  string
	lookup  placeholder.Lookup
	tainted bool
}

// walk mirrors decoder.value: it visits the scalars the decoder would
// expand, with the type each lands in. Generous where unsure (it visits
// duplicate keys too), which only skips more inputs.
func (w *taintWalker) walk(n *yaml.Node, t reflect.Type) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if w.tainted || isNull(n) {
		return
	}
	if t == secretType || t == durationType {
		w.scalar(n, t == secretType)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		w.walk(n, t.Elem())
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		ft := fieldsOf(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			if idx, ok := ft.byName[n.Content[i].Value]; ok {
				w.walk(n.Content[i+1], t.FieldByIndex(idx).Type)
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			w.walk(n.Content[i+1], t.Elem())
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for _, item := range n.Content {
			w.walk(item, t.Elem())
		}
	default:
		w.scalar(n, false)
	}
}

func (w *taintWalker) scalar(n *yaml.Node, isSecret bool) {
	if n.Kind != yaml.ScalarNode {
		return
	}
	res, err := placeholder.Expand(n.Value, w.lookup, func(path string) ([]byte, error) {
		data, err := os.ReadFile(path)
		return data, unwrapPathError(err)
	})
	if err != nil {
		var fe *placeholder.FileError
		if errors.As(err, &fe) && strings.Contains(fe.Path, w.marker) {
			w.tainted = true // a path built from a secret (see FuzzLoad)
		}
		return
	}
	if !isSecret && strings.Contains(res.Value, w.marker) {
		w.tainted = true
	}
}

// fuzzBase is a small valid config the fuzzed file is loaded beside.
const fuzzBase = `schema: 1
service-roles:
  default: {zone: local, profiles: [token, authn]}
zones:
  local: {data-source: db}
data-sources:
  db: {type: sqlite, path: /tmp/keygate-fuzz.db}
keys:
  k1: {algorithm: ES256, private-key: $SECRET_KEY}
profiles:
  token:
    type: token
    path: /oauth
    issuer: ${BASE}/oauth
    authentication-profile: authn
    signing-keys: [k1]
    endpoints: [discovery, jwks, authorize, token]
  authn:
    type: authentication
    path: /authn
    authenticators: {pw: {type: password}}
clients:
  base-client: {profile: token, secret: $SECRET, grant-types: [client_credentials]}
`

// fuzzFull is a complete valid config on its own: every section, every
// kind of secret (client secret, private key, postgres URL, IdP client
// secret, a ${file:} target).
const fuzzFull = `schema: 1
service-roles:
  default: {zone: eu, profiles: [token, authn, users]}
  other: {zone: local, profiles: [token]}
zones:
  eu: {data-source: eu-db}
  local: {data-source: local-db}
data-sources:
  eu-db: {type: postgres, url: $SECRET_URL, max-connections: $CONNS}
  local-db: {type: sqlite, path: "${DATA_DIR:-./data}/keygate.db"}
keys:
  k1: {algorithm: ES256, private-key: "${file:${DIR}/secret.pem}"}
  k2: {algorithm: EdDSA, private-key: $SECRET_KEY, tags: [under-test]}
profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: ${BASE}/oauth/v2
    authentication-profile: authn
    signing-keys: [k1]
    endpoints: [discovery, jwks, authorize, token, introspect, revoke, userinfo, logout]
    access-tokens: {format: opaque, lifetime: $TTL}
    refresh-tokens: {lifetime: 720h, rotate: $ROTATE}
    id-tokens: {lifetime: 5m}
    authorization-codes: {lifetime: 1m}
  authn:
    type: authentication
    path: /authn
    authenticators:
      password: {type: password}
      corp:
        type: oidc
        issuer: https://login.example.com
        client-id: keygate
        client-secret: ${SECRET}
        scopes: [openid, email]
    sessions: {idle-lifetime: 30m, absolute-lifetime: 8h}
  users: {type: user-management, path: /scim/v2, token-profile: token}
clients:
  web:
    profile: token
    secret: $SECRET
    redirect-uris: [$REDIRECT, "http://127.0.0.1:3000/cb"]
    post-logout-redirect-uris: [https://app.example.com/bye]
    grant-types: [authorization_code, refresh_token]
    scopes: [openid, profile]
    audiences: [https://api.example.com]
    consent: true
  spa: {profile: token, redirect-uris: [$URL], grant-types: [authorization_code], token-endpoint-auth-method: none}
  jwt: {profile: token, public-keys: [$KEY], grant-types: [client_credentials], access-tokens: {format: jwt}}
  beta: {profile: token, secret: "$SECRET", grant-types: [client_credentials], tags: [under-test]}
  off: {profile: token, secret: $SECRET, grant-types: [client_credentials], enabled: false}
`

// fuzzSeeds: valid configs, each section alone, and broken ones. The
// committed corpus in testdata/fuzz/FuzzLoad holds more.
var fuzzSeeds = []string{
	fuzzFull,
	"",
	"# only a comment\n",
	"---\n",
	"schema: 1\n",
	"schema: $SECRET\n",
	"clients:\n  c1: {profile: token, secret: $SECRET, grant-types: [client_credentials], scopes: [read]}\n",
	"clients:\n  c1: {profile: token, secret: short$A, grant-types: [client_credentials]}\n",
	"clients:\n  c1: {profile: token, secret: \"${file:${DIR}/secret.pem}\", grant-types: [client_credentials]}\n",
	"clients:\n  c1: {profile: token, secret: $SECRET, token-endpoint-auth-method: none, grant-types: [authorization_code], redirect-uris: [\"https://a.example.com/cb#x\", http://a.example.com/cb, /rel]}\n",
	"data-sources:\n  pg: {type: postgres, url: $SECRET_URL}\n  bad: {type: postgres, url: \"mysql://u:${SECRET}@h/db\"}\n  lite: {type: sqlite, path: /x, url: $SECRET_URL}\nzones:\n  z: {data-source: pg}\nservice-roles:\n  r: {zone: z, profiles: [token]}\n",
	"keys:\n  k2: {algorithm: RS256, private-key: $SECRET_KEY}\n  k3: {algorithm: HS256, private-key: \"${file:${DIR}/missing.pem}\"}\n  k4: {algorithm: EdDSA}\n",
	"profiles:\n  t2:\n    type: token\n    path: /t2/\n    issuer: \"http://example.com/t2?x=1\"\n    signing-keys: [k1, k1, nope]\n    endpoints: [jwks, bogus]\n    authorization-codes: {lifetime: 11m}\n    refresh-tokens: {lifetime: -1h, rotate: yes}\n",
	"profiles:\n  a2:\n    type: authentication\n    path: /a2\n    issuer: https://x.example.com\n    authenticators:\n      sso: {type: oidc, issuer: $BASE, client-id: kg, client-secret: $SECRET}\n      pw: {type: password, client-secret: $SECRET}\n    sessions: {idle-lifetime: 13h}\n",
	"profiles:\n  u2: {type: user-management, path: /u2, token-profile: authn}\n",
	"service-roles:\n  edge: {zone: mars, profiles: [tokn, token, token]}\n",
	"zones:\n  z2: {data-source: nope, enabled: false}\n",
	"clients: [a, b]\n",
	"clients:\n  \"bad name!\": {}\n",
	"- a\n- b\n",
	"scalar\n",
	"keys: {}\n---\nclients: {}\n",
	"clients:\n  a: [1, 2\n",
	"clients:\n  c: {profile: token, <<: {x: 1}}\n",
	"x: &a {profile: token, secret: $SECRET, grant-types: [client_credentials]}\nclients:\n  c1: *a\n  c2: *a\n",
	"keys:\n  k: {algorithm: ES256, private-key: &s $SECRET}\nprofiles:\n  p: {type: token, path: /p, issuer: *s, signing-keys: [k], endpoints: [jwks]}\n",
	"keys:\n  k: {algorithm: ES256, private-key: \"${SECRET\"}\n  k2: {algorithm: ES256, private-key: \"$\"}\n  k3: {algorithm: ES256, private-key: \"${UNSET:-$SECRET}$$\"}\n",
	"keys:\n  k: {algorithm: ES256, private-key: \"${file:$SECRET}\"}\n",
	"clients:\n  c: {profile: $UNSET, secret: $UNSET2, grant-types: [$UNSET3]}\n",
	"data-sources:\n  db2: {type: sqlite, path: x, max-connections: -3}\n  db3: {type: sqlite, path: x, max-connections: $A}\n",
	"clients:\n  c: {profile: token, secret: $SECRET, grant-types: [client_credentials], consent: maybe, scopes: [\"a b\", \"\"]}\n",
	"clients:\n  c: {profile: token, secret: !!binary aGVsbG8=, grant-types: [client_credentials]}\n",
	"clients:\n  ? [x]\n  : {}\n",
	"sechema: 1\nclient: {}\n",
	"schema: 99\n",
	"schema: 2\n",
	"\t- tab\n",
	"clients:\n  c: {profile: token, secret: $SECRET, grant-types: [client_credentials], tags: [under-test]}\n  d: {profile: token, secret: $SECRET, grant-types: [client_credentials], enabled: $ROTATE}\n",
}

// The fuzz harness itself: the full seed is valid (so mutations start from
// a config that loads), and the taint analysis tells a secret field from an
// echoed one, through aliases and file reads.
func TestFuzzHarness(t *testing.T) {
	secrets := t.TempDir()
	writeFile(t, filepath.Join(secrets, "secret.pem"), []byte(fuzzMarkerA+"\n"))
	dir := writeDir(t, map[string]string{"full.yaml": fuzzFull})
	snap, err := Load(Options{Dir: dir, Environ: fuzzEnviron(fuzzMarkerA, secrets), ExcludeTags: []string{"under-test"}})
	if err != nil {
		t.Fatalf("the full seed must be valid: %v", err)
	}
	if len(snap.Clients) != 3 || len(snap.Profiles) != 3 || snap.Keys["k1"].PrivateKey.Reveal() != fuzzMarkerA {
		t.Fatalf("full seed: clients %v profiles %v", keys(snap.Clients), keys(snap.Profiles))
	}
	dir = writeDir(t, map[string]string{"00-base.yaml": fuzzBase})
	if _, err := Load(Options{Dir: dir, Environ: fuzzEnviron(fuzzMarkerA, secrets)}); err != nil {
		t.Fatalf("the base must be valid: %v", err)
	}

	// The committed corpus entries named valid-* must load.
	corpus, _ := filepath.Glob("testdata/fuzz/FuzzLoad/valid-*")
	if len(corpus) == 0 {
		t.Fatal("no valid-* entries in testdata/fuzz/FuzzLoad")
	}
	for _, path := range corpus {
		data, withBase, lenient := readCorpusEntry(t, path)
		files := map[string]string{"50-fuzz.yaml": string(data)}
		if withBase {
			files["00-base.yaml"] = fuzzBase
		}
		opts := Options{Dir: writeDir(t, files), Environ: fuzzEnviron(fuzzMarkerA, secrets), Lenient: lenient}
		if _, err := Load(opts); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}

	for _, tc := range []struct {
		yaml    string
		tainted bool
	}{
		{fuzzFull, false},
		{fuzzBase, false},
		{"profiles:\n  p: {issuer: $SECRET}\n", true},
		{"profiles:\n  p: {issuer: \"${UNSET:-x$SECRET}\"}\n", true},
		{"profiles:\n  p: {issuer: \"${file:${DIR}/secret.pem}\"}\n", true},
		{"profiles:\n  p: {issuer: \"${file:${DIR}/plain.txt}\"}\n", false},
		{"keys:\n  k: {private-key: &s $SECRET}\nprofiles:\n  p: {issuer: *s}\n", true},
		{"keys:\n  k: {private-key: \"${file:$SECRET}\"}\n", true},
		{"schema: $SECRET_URL\n", true},
		{"clients:\n  c: {scopes: [a, $SECRET]}\n", true},
		{"clients:\n  c: {secret: $SECRET, scopes: [$$SECRET], unknown: $SECRET}\n", false},
		{"clients:\n  c: {secret: [$SECRET], profile: {x: $SECRET}}\n", false},
		{"unknown-section: $SECRET\n", false},
		{"profiles:\n  p: {path: /" + fuzzMarkerA + "}\n", true},
		{"clients:\n  " + fuzzMarkerA + ": {}\n", true},
		{"a: [\n", false},
	} {
		got := tainted([][]byte{[]byte(tc.yaml)}, fuzzEnviron(fuzzMarkerA, secrets), fuzzMarkerA)
		if got != tc.tainted {
			t.Errorf("tainted(%q) = %v, want %v", tc.yaml, got, tc.tainted)
		}
	}
}

// readCorpusEntry parses a "go test fuzz v1" file of FuzzLoad's arguments.
func readCorpusEntry(t *testing.T, path string) (data []byte, withBase, lenient bool) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 4 || lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: not a FuzzLoad corpus entry", path)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s), lines[2] == "bool(true)", lines[3] == "bool(true)"
}

// aliasBomb nests anchors so that a few kilobytes expand to m*m*m values:
// m profiles, each with m authenticators, each with m scopes.
func aliasBomb(m int) string {
	var b strings.Builder
	b.WriteString("profiles:\n  p0: &prof\n    type: authentication\n    path: /a\n    authenticators:\n")
	b.WriteString("      a0: &auth {type: oidc, issuer: https://x.example.com, client-id: c, client-secret: $SECRET, scopes: [")
	for i := range m {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "s%d", i)
	}
	b.WriteString("]}\n")
	for i := 1; i < m; i++ {
		fmt.Fprintf(&b, "      a%d: *auth\n", i)
	}
	for i := 1; i < m; i++ {
		fmt.Fprintf(&b, "  p%d: *prof\n", i)
	}
	return b.String()
}

// Aliases may not multiply a file without bound: 200 anchored entries
// (8 KB) used to decode into 8 million values (30 s, 1.8 GB). Moderate
// reuse of anchors still loads.
func TestAliasExpansionBounded(t *testing.T) {
	env := fuzzEnviron(fuzzMarkerA, t.TempDir())
	bomb := aliasBomb(200)
	_, err := load(t, map[string]string{"00-base.yaml": fuzzBase, "bomb.yaml": bomb}, Options{Environ: env})
	want := "bomb.yaml:1:1: YAML aliases (*name) expand this file to more than"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
	if n := len(err.(Errors)); n != 1 {
		t.Errorf("%d errors, want only the alias one: %v", n, err)
	}

	// A self-referencing anchor is unbounded too.
	_, err = load(t, map[string]string{"00-base.yaml": fuzzBase, "cycle.yaml": "clients: &x\n  c: {scopes: *x}\n"}, Options{Environ: env})
	if err == nil || !strings.Contains(err.Error(), "cycle.yaml:1:1: YAML aliases") {
		t.Errorf("cycle: %v", err)
	}

	// 50 clients sharing one anchored entry load fine.
	var b strings.Builder
	b.WriteString("clients:\n  c0: &c {profile: token, secret: $SECRET, grant-types: [client_credentials], scopes: [a, b, c, d]}\n")
	for i := 1; i < 50; i++ {
		fmt.Fprintf(&b, "  c%d: *c\n", i)
	}
	snap, err := load(t, map[string]string{"00-base.yaml": fuzzBase, "c.yaml": b.String()}, Options{Environ: env})
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Clients) != 51 {
		t.Errorf("%d clients, want 51", len(snap.Clients))
	}
}

// Regressions found while fuzzing.
func TestFuzzRegressions(t *testing.T) {
	env := fuzzEnviron(fuzzMarkerA, t.TempDir())

	// Render panicked (nil node inside a YAML sequence) on a list with an
	// empty item: audiences: [""] is valid, and Lenient leaves [$UNSET] as [""].
	for _, tc := range []struct {
		audiences string
		lenient   bool
	}{{`[""]`, false}, {`[$UNSET]`, true}} {
		snap, err := load(t, map[string]string{"00-base.yaml": fuzzBase, "c.yaml": `clients:
  c: {profile: token, secret: $SECRET, grant-types: [client_credentials], audiences: ` + tc.audiences + `, tags: [""]}
`}, Options{Environ: env, Lenient: tc.lenient})
		if err != nil {
			t.Fatalf("%s: %v", tc.audiences, err)
		}
		out, err := Render(snap)
		if err != nil || !strings.Contains(string(out), "    audiences:\n      - \"\"\n") {
			t.Errorf("render (err %v):\n%s", err, out)
		}
	}

	// An empty item in a list of references passed Load (served.Build
	// caught it later, without the item's position).
	_, err := load(t, map[string]string{"00-base.yaml": fuzzBase, "r.yaml": `service-roles:
  edge: {zone: local, profiles: [token, "${EMPTY}"]}
profiles:
  t2: {type: token, path: /t2, issuer: https://id.example.com/t2, signing-keys: [k1, ""], endpoints: [jwks]}
`}, Options{Environ: env})
	want := "r.yaml:2:41: service-roles.edge.profiles[1]: must name a profile, got an empty value\n" +
		"r.yaml:4:86: profiles.t2.signing-keys[1]: must name a key, got an empty value"
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}

	// Lenient (config diff) failed on a ${file:} target that only exists
	// where the stage runs; it is now left empty like an unset variable.
	// Other file errors still fail, and a strict load still reports it.
	files := map[string]string{"00-base.yaml": strings.Replace(fuzzBase, "$SECRET_KEY", `"${file:${DIR}/vault/k1.pem}"`, 1)}
	snap, err := load(t, files, Options{Environ: env, Lenient: true})
	if err != nil {
		t.Fatalf("lenient: %v", err)
	}
	if !snap.Keys["k1"].PrivateKey.IsZero() {
		t.Errorf("private key from a missing file is set")
	}
	if _, err := load(t, files, Options{Environ: env}); err == nil || !strings.Contains(err.Error(), "keys.k1.private-key: read ${file:") {
		t.Errorf("strict: %v", err)
	}
	files["00-base.yaml"] = strings.Replace(fuzzBase, "$SECRET_KEY", `"${file:${DIR}}"`, 1) // a directory
	if _, err := load(t, files, Options{Environ: env, Lenient: true}); err == nil || !strings.Contains(err.Error(), "keys.k1.private-key: read ${file:") {
		t.Errorf("lenient, unreadable target: %v", err)
	}
}
