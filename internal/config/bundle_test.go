package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSnapshotFilesAndManifest(t *testing.T) {
	dir := writeDir(t, map[string]string{"a.yaml": base, "bundle.json": `{"version":"v7"}`, "notes.txt": "x"})
	snap, err := Load(Options{Dir: dir, Environ: []string{"KEY=x"}, Lenient: true})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(base))
	want := []FileHash{{Name: "a.yaml", SHA256: hex.EncodeToString(sum[:])}}
	if !slices.Equal(snap.Files, want) {
		t.Fatalf("Files = %v, want %v", snap.Files, want)
	}
	if string(snap.Manifest) != `{"version":"v7"}` || snap.BundleVersion != "v7" {
		t.Fatalf("manifest %q version %q", snap.Manifest, snap.BundleVersion)
	}
	// The manifest is part of the content hash, and Fingerprint agrees.
	fp, err := Fingerprint(dir, nil, snap)
	if err != nil || fp != snap.Hash {
		t.Fatalf("Fingerprint = %s, %v; want %s", fp, err, snap.Hash)
	}
	if err := os.WriteFile(filepath.Join(dir, "bundle.json"), []byte(`{"version":"v8"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if fp, _ := Fingerprint(dir, nil, snap); fp == snap.Hash {
		t.Fatal("a changed manifest must change the fingerprint")
	}
}

func TestVerifyHookRefusesBeforeParsing(t *testing.T) {
	dir := writeDir(t, map[string]string{"a.yaml": "{{{ not yaml", "bundle.json": `{}`})
	var got []string
	_, err := Load(Options{Dir: dir, Verify: func(files []File, manifest []byte) error {
		for _, f := range files {
			got = append(got, f.Name)
		}
		if string(manifest) != `{}` {
			t.Errorf("manifest %q", manifest)
		}
		return errors.New("bundle: signature does not verify")
	}})
	if err == nil || !strings.Contains(err.Error(), "signature does not verify") || strings.Contains(err.Error(), "invalid YAML") {
		t.Fatalf("err = %v", err)
	}
	if !slices.Equal(got, []string{"a.yaml"}) {
		t.Fatalf("files = %v", got)
	}
}

func TestRequiredVariables(t *testing.T) {
	other := `service-roles:
  edge: {zone: eu, profiles: [token]}
zones:
  eu: {data-source: eu-db}
data-sources:
  eu-db: {type: postgres, url: $EU_DATABASE_URL}
clients:
  c1: {profile: token, secret: "${C1_SECRET}", grant-types: [client_credentials], scopes: [a]}
  c2: {profile: token, secret: "${C2_SECRET:-0123456789abcdef0123}", grant-types: [client_credentials], scopes: [a]}
`
	dir := writeDir(t, map[string]string{"a.yaml": base, "b.yaml": other})
	for role, want := range map[string][]string{
		"default": {"C1_SECRET", "KEY"},
		"edge":    {"C1_SECRET", "EU_DATABASE_URL", "KEY"},
	} {
		got, err := RequiredVariables(Options{Dir: dir, Role: role, Environ: []string{"KEY=ignored"}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", role, got, want)
		}
	}
	broken := writeDir(t, map[string]string{"a.yaml": strings.Replace(base, "signing-keys: [k1]", "signing-keys: [k9]", 1)})
	if _, err := RequiredVariables(Options{Dir: broken}); err == nil || !strings.Contains(err.Error(), `"k9"`) {
		t.Fatalf("broken reference: %v", err)
	}
}
