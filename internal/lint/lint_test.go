package lint

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/config"
)

// base is a small valid configuration; each case adds or replaces files.
var base = map[string]string{
	"00-service.yaml": `schema: 1
service-roles:
  default: {zone: z, profiles: [token]}
zones:
  z: {data-source: db}
data-sources:
  db: {type: sqlite, path: ./x.db}
`,
	"20-keys.yaml": `keys:
  k1: {algorithm: ES256, private-key: "${file:$KEYFILE}"}
`,
	"30-profiles.yaml": `profiles:
  token:
    type: token
    path: /oauth
    issuer: $ISSUER
    signing-keys: [k1]
    endpoints: [discovery, jwks, token]
`,
	"40-clients.yaml": `clients:
  machine:
    profile: token
    secret: $MACHINE_SECRET
    grant-types: [client_credentials]
`,
}

func load(t *testing.T, files map[string]string, env ...string) *config.Written {
	t.Helper()
	dir := t.TempDir()
	all := map[string]string{}
	for k, v := range base {
		all[k] = v
	}
	for k, v := range files {
		all[k] = v
	}
	for name, text := range all {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keyFile, err := filepath.Abs("../../env/local-secrets/signing-2026.pem")
	if err != nil {
		t.Fatal(err)
	}
	environ := append([]string{"KEYFILE=" + keyFile, "ISSUER=https://id.example.com/oauth"}, env...)
	_, w, err := config.LoadWritten(config.Options{Dir: dir, Environ: environ, Lenient: true})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return w
}

func rsaKeyFile(t *testing.T, bits int) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "rsa.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// want is one finding expected: "path rule severity", with " silenced" when
// its entry silences it.
type lintCase struct {
	name  string
	stage string
	files map[string]string
	env   []string
	opts  func(*Options)
	want  []string // "path rule severity [silenced]"; nil: no finding of the rule
}

func TestRules(t *testing.T) {
	rsa2048 := rsaKeyFile(t, 2048)
	rsa3072 := rsaKeyFile(t, 3072)
	client := func(extra string) map[string]string {
		return map[string]string{"40-clients.yaml": "clients:\n  machine:\n    profile: token\n    grant-types: [client_credentials]\n" + extra}
	}
	profile := func(extra string) map[string]string {
		return map[string]string{"30-profiles.yaml": "profiles:\n  token:\n    type: token\n    path: /oauth\n    issuer: $ISSUER\n    signing-keys: [k1]\n    endpoints: [discovery, jwks, token]\n" + extra}
	}
	web := func(uri, extra string) map[string]string {
		return map[string]string{"40-clients.yaml": "clients:\n  web:\n    profile: token\n    secret: $S\n    redirect-uris: [\"" + uri + "\"]\n    grant-types: [authorization_code]\n    consent: true\n" + extra}
	}
	// authz serves authorize (which needs an authentication profile).
	authz := func(extra, clients string) map[string]string {
		m := map[string]string{
			"00-service.yaml": strings.Replace(base["00-service.yaml"], "[token]", "[token, authn]", 1),
			"30-profiles.yaml": strings.Replace(base["30-profiles.yaml"], "token]", "token, authorize]\n    authentication-profile: authn", 1) + extra +
				"  authn:\n    type: authentication\n    path: /authn\n    authenticators:\n      password: {type: password}\n",
		}
		if clients != "" {
			m["40-clients.yaml"] = clients
		}
		return m
	}
	cases := []lintCase{
		// literal-secret
		{name: "literal secret", files: client("    secret: literal-secret-value-123\n"),
			want: []string{"clients.machine.secret literal-secret error"}},
		{name: "literal secret silenced", files: client("    secret: literal-secret-value-123\n    lint-ignore: {literal-secret: \"test fixture\"}\n"),
			want: []string{"clients.machine.secret literal-secret error silenced"}},
		{name: "secret from variable", files: client("    secret: $S\n")},
		{name: "literal data source url", files: map[string]string{"10-ds.yaml": "data-sources:\n  pg: {type: postgres, url: \"postgres://u:p@db/x\"}\n"},
			want: []string{"data-sources.pg.url literal-secret error"}},
		// secret-default
		{name: "secret default", files: client("    secret: \"${S:-fallback-secret-value-123}\"\n"),
			want: []string{"clients.machine.secret secret-default error"}},
		{name: "secret default silenced", files: client("    secret: \"${S:-fallback-secret-value-123}\"\n    lint-ignore: {secret-default: \"demo only\"}\n"),
			want: []string{"clients.machine.secret secret-default error silenced"}},
		{name: "secret default unused name", files: client("    secret: \"${S}\"\n"), env: []string{"S=from-the-vault-0123456789"}},
		// http-url
		// The loader allows http only on localhost; outside a local stage
		// that is still wrong.
		{name: "http issuer", stage: "production", env: []string{"ISSUER=http://localhost:8080/oauth"},
			want: []string{"profiles.token.issuer http-url error"}},
		{name: "http issuer silenced", stage: "staging", env: []string{"ISSUER=http://localhost:8080/oauth"},
			files: profile("    lint-ignore: {http-url: \"TLS ends at the ingress\"}\n"),
			want:  []string{"profiles.token.issuer http-url error silenced"}},
		{name: "http issuer locally", stage: "local", env: []string{"ISSUER=http://localhost:8080/oauth"}},
		{name: "http issuer dev", stage: "dev", env: []string{"ISSUER=http://localhost:8080/oauth"}},
		// loopback-redirect
		{name: "private redirect", stage: "staging", files: web("https://10.1.2.3/cb", ""),
			want: []string{"clients.web.redirect-uris[0] loopback-redirect error"}},
		{name: "localhost redirect", stage: "staging", files: web("https://localhost/cb", ""),
			want: []string{"clients.web.redirect-uris[0] loopback-redirect error"}},
		{name: "ula redirect silenced", stage: "staging", files: web("https://[fd00::1]/cb", "    lint-ignore: {loopback-redirect: \"lab network\"}\n"),
			want: []string{"clients.web.redirect-uris[0] loopback-redirect error silenced"}},
		{name: "public redirect", stage: "staging", files: web("https://id.example.com/cb", "")},
		{name: "native app loopback", stage: "production",
			files: map[string]string{"40-clients.yaml": "clients:\n  web:\n    profile: token\n    redirect-uris: [\"http://127.0.0.1/cb\"]\n    grant-types: [authorization_code]\n    consent: true\n    loopback-redirect-any-port: true\n"},
			want:  []string{"clients.web.redirect-uris[0] http-url error"}},
		// excluded-tag
		{name: "under-test in production", stage: "production", files: client("    secret: $S\n    tags: [under-test]\n"),
			want: []string{"clients.machine.tags[0] excluded-tag error"}},
		{name: "under-test silenced", stage: "production", files: client("    secret: $S\n    tags: [under-test]\n    lint-ignore: {excluded-tag: \"smoke test client\"}\n"),
			want: []string{"clients.machine.tags[0] excluded-tag error silenced"}},
		{name: "under-test in staging", stage: "staging", files: client("    secret: $S\n    tags: [under-test]\n")},
		{name: "forbid-tags", stage: "staging", files: client("    secret: $S\n    tags: [beta]\n"),
			opts: func(o *Options) { o.ForbidTags = []string{"beta"} },
			want: []string{"clients.machine.tags[0] excluded-tag error"}},
		// unused-endpoint
		{name: "authorize without code clients", files: authz("", ""),
			want: []string{"profiles.token.endpoints[3] unused-endpoint warning"}},
		{name: "authorize silenced", files: authz("    lint-ignore: {unused-endpoint: \"first web client next sprint\"}\n", ""),
			want: []string{"profiles.token.endpoints[3] unused-endpoint warning silenced"}},
		{name: "authorize with a code client", files: authz("", web("https://app.example.com/cb", "")["40-clients.yaml"])},
		// unserved-profile
		{name: "unserved profile", files: map[string]string{"31-more.yaml": "profiles:\n  spare: {type: token, path: /spare, issuer: $ISSUER, signing-keys: [k1], endpoints: [jwks]}\n"},
			want: []string{"profiles.spare unserved-profile warning"}},
		{name: "unserved profile silenced", files: map[string]string{"31-more.yaml": "profiles:\n  spare: {type: token, path: /spare, issuer: $ISSUER, signing-keys: [k1], endpoints: [jwks], lint-ignore: {unserved-profile: \"for the next role\"}}\n"},
			want: []string{"profiles.spare unserved-profile warning silenced"}},
		// unused-key
		{name: "unused key", files: map[string]string{"21-keys.yaml": "keys:\n  k2: {algorithm: ES256, private-key: \"${file:$KEYFILE}\"}\n"},
			want: []string{"keys.k2 unused-key warning"}},
		{name: "unused key silenced", files: map[string]string{"21-keys.yaml": "keys:\n  k2: {algorithm: ES256, private-key: \"${file:$KEYFILE}\", lint-ignore: {unused-key: \"kept for the 2027 rotation\"}}\n"},
			want: []string{"keys.k2 unused-key warning silenced"}},
		// weak-rsa
		{name: "rsa 2048", files: map[string]string{"20-keys.yaml": "keys:\n  k1: {algorithm: RS256, private-key: \"${file:" + rsa2048 + "}\"}\n"},
			want: []string{"keys.k1.private-key weak-rsa warning"}},
		{name: "rsa 2048 silenced", files: map[string]string{"20-keys.yaml": "keys:\n  k1: {algorithm: RS256, private-key: \"${file:" + rsa2048 + "}\", lint-ignore: {weak-rsa: \"HSM limit\"}}\n"},
			want: []string{"keys.k1.private-key weak-rsa warning silenced"}},
		{name: "rsa 3072", files: map[string]string{"20-keys.yaml": "keys:\n  k1: {algorithm: RS256, private-key: \"${file:" + rsa3072 + "}\"}\n"}},
		{name: "rsa in the vault", files: map[string]string{"20-keys.yaml": "keys:\n  k1: {algorithm: RS256, private-key: \"${file:/nonexistent/vault/k.pem}\"}\n"}},
		// long-access-token
		{name: "long access tokens", files: profile("    access-tokens: {lifetime: 2h}\n"),
			want: []string{"profiles.token.access-tokens.lifetime long-access-token warning"}},
		{name: "long client access tokens silenced", files: client("    secret: $S\n    access-tokens: {lifetime: 24h}\n    lint-ignore: {long-access-token: \"batch job, opaque tokens\"}\n"),
			want: []string{"clients.machine.access-tokens.lifetime long-access-token warning silenced"}},
		{name: "one hour", files: profile("    access-tokens: {lifetime: 1h}\n")},
		// refresh-rotation-off
		{name: "rotation off", files: profile("    refresh-tokens: {rotate: false}\n"),
			want: []string{"profiles.token.refresh-tokens.rotate refresh-rotation-off warning"}},
		{name: "rotation off silenced", files: profile("    refresh-tokens: {rotate: false}\n    lint-ignore: {refresh-rotation-off: \"legacy SDK\"}\n"),
			want: []string{"profiles.token.refresh-tokens.rotate refresh-rotation-off warning silenced"}},
		{name: "rotation on", files: profile("    refresh-tokens: {rotate: true}\n")},
		// consent-off
		{name: "third-party without consent", files: map[string]string{"40-clients.yaml": strings.Replace(web("https://partner.example.net/cb", "")["40-clients.yaml"], "consent: true", "consent: false", 1)},
			want: []string{"clients.web.redirect-uris[0] consent-off warning"}},
		{name: "third-party silenced", files: map[string]string{"40-clients.yaml": strings.Replace(web("https://partner.example.net/cb", "    lint-ignore: {consent-off: \"our own app\"}\n")["40-clients.yaml"], "consent: true", "consent: false", 1)},
			want: []string{"clients.web.redirect-uris[0] consent-off warning silenced"}},
		{name: "third-party with consent", files: web("https://partner.example.net/cb", "")},
		// fapi-refresh-rotation
		{name: "fapi profile that rotates refresh tokens", files: map[string]string{
			"00-service.yaml": strings.Replace(base["00-service.yaml"], "[token]", "[token, authn]", 1),
			"30-profiles.yaml": strings.Replace(base["30-profiles.yaml"], "token]", "token, authorize, par]\n    authentication-profile: authn\n    security-profile: fapi-2.0", 1) +
				"  authn:\n    type: authentication\n    path: /authn\n    authenticators:\n      password: {type: password}\n",
			"40-clients.yaml": "clients:\n  bank:\n    profile: token\n    token-endpoint-auth-method: private_key_jwt\n    public-keys: [$PUB]\n" +
				"    redirect-uris: [\"https://bank.example.com/cb\"]\n    grant-types: [authorization_code, refresh_token]\n    consent: true\n"},
			env:  []string{"PUB=-----BEGIN PUBLIC KEY-----"},
			want: []string{"profiles.token.refresh-tokens.rotate fapi-refresh-rotation warning"}},
		{name: "fapi profile without rotation", files: map[string]string{
			"00-service.yaml": strings.Replace(base["00-service.yaml"], "[token]", "[token, authn]", 1),
			"30-profiles.yaml": strings.Replace(base["30-profiles.yaml"], "token]", "token, authorize, par]\n    authentication-profile: authn\n    security-profile: fapi-2.0\n    refresh-tokens: {rotate: false}", 1) +
				"  authn:\n    type: authentication\n    path: /authn\n    authenticators:\n      password: {type: password}\n",
			"40-clients.yaml": "clients:\n  bank:\n    profile: token\n    token-endpoint-auth-method: private_key_jwt\n    public-keys: [$PUB]\n" +
				"    redirect-uris: [\"https://bank.example.com/cb\"]\n    grant-types: [authorization_code, refresh_token]\n    consent: true\n"},
			env: []string{"PUB=-----BEGIN PUBLIC KEY-----"}},
		// unknown-rule
		{name: "misspelt rule", files: client("    secret: $S\n    lint-ignore: {unused-kye: \"typo\"}\n"),
			want: []string{"clients.machine.lint-ignore.unused-kye unknown-rule warning"}},
		{name: "misspelt rule silenced", files: client("    secret: $S\n    lint-ignore: {unused-kye: \"typo\", unknown-rule: \"kept for an older keygate\"}\n"),
			want: []string{"clients.machine.lint-ignore.unused-kye unknown-rule warning silenced"}},
		{name: "same host without consent", files: map[string]string{"40-clients.yaml": strings.Replace(web("https://id.example.com/app/cb", "")["40-clients.yaml"], "consent: true", "", 1)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := append([]string{"MACHINE_SECRET=vault-secret-0123456789"}, tc.env...)
			snap := load(t, tc.files, env...)
			opts := Options{Stage: tc.stage}
			if tc.opts != nil {
				tc.opts(&opts)
			}
			var got []string
			for _, f := range Check(snap, opts) {
				s := f.Path + " " + f.Rule + " " + string(f.Severity)
				if f.Silenced != "" {
					s += " silenced"
				}
				got = append(got, s)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestFindingLine(t *testing.T) {
	snap := load(t, map[string]string{"40-clients.yaml": "clients:\n  machine:\n    profile: token\n    secret: literal-secret-value-123\n    grant-types: [client_credentials]\n"})
	fs := Check(snap, Options{})
	want := "40-clients.yaml:4:13: clients.machine.secret: error [literal-secret]: a secret field holds a literal value; secrets belong in the vault (write $VAR or ${file:PATH})"
	if len(fs) != 1 || fs[0].String() != want {
		t.Fatalf("got %v, want %q", fs, want)
	}
	if !Failing(fs) {
		t.Error("an error finding must fail")
	}
	if strings.Contains(fs[0].String(), "literal-secret-value-123") {
		t.Error("a finding quotes the secret")
	}
}

func TestEmptyReasonIsAConfigError(t *testing.T) {
	dir := t.TempDir()
	for name, text := range base {
		os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600)
	}
	os.WriteFile(filepath.Join(dir, "21-keys.yaml"), []byte("keys:\n  k2: {algorithm: ES256, private-key: $K, lint-ignore: {unused-key: \"\"}}\n"), 0o600)
	_, err := config.Load(config.Options{Dir: dir, Lenient: true})
	if err == nil || !strings.Contains(err.Error(), "21-keys.yaml:2:69: keys.k2.lint-ignore.unused-key: a silenced lint rule needs a reason") {
		t.Fatalf("got %v", err)
	}
}

// The repository's example configuration is ready for every stage.
func TestExampleConfigClean(t *testing.T) {
	for _, tc := range []struct {
		envFile, stage string
		exclude        []string // the stage's KEYGATE_EXCLUDE_TAGS
	}{
		{"local.env", "local", nil},
		// Every other stage drops the demo page; production the under-test
		// clients too (the Kubernetes base and production overlay).
		{"staging.env", "staging", []string{"demo"}},
		{"production.env", "production", []string{"demo", "under-test"}},
	} {
		t.Run(tc.stage, func(t *testing.T) {
			roles, err := config.Roles(config.Options{Dir: "../../config.d"})
			if err != nil {
				t.Fatal(err)
			}
			for _, role := range roles {
				_, snap, err := config.LoadWritten(config.Options{Dir: "../../config.d", EnvFiles: []string{"../../env/" + tc.envFile},
					Role: role, ExcludeTags: tc.exclude, Lenient: true})
				if err != nil {
					t.Fatalf("role %s: %v", role, err)
				}
				fs := Check(snap, Options{Stage: tc.stage})
				for _, f := range fs {
					t.Logf("%s", f)
				}
				if Failing(fs) {
					t.Errorf("role %s: error-level findings", role)
				}
			}
		})
	}
}
