package testkit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/bundle"
)

// Key is a freshly generated private key and its PKCS#8 PEM, the form a
// keys entry's private-key takes.
type Key struct {
	Alg    string // ES256, RS256 or EdDSA, as config names it
	Signer crypto.Signer
	PEM    []byte
}

// NewKey generates a key for alg: P-256 for ES256, RSA 2048 for RS256,
// Ed25519 for EdDSA.
func NewKey(alg string) (Key, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return Key{}, fmt.Errorf("testkit: no key for algorithm %q", alg)
	}
	if err != nil {
		return Key{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return Key{}, err
	}
	return Key{Alg: alg, Signer: priv, PEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}, nil
}

// MustKey is NewKey for tests.
func MustKey(tb testing.TB, alg string) Key {
	tb.Helper()
	k, err := NewKey(alg)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// Write writes the key's PEM to path, readable by its owner only.
func (k Key) Write(path string) error { return os.WriteFile(path, k.PEM, 0o600) }

// PublicPEM is the key's public half as a PKIX PEM (a client's
// public-keys entry).
func (k Key) PublicPEM() string {
	der, err := x509.MarshalPKIXPublicKey(k.Signer.Public())
	if err != nil {
		panic(err) // every key NewKey makes has a PKIX form
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// KeyAlg is the algorithm the kit's configs give a key by its name: EdDSA
// when the name contains "ed", else ES256, so a test names its keys and
// the configs follow.
func KeyAlg(name string) string {
	if strings.Contains(name, "ed") {
		return "EdDSA"
	}
	return "ES256"
}

// KeyFile writes a fresh key of KeyAlg(name) to dir/name.pem and returns
// the path.
func KeyFile(tb testing.TB, dir, name string) string {
	tb.Helper()
	path := filepath.Join(dir, name+".pem")
	if err := MustKey(tb, KeyAlg(name)).Write(path); err != nil {
		tb.Fatal(err)
	}
	return path
}

// KeyRef is a keys entry whose private key is read from a file.
type KeyRef struct{ Name, Alg, File string }

// KeysSection is the keys section of a config file, one entry per ref,
// each reading its PEM through ${file:}.
func KeysSection(refs ...KeyRef) string {
	var b strings.Builder
	b.WriteString("keys:\n")
	for _, r := range refs {
		fmt.Fprintf(&b, "  %s: {algorithm: %s, private-key: \"${file:%s}\"}\n", r.Name, r.Alg, r.File)
	}
	return b.String()
}

// KeysConfig is KeysSection for name → file, each of KeyAlg(name), in name
// order, so equal input gives equal bytes (and an equal content hash).
func KeysConfig(keys map[string]string) string {
	refs := make([]KeyRef, 0, len(keys))
	for name, file := range keys {
		refs = append(refs, KeyRef{Name: name, Alg: KeyAlg(name), File: file})
	}
	slices.SortFunc(refs, func(a, b KeyRef) int { return strings.Compare(a.Name, b.Name) })
	return KeysSection(refs...)
}

// BundleKeys writes a fresh Ed25519 bundle signing key pair to dir
// (sign.pem, the admin's; verify.pem, the runtime nodes') and returns
// their paths and the private key (to sign a bundle by hand).
func BundleKeys(tb testing.TB, dir string) (signFile, verifyFile string, key ed25519.PrivateKey) {
	tb.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	priv, pub, err := bundle.MarshalKeys(key)
	if err != nil {
		tb.Fatal(err)
	}
	signFile, verifyFile = filepath.Join(dir, "sign.pem"), filepath.Join(dir, "verify.pem")
	if err := os.WriteFile(signFile, priv, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(verifyFile, pub, 0o644); err != nil {
		tb.Fatal(err)
	}
	return signFile, verifyFile, key
}
