package config

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/internal/secret"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/render")

// renderSecrets are the secret values of testdata/render/config.d; none may
// appear in a render or a diff.
var renderSecrets = map[string]string{
	"DB_URL":             "postgres://keygate:pg-pass-Zx81@db.internal:5432/keygate?sslmode=verify-full",
	"SIGNING_KEY":        "-----BEGIN PRIVATE KEY-----\nsigning-key-body-Qm41\n-----END PRIVATE KEY-----",
	"IDP_SECRET":         "idp-client-secret-Hv27",
	"WEB_APP_SECRET":     "web-app-secret-0123456789-Kp50",
	"BILLING_API_SECRET": "billing-api-secret-0123456789-Lw93",
}

const renderFileSecret = "file-signing-key-body-Ty66"

// renderEnv is the environment of the representative config; overrides
// replace single variables ("WEB_APP_SECRET=other") or unset them
// ("WEB_APP_SECRET").
func renderEnv(t *testing.T, overrides ...string) []string {
	t.Helper()
	secrets := t.TempDir()
	must(t, os.WriteFile(filepath.Join(secrets, "signing-2027.pem"), []byte(renderFileSecret+"\n"), 0o600))
	env := []string{
		"PUBLIC_BASE_URL=https://id.example.com",
		"WEB_APP_REDIRECT_URI=https://app.example.com/callback",
		"REPORTS_PUBLIC_KEY=-----BEGIN PUBLIC KEY-----\nreports-public-key-body\n-----END PUBLIC KEY-----",
		"SECRETS_DIR=" + secrets,
	}
	for name, v := range renderSecrets {
		env = append(env, name+"="+v)
	}
	for _, o := range overrides {
		name, _, _ := strings.Cut(o, "=")
		env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, name+"=") })
		if strings.Contains(o, "=") {
			env = append(env, o)
		}
	}
	return env
}

func loadRepresentative(t *testing.T, opts Options) *Snapshot {
	t.Helper()
	opts.Dir = filepath.Join("testdata", "render", "config.d")
	snap, err := Load(opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return snap
}

func assertNoSecrets(t *testing.T, what, out string) {
	t.Helper()
	for name, v := range renderSecrets {
		if strings.Contains(out, v) {
			t.Errorf("%s leaks %s", what, name)
		}
	}
	for _, part := range []string{renderFileSecret, "pg-pass-Zx81", "signing-key-body-Qm41"} {
		if strings.Contains(out, part) {
			t.Errorf("%s leaks a secret (%s)", what, part)
		}
	}
}

func TestRenderGolden(t *testing.T) {
	snap := loadRepresentative(t, Options{Environ: renderEnv(t)})
	out, err := Render(snap)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "render", "representative.golden")
	if *update {
		must(t, os.WriteFile(golden, out, 0o644))
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestRenderGolden -update to create it)", err)
	}
	if !bytes.Equal(out, want) {
		t.Errorf("render differs from %s (rerun with -update if intended):\n%s", golden, out)
	}

	text := string(out)
	assertNoSecrets(t, "render", text)
	// Every secret field prints as <redacted>: the postgres URL, two keys,
	// the IdP client secret and two client secrets.
	if n := strings.Count(text, secret.Redacted); n != 6 {
		t.Errorf("%d <redacted> values, want 6", n)
	}
	for _, want := range []string{
		"rotate: false",                               // an explicit false is kept
		"max-connections: 10",                         // postgres default
		"format: opaque",                              // set
		"lifetime: 5m0s",                              // access-token and id-token defaults
		"absolute-lifetime: 12h0m0s",                  // session default next to a set idle-lifetime
		"token-endpoint-auth-method: private_key_jwt", // derived from public-keys
		"token-endpoint-auth-method: none",            // a public client
		"- \"true\"",                                  // strings YAML would retype stay strings
	} {
		if !strings.Contains(text, want) {
			t.Errorf("render lacks %q", want)
		}
	}
	for _, absent := range []string{"edge", "us-db", "token-external", "retired", "old-app", "enabled"} {
		if strings.Contains(text, absent) {
			t.Errorf("render has %q, which the default role does not use or which is disabled", absent)
		}
	}
}

// A render is a faithful config: with each <redacted> put back as a
// variable, it loads into a snapshot with no differences from the original,
// and renders the same again.
func TestRenderRoundTrip(t *testing.T) {
	for _, role := range []string{"default", "edge"} {
		t.Run(role, func(t *testing.T) {
			snap := loadRepresentative(t, Options{Environ: renderEnv(t), Role: role})
			out, err := Render(snap)
			if err != nil {
				t.Fatal(err)
			}
			var doc yaml.Node
			if err := yaml.Unmarshal(out, &doc); err != nil {
				t.Fatalf("render is not well-formed YAML: %v\n%s", err, out)
			}
			leaves := flatten(snap)
			var env []string
			var restore func(n *yaml.Node, path string)
			restore = func(n *yaml.Node, path string) {
				switch n.Kind {
				case yaml.DocumentNode:
					restore(n.Content[0], path)
				case yaml.MappingNode:
					for i := 0; i+1 < len(n.Content); i += 2 {
						restore(n.Content[i+1], join(path, n.Content[i].Value))
					}
				case yaml.SequenceNode:
					for i, item := range n.Content {
						restore(item, fmt.Sprintf("%s[%d]", path, i))
					}
				case yaml.ScalarNode:
					if n.Value != secret.Redacted {
						return
					}
					leaf, ok := leaves[path]
					if !ok || !leaf.secret {
						t.Fatalf("<redacted> at %s, which is not a secret of the snapshot", path)
					}
					name := fmt.Sprintf("REDACTED_%d", len(env))
					env = append(env, name+"="+leaf.text)
					n.Value = "$" + name
				}
			}
			restore(&doc, "")
			if len(env) == 0 {
				t.Fatal("no <redacted> values in the render")
			}
			again, err := yaml.Marshal(&doc)
			if err != nil {
				t.Fatal(err)
			}
			dir := writeDir(t, map[string]string{"rendered.yaml": string(again)})
			reloaded, err := Load(Options{Dir: dir, Environ: env, Role: role})
			if err != nil {
				t.Fatalf("the render does not load back: %v\n%s", err, again)
			}
			if d := Diff(snap, reloaded); len(d) != 0 {
				t.Errorf("reloaded render differs from the original: %+v", d)
			}
			out2, err := Render(reloaded)
			if err != nil || !bytes.Equal(out, out2) {
				t.Errorf("render of the reloaded render differs (err %v):\n%s", err, out2)
			}
		})
	}
}

func TestDiffSecrets(t *testing.T) {
	a := loadRepresentative(t, Options{Environ: renderEnv(t)})
	const otherSecret = "web-app-secret-ROTATED-000000"
	b := loadRepresentative(t, Options{Environ: renderEnv(t, "WEB_APP_SECRET="+otherSecret)})
	diffs := Diff(a, b)
	want := []Difference{{Path: "clients.web-app.secret", Before: secret.Redacted, After: secret.Redacted, Secret: true}}
	if !slices.Equal(diffs, want) {
		t.Fatalf("Diff = %+v, want %+v", diffs, want)
	}
	shown := fmt.Sprintf("%+v %#v", diffs, diffs)
	assertNoSecrets(t, "diff", shown)
	if strings.Contains(shown, otherSecret) {
		t.Errorf("diff leaks the new secret: %s", shown)
	}

	// A secret set in one stage only (a vault secret, Lenient) differs too,
	// still without its value.
	c := loadRepresentative(t, Options{Environ: renderEnv(t, "WEB_APP_SECRET"), Lenient: true})
	diffs = Diff(a, c)
	want = []Difference{{Path: "clients.web-app.secret", Before: secret.Redacted, Secret: true}}
	if !slices.Equal(diffs, want) {
		t.Fatalf("Diff with an unset secret = %+v, want %+v", diffs, want)
	}
}

func TestDiffNonSecret(t *testing.T) {
	a := loadRepresentative(t, Options{Environ: renderEnv(t)})
	b := loadRepresentative(t, Options{Environ: renderEnv(t, "PUBLIC_BASE_URL=https://id.staging.example.com")})
	want := []Difference{{
		Path:   "profiles.token.issuer",
		Before: `"https://id.example.com/oauth/v2"`,
		After:  `"https://id.staging.example.com/oauth/v2"`,
	}}
	if diffs := Diff(a, b); !slices.Equal(diffs, want) {
		t.Fatalf("Diff = %+v, want %+v", diffs, want)
	}
}

func TestDiffIdentical(t *testing.T) {
	a := loadRepresentative(t, Options{Environ: renderEnv(t)})
	b := loadRepresentative(t, Options{Environ: renderEnv(t)})
	if d := Diff(a, a); len(d) != 0 {
		t.Errorf("Diff(a, a) = %+v", d)
	}
	if d := Diff(a, b); len(d) != 0 {
		t.Errorf("two loads of the same inputs differ: %+v", d)
	}
}
