package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/testkit"
)

// The tests call run in-process. Flag defaults come from KEYGATE_*
// variables of the process environment (settings.Load), so each test
// unsets the ones that would change them.
func hermetic(t *testing.T) {
	t.Helper()
	for _, name := range []string{"KEYGATE_CONFIG_DIR", "KEYGATE_ENV_FILE", "KEYGATE_SERVICE_ROLE", "KEYGATE_EXCLUDE_TAGS"} {
		t.Setenv(name, "") // restored after the test
		os.Unsetenv(name)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, environ []string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, environ, &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

// signingKeyDir writes a fresh P-256 key as signing.pem (PKCS#8) into a
// temporary directory: testdata/valid reads it through ${file:}.
func signingKeyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := testkit.MustKey(t, "ES256").Write(filepath.Join(dir, "signing.pem")); err != nil {
		t.Fatal(err)
	}
	return dir
}

const xSecret = "x-client-secret-value-7781"

// validEnv resolves every variable of testdata/valid's default role.
func validEnv(t *testing.T) []string {
	return []string{
		"SECRETS_DIR=" + signingKeyDir(t),
		"PUBLIC_BASE_URL=https://id.example.com",
		"X_SECRET=" + xSecret,
	}
}

func TestValidate(t *testing.T) {
	hermetic(t)
	env := validEnv(t)
	tests := []struct {
		name     string
		args     []string
		environ  []string
		code     int
		stdout   string   // exact, when set
		stderr   []string // each must appear
		noStderr bool
	}{
		{
			name:     "valid",
			args:     []string{"config", "validate", "--dir", "testdata/valid"},
			environ:  env,
			code:     0,
			stdout:   "role default: valid\n",
			noStderr: true,
		},
		{
			name:     "valid, role given",
			args:     []string{"config", "validate", "--dir", "testdata/valid", "--role", "eu"},
			environ:  append(env, "EU_DATABASE_URL=postgres://keygate:pw@db.eu.example.com/keygate"),
			code:     0,
			stdout:   "role eu: valid\n",
			noStderr: true,
		},
		{
			name:    "all roles, one lacks a variable",
			args:    []string{"config", "validate", "--dir", "testdata/valid", "--all-roles"},
			environ: env,
			code:    1,
			stdout:  "role default: valid\n",
			stderr: []string{
				"role eu: invalid\n",
				"00-config.yaml:11:32: data-sources.eu-db.url: variable EU_DATABASE_URL is not set",
			},
		},
		{
			name:     "all roles, every variable set",
			args:     []string{"config", "validate", "--dir", "testdata/valid", "--all-roles"},
			environ:  append(env, "EU_DATABASE_URL=postgres://keygate:pw@db.eu.example.com/keygate"),
			code:     0,
			stdout:   "role default: valid\nrole eu: valid\n",
			noStderr: true,
		},
		{
			name:    "undefined role",
			args:    []string{"config", "validate", "--dir", "testdata/valid", "--role", "mars"},
			environ: env,
			code:    1,
			stderr:  []string{"role mars: invalid\n", `service-roles: service role "mars" is not defined (defined: default, eu)`},
		},
		{
			name:    "the key file is missing",
			args:    []string{"config", "validate", "--dir", "testdata/valid"},
			environ: append(env, "SECRETS_DIR="+t.TempDir()),
			code:    1,
			stderr:  []string{"00-config.yaml:13:44: keys.signing.private-key: read ${file:"},
		},
		{
			name:    "missing config directory",
			args:    []string{"config", "validate", "--dir", "testdata/nope"},
			environ: env,
			code:    1,
			stderr:  []string{"role default: invalid\n", "testdata/nope: read config directory:"},
		},
		{
			name:   "unknown flag",
			args:   []string{"config", "validate", "--dir", "testdata/valid", "--bogus"},
			code:   2,
			stdout: "",
			stderr: []string{"flag provided but not defined: -bogus", "Run 'keygate help' for usage."},
		},
		{
			name:   "--all-roles is for validate only",
			args:   []string{"config", "render", "--dir", "testdata/valid", "--all-roles"},
			code:   2,
			stderr: []string{"flag provided but not defined: -all-roles"},
		},
		{
			name:   "stray argument",
			args:   []string{"config", "validate", "--dir", "testdata/valid", "extra"},
			code:   2,
			stderr: []string{`config validate: unexpected argument "extra"`},
		},
		{
			name:   "unknown config subcommand",
			args:   []string{"config", "frobnicate"},
			code:   2,
			stderr: []string{`config: unknown subcommand "frobnicate" (want validate, render, diff or lint)`},
		},
		{
			name:   "config without subcommand",
			args:   []string{"config"},
			code:   2,
			stderr: []string{"config: want validate, render, diff or lint"},
		},
		{
			name:   "unknown command",
			args:   []string{"frobnicate"},
			code:   2,
			stderr: []string{`unknown command "frobnicate"`},
		},
		{
			name:   "no command",
			args:   nil,
			code:   2,
			stderr: []string{"Usage:"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.environ, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			if (tc.stdout != "" || tc.code != 0) && r.stdout != tc.stdout {
				t.Errorf("stdout:\n%q\nwant:\n%q", r.stdout, tc.stdout)
			}
			for _, want := range tc.stderr {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
				}
			}
			if tc.noStderr && r.stderr != "" {
				t.Errorf("stderr:\n%s", r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, xSecret) {
				t.Errorf("output leaks the client secret")
			}
		})
	}
}

// Every error of an invalid config, each as file:line:col: path: message.
func TestValidateInvalid(t *testing.T) {
	hermetic(t)
	r := runCLI(t, []string{"X_SECRET=" + xSecret}, "config", "validate", "--dir", "testdata/invalid")
	if r.code != 1 || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q; want 1 and nothing", r.code, r.stdout)
	}
	want := []string{
		`role default: invalid`,
		`00-config.yaml:9:24: keys.signing.algorithm: "ES265" is not one of ES256, RS256, EdDSA (did you mean "ES256"?)`,
		`00-config.yaml:9:44: keys.signing.private-key: variable SIGNING_KEY is not set (set it in the environment or an env file, or write ${SIGNING_KEY:-default})`,
		`00-config.yaml:14:13: profiles.token.issuer: must use https (http is allowed for localhost only), got "http://id.example.com/oauth/v2"`,
		`10-clients.yaml:6:5: clients.x.redirect-uri: unknown key "redirect-uri" (did you mean "redirect-uris"?)`,
		`10-clients.yaml:8:14: clients.y.profile: refers to profile "tokn", which is not defined (did you mean "token"?)`,
		`20-more-clients.yaml:2:3: clients.x: already defined at 10-clients.yaml:2`,
	}
	got := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stderr:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	line := regexp.MustCompile(`^[\w.-]+\.ya?ml:\d+:\d+: [\w.\[\]-]+: \S.*$`)
	for _, l := range got[1:] {
		if !line.MatchString(l) {
			t.Errorf("not file:line:col: path: message: %q", l)
		}
	}
}

func TestRender(t *testing.T) {
	hermetic(t)
	r := runCLI(t, validEnv(t), "config", "render", "--dir", "testdata/valid")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		"schema: 1\n",
		"    issuer: https://id.example.com/oauth/v2\n",
		"    private-key: <redacted>\n",
		"    secret: <redacted>\n",
		"    path: ./data/keygate.db\n",
		"      rotate: true\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("render lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout+r.stderr, xSecret) || strings.Contains(r.stdout, "PRIVATE KEY") {
		t.Errorf("render leaks a secret:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, "eu-db") {
		t.Errorf("render of the default role shows the eu data source:\n%s", r.stdout)
	}

	// An invalid config renders nothing and exits 1 with its errors.
	r = runCLI(t, []string{"X_SECRET=" + xSecret}, "config", "render", "--dir", "testdata/invalid")
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "keys.signing.algorithm") {
		t.Errorf("render of an invalid config: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, xSecret) {
		t.Errorf("render errors leak the client secret")
	}
}

func TestDiff(t *testing.T) {
	hermetic(t)
	const (
		staging    = "testdata/stages/staging.env"
		production = "testdata/stages/production.env"
	)
	// The caller's environment is ignored: each stage resolves from its
	// env file alone, so this must not hide the issuer difference.
	environ := []string{"PUBLIC_BASE_URL=https://ignored.example.com", "X_SECRET=ignored-secret-value-000"}

	r := runCLI(t, environ, "config", "diff", "--dir", "testdata/valid", "--env-file", staging, "--env-file", production)
	want := "--- " + staging + "\n+++ " + production + "\n" +
		"~ clients.x.secret: differs (secret)\n" +
		`~ profiles.token.issuer: "https://id.staging.example.com/oauth/v2" → "https://id.example.com/oauth/v2"` + "\n" +
		"2 differences\n"
	if r.code != 1 || r.stdout != want || r.stderr != "" {
		t.Errorf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", r.code, r.stdout, want, r.stderr)
	}
	for _, s := range []string{"staging-x-secret-value-0001", "production-x-secret-value-0002", "ignored"} {
		if strings.Contains(r.stdout+r.stderr, s) {
			t.Errorf("diff output contains %q", s)
		}
	}

	// The env files may also be given comma-separated.
	r2 := runCLI(t, nil, "config", "diff", "--dir", "testdata/valid", "--env-file", staging+","+production)
	if r2 != r {
		t.Errorf("comma-separated env files: %+v, want %+v", r2, r)
	}

	for _, tc := range []struct {
		name string
		a, b string
	}{
		{"identical files", staging, "testdata/stages/staging-copy.env"},
		{"the same file twice", production, production},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, nil, "config", "diff", "--dir", "testdata/valid", "--env-file", tc.a, "--env-file", tc.b)
			want := "--- " + tc.a + "\n+++ " + tc.b + "\nno differences\n"
			if r.code != 0 || r.stdout != want || r.stderr != "" {
				t.Errorf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", r.code, r.stdout, want, r.stderr)
			}
		})
	}

	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"one env file", []string{"--env-file", staging}, "give exactly two --env-file flags"},
		{"three env files", []string{"--env-file", staging, "--env-file", production, "--env-file", staging}, "give exactly two --env-file flags"},
		{"no env file", nil, "give exactly two --env-file flags"},
		{"an env file is missing", []string{"--env-file", staging, "--env-file", "testdata/stages/nope.env"}, "testdata/stages/nope.env"},
		{"a stage cannot load", []string{"--dir", "testdata/invalid", "--env-file", staging, "--env-file", production}, "keys.signing.algorithm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"config", "diff", "--dir", "testdata/valid"}, tc.args...)
			r := runCLI(t, nil, args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("exit %d (want 2), stderr:\n%s\nwant it to contain %q", r.code, r.stderr, tc.stderr)
			}
			if strings.Contains(r.stdout, "differences") {
				t.Errorf("a diff that could not compare printed a result:\n%s", r.stdout)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		r := runCLI(t, nil, arg)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "keygate "+version+"\n") || !strings.Contains(r.stdout, "config schema: 1") || r.stderr != "" {
			t.Errorf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", arg, r.code, r.stdout, r.stderr)
		}
	}
}

// The example configuration of the repository must stay valid with
// env/local.env, and its stages must diff.
func TestRepositoryExample(t *testing.T) {
	hermetic(t)
	t.Run("validate from the package directory", func(t *testing.T) {
		// local.env's SECRETS_DIR is relative to the repository root, where
		// developers run keygate; the process environment wins over it.
		r := runCLI(t, []string{"SECRETS_DIR=../../env/local-secrets"},
			"config", "validate", "--dir", "../../config.d", "--env-file", "../../env/local.env")
		if r.code != 0 || r.stdout != "role default: valid\n" || r.stderr != "" {
			t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("validate and render from the repository root", func(t *testing.T) {
		t.Chdir("../..")
		r := runCLI(t, nil, "config", "validate", "--dir", "config.d", "--env-file", "env/local.env")
		if r.code != 0 || r.stdout != "role default: valid\n" || r.stderr != "" {
			t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		r = runCLI(t, nil, "config", "render", "--dir", "config.d", "--env-file", "env/local.env")
		if r.code != 0 || !strings.Contains(r.stdout, "private-key: <redacted>") ||
			strings.Contains(r.stdout, "local-web-app-secret") || strings.Contains(r.stdout, "BEGIN") {
			t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("diff staging and production", func(t *testing.T) {
		const staging, production = "../../env/staging.env", "../../env/production.env"
		r := runCLI(t, nil, "config", "diff", "--dir", "../../config.d", "--env-file", staging, "--env-file", production)
		if r.code != 1 || r.stderr != "" {
			t.Fatalf("exit %d (want 1: the stages differ)\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		for _, want := range []string{
			"--- " + staging + "\n+++ " + production + "\n",
			`~ profiles.token.issuer: "https://id.staging.example.com/oauth/v2" → "https://id.example.com/oauth/v2"` + "\n",
			`~ clients.web-app.redirect-uris[0]: "https://app.staging.example.com/callback" → "https://app.example.com/callback"` + "\n",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
			}
		}
	})
}

// Without the stage's variables, validate reports the missing variables
// and every error that does not depend on them, all at once: a dangling
// reference beside a placeholder secret is not hidden.
func TestValidateWithoutStageVariablesReportsEverything(t *testing.T) {
	dir := t.TempDir()
	entries, err := os.ReadDir("../../config.d")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("../../config.d", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "40-clients.yaml" {
			data = append(data, "  orphan:\n    profile: no-such-profile\n    secret: $ORPHAN_SECRET\n    grant-types: [client_credentials]\n"...)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := runCLI(t, nil, "config", "validate", "--dir", dir)
	if r.code != 1 {
		t.Fatalf("validate: %+v", r)
	}
	for _, want := range []string{
		"clients.web-app.secret: variable WEB_APP_SECRET is not set",
		`clients.orphan.profile: refers to profile "no-such-profile", which is not defined`,
	} {
		if !strings.Contains(r.stdout+r.stderr, want) {
			t.Errorf("validate output lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
}
