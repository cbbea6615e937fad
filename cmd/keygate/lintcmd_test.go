package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigLint(t *testing.T) {
	hermetic(t)
	// A copy of the example config with a literal secret: an error.
	bad := t.TempDir()
	names, err := filepath.Glob("../../config.d/*.yaml")
	if err != nil || len(names) == 0 {
		t.Fatalf("the example config: %v", err)
	}
	for _, path := range names {
		name := filepath.Base(path)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if name == "40-clients.yaml" {
			data = []byte(strings.Replace(string(data), "secret: $BILLING_API_SECRET", "secret: written-in-the-file-0123", 1))
		}
		if err := os.WriteFile(filepath.Join(bad, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stageFile := filepath.Join(t.TempDir(), "prod.env")
	prod, err := os.ReadFile("../../env/production.env")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stageFile, append(prod, "KEYGATE_STAGE=production\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		setenv string // KEYGATE_EXCLUDE_TAGS (settings come from the process environment)
		code   int
		stdout []string // each must appear
		stderr []string
	}{
		{name: "local example clean", args: []string{"--dir", "../../config.d", "--env-file", "../../env/local.env"}, code: 0},
		{name: "staging, all roles", args: []string{"--dir", "../../config.d", "--env-file", "../../env/staging.env", "--stage", "staging", "--all-roles"},
			setenv: "demo", code: 0, stdout: []string{"warning [consent-off]", "(silenced: first-party app"}},
		{name: "staging with the demo page", args: []string{"--dir", "../../config.d", "--env-file", "../../env/staging.env", "--stage", "staging"}, code: 1,
			stdout: []string{"profiles.demo.tags[0]: error [excluded-tag]", "clients.demo-app.tags[0]: error [excluded-tag]: tag \"demo\" must not reach stage staging"}},
		{name: "production without the exclusion", args: []string{"--dir", "../../config.d", "--env-file", "../../env/production.env", "--stage", "production"}, code: 1,
			stdout: []string{"40-clients.yaml:29:12: clients.billing-api.tags[0]: error [excluded-tag]"}},
		{name: "stage from the env file", args: []string{"--dir", "../../config.d", "--env-file", stageFile}, code: 1,
			stdout: []string{"error [excluded-tag]: tag \"under-test\" must not reach stage production"}},
		{name: "production with the exclusion", args: []string{"--dir", "../../config.d", "--env-file", "../../env/production.env", "--stage", "production"},
			setenv: "demo,under-test", code: 0},
		{name: "no forbidden tags", args: []string{"--dir", "../../config.d", "--env-file", "../../env/production.env", "--stage", "production", "--forbid-tags", ""},
			setenv: "demo", code: 0},
		{name: "literal secret", args: []string{"--dir", bad, "--env-file", "../../env/local.env"}, code: 1,
			stdout: []string{"40-clients.yaml:25:13: clients.billing-api.secret: error [literal-secret]: a secret field holds a literal value"}},
		{name: "unknown flag", args: []string{"--nope"}, code: 2},
		{name: "extra argument", args: []string{"--dir", "../../config.d", "x"}, code: 2},
		{name: "missing env file", args: []string{"--dir", "../../config.d", "--env-file", "/nonexistent/x.env"}, code: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setenv != "" {
				t.Setenv("KEYGATE_EXCLUDE_TAGS", tc.setenv)
			}
			r := runCLI(t, nil, append([]string{"config", "lint"}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
				}
			}
			if strings.Contains(r.stdout, "written-in-the-file-0123") {
				t.Error("a finding quotes a secret")
			}
		})
	}
}
