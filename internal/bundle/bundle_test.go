package bundle

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/config"
)

const cfg = `schema: 1
service-roles:
  default: {zone: local, profiles: [token]}
  edge: {zone: eu, profiles: [token]}
zones:
  local: {data-source: db}
  eu: {data-source: eu-db}
data-sources:
  db: {type: sqlite, path: "${DATA_DIR:-.}/k.db"}
  eu-db: {type: postgres, url: $EU_DATABASE_URL}
profiles:
  token:
    type: token
    path: /oauth
    issuer: $ISSUER
    signing-keys: [k1]
    endpoints: [discovery, jwks]
keys:
  k1: {algorithm: EdDSA, private-key: "${file:${SECRETS_DIR}/k1.pem}"}
`

func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func signed(t *testing.T, dir string, priv ed25519.PrivateKey) *Bundle {
	t.Helper()
	b, err := Build(dir, Meta{Version: "v3", Author: "ci", Message: "m", Now: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Sign(priv); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuildDescribesTheBundle(t *testing.T) {
	dir := writeDir(t, map[string]string{"b.yaml": cfg, "a.yaml": "# empty\n"})
	b := signed(t, dir, newKey(t))
	m := b.Manifest
	if m.Version != "v3" || m.Schema != 1 || m.CreatedAt != "2026-11-23T00:00:00Z" || m.Author != "ci" {
		t.Fatalf("manifest %+v", m)
	}
	if len(m.Files) != 2 || m.Files[0].Name != "a.yaml" || m.Files[1].Name != "b.yaml" {
		t.Fatalf("files %+v", m.Files)
	}
	want := map[string][]string{
		"default": {"ISSUER", "SECRETS_DIR"},
		"edge":    {"EU_DATABASE_URL", "ISSUER", "SECRETS_DIR"},
	}
	for role, names := range want {
		if !slices.Equal(m.Variables[role], names) {
			t.Errorf("variables[%s] = %v, want %v", role, m.Variables[role], names)
		}
	}
}

func TestBuildReportsEveryErrorOnce(t *testing.T) {
	broken := strings.Replace(cfg, "signing-keys: [k1]", "signing-keys: [k9]", 1) + "clients:\n  c: {profile: nope}\n"
	_, err := Build(writeDir(t, map[string]string{"a.yaml": broken}), Meta{}, nil)
	if err == nil {
		t.Fatal("want errors")
	}
	msg := err.Error()
	if strings.Count(msg, `"k9"`) != 1 || !strings.Contains(msg, `"nope"`) {
		t.Fatalf("errors:\n%s", msg)
	}
}

func TestSignVerify(t *testing.T) {
	priv := newKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	dir := writeDir(t, map[string]string{"a.yaml": cfg})
	b := signed(t, dir, priv)
	verify := Verifier(pub)

	// Round trip through the file form.
	if err := verify(b.Files, b.Manifest.JSON()); err != nil {
		t.Fatalf("valid bundle refused: %v", err)
	}
	other := newKey(t)
	if err := Verifier(other.Public().(ed25519.PublicKey))(b.Files, b.Manifest.JSON()); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "trusts key") {
		t.Fatalf("other key: %v", err)
	}

	t.Run("tampered byte", func(t *testing.T) {
		files := slices.Clone(b.Files)
		data := slices.Clone(files[0].Data)
		data[10] ^= 1
		files[0].Data = data
		if err := verify(files, b.Manifest.JSON()); !errors.Is(err, ErrTampered) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("extra file", func(t *testing.T) {
		files := append(slices.Clone(b.Files), config.File{Name: "z.yaml", Data: []byte("x: 1")})
		if err := verify(files, b.Manifest.JSON()); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "z.yaml is not in the manifest") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		if err := verify(nil, b.Manifest.JSON()); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "missing") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("tampered manifest", func(t *testing.T) {
		m := b.Manifest
		m.Author = "mallory"
		if err := verify(b.Files, m.JSON()); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		if err := verify(b.Files, nil); !errors.Is(err, ErrUnsigned) {
			t.Fatalf("no manifest: %v", err)
		}
		m := b.Manifest
		m.Signature = ""
		if err := verify(b.Files, m.JSON()); !errors.Is(err, ErrUnsigned) {
			t.Fatalf("no signature: %v", err)
		}
	})
	t.Run("schema too new", func(t *testing.T) {
		nb := *b
		nb.Manifest.Schema = config.SchemaVersion + 1
		if err := nb.Sign(priv); err != nil {
			t.Fatal(err)
		}
		err := verify(nb.Files, nb.Manifest.JSON())
		if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "upgrade this node") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unknown field", func(t *testing.T) {
		data := strings.Replace(string(b.Manifest.JSON()), `"format": 1,`, `"format": 1, "extra": true,`, 1)
		if err := verify(b.Files, []byte(data)); err == nil || !strings.Contains(err.Error(), "extra") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestLoadWithVerifier(t *testing.T) {
	priv := newKey(t)
	dir := writeDir(t, map[string]string{"a.yaml": "schema: 1\nservice-roles:\n  default: {zone: z, profiles: [authn]}\nzones:\n  z: {data-source: d}\ndata-sources:\n  d: {type: sqlite, path: x.db}\nprofiles:\n  authn: {type: authentication, path: /authn, authenticators: {password: {type: password}}}\n"})
	b, err := Build(dir, Meta{Version: "v1"}, nil)
	if err == nil {
		err = b.Sign(priv)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, config.ManifestName), b.Manifest.JSON(), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := config.Options{Dir: dir, Verify: Verifier(priv.Public().(ed25519.PublicKey))}
	snap, err := config.Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	if snap.BundleVersion != "v1" {
		t.Fatalf("version %q", snap.BundleVersion)
	}
	rb, err := Read(dir)
	if err != nil || rb.Verify(priv.Public().(ed25519.PublicKey)) != nil || rb.Manifest.Version != "v1" {
		t.Fatalf("Read: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("# added\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(opts); err == nil || !strings.Contains(err.Error(), "b.yaml is not in the manifest") {
		t.Fatalf("extra file loaded: %v", err)
	}
}

func TestKeysPEM(t *testing.T) {
	priv := newKey(t)
	privPEM, pubPEM, err := MarshalKeys(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := writeDir(t, map[string]string{"k": string(privPEM), "p": string(pubPEM)})
	p2, err := LoadPrivateKey(filepath.Join(dir, "k"))
	if err != nil || !p2.Equal(priv) {
		t.Fatalf("private: %v", err)
	}
	pub, err := LoadPublicKey(filepath.Join(dir, "p"))
	if err != nil || !pub.Equal(priv.Public()) {
		t.Fatalf("public: %v", err)
	}
	if _, err := LoadPublicKey(filepath.Join(dir, "k")); err == nil || strings.Contains(err.Error(), "BEGIN") {
		t.Fatalf("private key as public: %v", err)
	}
}
