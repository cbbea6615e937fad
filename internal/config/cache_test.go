package config

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// sharedCache is warmed by every loadChecked call of the package's tests:
// file names repeat across tests with other contents and environments.
var sharedCache = NewCache()

// loadChecked loads opts without a cache, with a cold cache, with that cache
// warm, and with the shared cache, and fails unless all four agree exactly.
func loadChecked(t testing.TB, opts Options) (*Snapshot, error) {
	t.Helper()
	opts.Cache = nil
	snap, err := Load(opts)
	c := NewCache()
	for i, cache := range []*Cache{c, c, sharedCache} {
		opts.Cache = cache
		s2, err2 := Load(opts)
		sameLoad(t, fmt.Sprintf("cached load %d", i), snap, err, s2, err2)
	}
	return snap, err
}

// sameLoad fails unless two loads returned exactly the same snapshot or
// exactly the same errors.
func sameLoad(t testing.TB, what string, a *Snapshot, aerr error, b *Snapshot, berr error) {
	t.Helper()
	if (aerr == nil) != (berr == nil) {
		t.Fatalf("%s: error %v, want %v", what, berr, aerr)
	}
	if aerr != nil {
		if aerr.Error() != berr.Error() || !reflect.DeepEqual(aerr, berr) {
			t.Fatalf("%s: errors differ:\n%v\n--- want ---\n%v", what, berr, aerr)
		}
		return
	}
	ra, erra := Render(a)
	rb, errb := Render(b)
	if !bytes.Equal(ra, rb) || (erra == nil) != (errb == nil) {
		t.Fatalf("%s: renders differ:\n%s\n--- want ---\n%s", what, rb, ra)
	}
	if a.Hash != b.Hash || !slices.Equal(a.Inputs, b.Inputs) {
		t.Fatalf("%s: hash/inputs differ: %s %v, want %s %v", what, b.Hash, b.Inputs, a.Hash, a.Inputs)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("%s: snapshots differ", what)
	}
}

// TestCacheEquivalence edits a configuration at random, step by step, and
// checks that a load with a warm cache returns exactly what a load without
// one does, while earlier snapshots stay unchanged (they are read
// concurrently, as a node serves them, to let -race see any write).
func TestCacheEquivalence(t *testing.T) {
	seeds := 6
	steps := 60
	if testing.Short() {
		seeds, steps = 2, 20
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { cacheScenario(t, uint64(seed), steps) })
	}
}

type scenario struct {
	t       *testing.T
	rng     *rand.Rand
	dir     string
	secrets string
	vars    map[string]string
	frags   map[string]bool
	clients int
	issuer  int
	role    string
	lenient bool
	exclude bool
}

var cacheFragments = map[string]string{
	"05-dup-key.yaml": "keys:\n  k1: {algorithm: ES256, private-key: dup}\n",
	"60-dup-client.yaml": `clients:
  c-001:
    profile: token
    secret: ${SECRET_1}
    grant-types: [client_credentials]
`,
	"61-bad-client.yaml": `clients:
  bad:
    profile: tokn
    grant-types: [authorization_code, bogus]
    redirect-uris: ["http://app.example.com/cb#x"]
    scopes: [a, a]
`,
	"62-invalid.yaml": "clients: [\n  x: {\n",
	"63-dotted.yaml": `clients:
  d:
    profile: token
    b: 1
    grant-types: [client_credentials]
    secret: ${SECRET_2}
  d.b:
    profile: token
  d.secret:
    profile: token
    grant-types: [authorization_code]
  d.secret:
    profile: token
`,
	"64-schema.yaml": "schema: 2\n",
	"65-other-role.yaml": `service-roles:
  other: {zone: local, profiles: [token2]}
profiles:
  token2:
    type: token
    path: /other
    issuer: ${OTHER_ISSUER}
    signing-keys: [k2]
    endpoints: [discovery, jwks, authorize]
clients:
  o1:
    profile: token2
    secret: ${OTHER_SECRET}
    grant-types: [client_credentials]
`,
	"66-filekey.yaml": "keys:\n  k2: {algorithm: ES256, private-key: \"${file:${KEYPATH}}\"}\n",
	"67-tagged.yaml": `clients:
  t1:
    profile: token
    tags: [under-test]
    grant-types: [authorization_code]
    redirect-uris: [https://t.example.com/cb]
  t2:
    profile: token
    enabled: false
`,
	"68-bad-placeholder.yaml": "clients:\n  p1: {profile: token, secret: \"${UNCLOSED\"}\n",
	"69-alias.yaml": `clients:
  a1: &x
    profile: token
    grant-types: [authorization_code]
    redirect-uris: [https://a.example.com/cb]
  a2: *x
`,
}

func (s *scenario) baseFile() string {
	return fmt.Sprintf(`schema: 1
service-roles:
  default: {zone: local, profiles: [token]}
zones:
  local: {data-source: db}
data-sources:
  db: {type: sqlite, path: /tmp/keygate-test.db}
keys:
  k1: {algorithm: ES256, private-key: "${file:%s/k1.pem}"}
profiles:
  token:
    type: token
    path: /oauth
    issuer: https://id%d.example.com/oauth
    signing-keys: [k1]
    endpoints: [discovery, jwks, token]
`, s.secrets, s.issuer)
}

func (s *scenario) clientsFile() string {
	var b strings.Builder
	b.WriteString("clients:\n")
	for i := range s.clients {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "  c-%03d:\n    profile: token\n    secret: ${SECRET_%d}\n    grant-types: [client_credentials]\n    access-tokens: {format: opaque}\n", i, i%5)
		case 1:
			fmt.Fprintf(&b, "  c-%03d:\n    profile: token\n    redirect-uris: [https://c%d.example.com/cb]\n    grant-types: [authorization_code, refresh_token]\n    scopes: [openid]\n", i, i)
		case 2:
			fmt.Fprintf(&b, "  c-%03d:\n    profile: token\n    secret: ${SECRET_%d:-short}\n    token-endpoint-auth-method: client_secret_post\n    grant-types: [client_credentials]\n", i, i%5)
		}
	}
	return b.String()
}

func (s *scenario) write(name, body string) {
	if err := os.WriteFile(filepath.Join(s.dir, name), []byte(body), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s *scenario) writeSecret(name, body string) {
	if err := os.WriteFile(filepath.Join(s.secrets, name), []byte(body), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

func (s *scenario) options(cache *Cache) Options {
	var env []string
	for k, v := range s.vars {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	o := Options{Dir: s.dir, Environ: env, EnvFiles: []string{filepath.Join(s.secrets, "vars.env")},
		Role: s.role, Lenient: s.lenient, Cache: cache}
	if s.exclude {
		o.ExcludeTags = []string{"under-test"}
	}
	return o
}

// edit makes one random change.
func (s *scenario) edit() {
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range cacheFragments {
			if !yield(k) {
				return
			}
		}
	})
	switch op := s.rng.IntN(12); op {
	case 0, 1: // toggle a fragment file
		name := names[s.rng.IntN(len(names))]
		if s.frags[name] {
			os.Remove(filepath.Join(s.dir, name))
		} else {
			s.write(name, cacheFragments[name])
		}
		s.frags[name] = !s.frags[name]
	case 2: // set, change or unset a variable
		name := []string{"SECRET_0", "SECRET_1", "SECRET_2", "SECRET_3", "SECRET_4", "KEYPATH", "OTHER_ISSUER", "OTHER_SECRET"}[s.rng.IntN(8)]
		switch s.rng.IntN(3) {
		case 0:
			delete(s.vars, name)
		case 1:
			s.vars[name] = fmt.Sprintf("value-%d-0123456789abcdef", s.rng.IntN(3))
		case 2:
			if name == "KEYPATH" {
				s.vars[name] = filepath.Join(s.secrets, []string{"k1.pem", "k2.pem", "none.pem"}[s.rng.IntN(3)])
			} else {
				s.vars[name] = "https://other.example.com/x"
			}
		}
	case 3: // rotate or remove a ${file:} target
		name := []string{"k1.pem", "k2.pem"}[s.rng.IntN(2)]
		if s.rng.IntN(4) == 0 {
			os.Remove(filepath.Join(s.secrets, name))
		} else {
			s.writeSecret(name, fmt.Sprintf("pem-%d\n", s.rng.IntN(4)))
		}
	case 4: // the env file
		s.writeSecret("vars.env", fmt.Sprintf("SECRET_3=envsecret-%d-0123456789abcdef\nSECRET_4=x%d\n", s.rng.IntN(3), s.rng.IntN(2)))
	case 5: // the small file everybody edits
		s.issuer = s.rng.IntN(4)
		s.write("00-base.yaml", s.baseFile())
	case 6: // the big file
		s.clients = 1 + s.rng.IntN(40)
		s.write("30-clients.yaml", s.clientsFile())
	case 7:
		s.role = []string{"default", "other", ""}[s.rng.IntN(3)]
	case 8:
		s.lenient = s.rng.IntN(4) == 0
	case 9:
		s.exclude = !s.exclude
	case 10: // break the base file, or restore it
		if s.rng.IntN(2) == 0 {
			s.write("00-base.yaml", strings.Replace(s.baseFile(), "type: sqlite", "type: sqlit", 1))
		} else {
			s.write("00-base.yaml", s.baseFile())
		}
	case 11: // move the clients to another name (file order changes)
		for _, n := range []string{"30-clients.yaml", "70-clients.yaml"} {
			os.Remove(filepath.Join(s.dir, n))
		}
		s.write([]string{"30-clients.yaml", "70-clients.yaml", "04-clients.yaml"}[s.rng.IntN(3)], s.clientsFile())
	}
}

func cacheScenario(t *testing.T, seed uint64, steps int) {
	s := &scenario{t: t, rng: rand.New(rand.NewPCG(seed, 42)), dir: t.TempDir(), secrets: t.TempDir(),
		vars:  map[string]string{"SECRET_0": "0123456789abcdef0", "SECRET_1": "0123456789abcdef1", "SECRET_2": "0123456789abcdef2"},
		frags: map[string]bool{}, clients: 12, role: "default"}
	s.writeSecret("k1.pem", "pem-0\n")
	s.writeSecret("k2.pem", "pem-1\n")
	s.writeSecret("vars.env", "SECRET_3=envsecret-0123456789abcdef\n")
	s.write("00-base.yaml", s.baseFile())
	s.write("30-clients.yaml", s.clientsFile())

	cache := NewCache()
	type served struct {
		snap   *Snapshot
		render []byte
	}
	var kept []served
	var stop = make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	// Readers of served snapshots, as request handlers are.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			ks := slices.Clone(kept)
			mu.Unlock()
			for _, k := range ks {
				for _, c := range k.snap.Clients {
					_ = c.TokenEndpointAuthMethod + c.Profile
				}
				for _, p := range k.snap.Profiles {
					_ = p.AccessTokens.Format
				}
			}
		}
	}()
	for step := range steps {
		if step > 0 {
			for range 1 + s.rng.IntN(3) {
				s.edit()
			}
		}
		want, wantErr := Load(s.options(nil))
		got, gotErr := Load(s.options(cache))
		sameLoad(t, fmt.Sprintf("seed %d step %d", seed, step), want, wantErr, got, gotErr)
		if got != nil {
			r, _ := Render(got)
			mu.Lock()
			kept = append(kept, served{got, r})
			mu.Unlock()
		}
	}
	close(stop)
	wg.Wait()
	for i, k := range kept {
		r, _ := Render(k.snap)
		if !bytes.Equal(r, k.render) {
			t.Fatalf("snapshot %d changed after later loads", i)
		}
	}
	if len(kept) == 0 {
		t.Logf("seed %d: no step loaded", seed)
	}
	// Files no longer present are dropped.
	cache.mu.Lock()
	defer cache.mu.Unlock()
	files, _ := ReadDir(s.dir)
	if len(cache.files) > len(files) {
		t.Fatalf("cache keeps %d files, the directory has %d", len(cache.files), len(files))
	}
}
