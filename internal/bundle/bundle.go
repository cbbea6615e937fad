// Package bundle builds, signs, reads and verifies config bundles.
//
// A bundle is a config.d directory as authored (placeholders unresolved: each
// runtime node resolves them with its own environment and secrets) plus a
// manifest, bundle.json, beside the YAML files. The manifest is JSON, not
// YAML, so the config loader never reads it as configuration:
//
//	{
//	  "format": 1,
//	  "version": "v12",                      // assigned by the admin node, v1, v2, … increasing
//	  "content_hash": "…",                   // see ContentHash
//	  "files": [{"name": "00-service.yaml", "sha256": "…"}, …],   // lexical order
//	  "schema": 1,                           // the config schema the files declare
//	  "created_at": "2026-11-23T18:00:00Z",
//	  "author": "ci@example.com", "message": "rotate keys",
//	  "variables": {"default": ["WEB_APP_SECRET", …], "eu-edge": […]},
//	  "key_id": "…",                         // first 16 hex digits of SHA-256(public key)
//	  "signature": "…"                       // base64 Ed25519
//	}
//
// The signature is Ed25519 over the canonical manifest: the manifest without
// its signature field, encoded by encoding/json from the Manifest struct
// (fixed field order, sorted map keys, no insignificant white space). A
// verifier decodes bundle.json strictly (unknown fields are refused),
// re-encodes it the same way and checks the signature over those bytes, so
// the file itself may be indented.
//
// "variables" lists, per service role, the placeholders the entries of that
// role need without a default (config.RequiredVariables): what each stage's
// env files and secrets must provide.
package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/readfile"
)

// Format is the manifest format version this package writes and reads.
const Format = 1

// Manifest describes a bundle; it is written as bundle.json.
type Manifest struct {
	Format      int                 `json:"format"`
	Version     string              `json:"version"`
	ContentHash string              `json:"content_hash"`
	Files       []config.FileHash   `json:"files"`
	Schema      int                 `json:"schema"`
	CreatedAt   string              `json:"created_at"`
	Author      string              `json:"author,omitempty"`
	Message     string              `json:"message,omitempty"`
	Variables   map[string][]string `json:"variables"`
	KeyID       string              `json:"key_id,omitempty"`
	Signature   string              `json:"signature,omitempty"`
}

// Bundle is a manifest and the files it describes.
type Bundle struct {
	Manifest Manifest
	Files    []config.File // lexical order; Name and Data are used
}

// Meta is what the publisher says about a bundle.
type Meta struct {
	Version string
	Author  string
	Message string
	Now     time.Time // zero: time.Now()
}

// ContentHash is the hex SHA-256 over every file, in lexical order of name,
// each as name, NUL, decimal length, NUL, bytes.
func ContentHash(files []config.File) string {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b config.File) int { return strings.Compare(a.Name, b.Name) })
	h := sha256.New()
	for _, f := range sorted {
		h.Write([]byte(f.Name))
		h.Write([]byte{0})
		h.Write([]byte(strconv.Itoa(len(f.Data))))
		h.Write([]byte{0})
		h.Write(f.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func fileHashes(files []config.File) []config.FileHash {
	out := make([]config.FileHash, 0, len(files))
	for _, f := range files {
		sum := sha256.Sum256(f.Data)
		out = append(out, config.FileHash{Name: f.Name, SHA256: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(out, func(a, b config.FileHash) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Build reads the config directory dir as authored and describes it: file
// hashes, schema, and every service role's required variables. The
// configuration must load for every role (structure, references, schema)
// with its variables unset (Lenient); every error of every role is returned
// at once, each once. ${file:} targets are never read (they are the
// runtime nodes' secrets), and one whose path is known must lie inside
// fileDirs when that is set. Build does not sign.
func Build(dir string, meta Meta, fileDirs []string) (*Bundle, error) {
	files, err := config.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no *.yaml or *.yml files", dir)
	}
	roles, err := config.Roles(config.Options{Dir: dir, Lenient: true, NoFileReads: true, FileDirs: fileDirs})
	if err != nil {
		return nil, err
	}
	vars := map[string][]string{}
	var msgs []string
	for _, role := range roles {
		names, err := config.RequiredVariables(config.Options{Dir: dir, Role: role, FileDirs: fileDirs})
		if err != nil {
			msgs = append(msgs, strings.Split(err.Error(), "\n")...)
			continue
		}
		if names == nil {
			names = []string{}
		}
		vars[role] = names
	}
	if len(msgs) > 0 {
		slices.Sort(msgs)
		return nil, errors.New(strings.Join(slices.Compact(msgs), "\n"))
	}
	now := meta.Now
	if now.IsZero() {
		now = time.Now()
	}
	b := &Bundle{
		Files: files,
		Manifest: Manifest{
			Format:      Format,
			Version:     meta.Version,
			ContentHash: ContentHash(files),
			Files:       fileHashes(files),
			Schema:      schemaOf(files),
			CreatedAt:   now.UTC().Format(time.RFC3339),
			Author:      meta.Author,
			Message:     meta.Message,
			Variables:   vars,
		},
	}
	return b, nil
}

// schemaOf is the schema the files declare (the loader has checked they agree).
func schemaOf(files []config.File) int {
	for _, f := range files {
		var doc struct {
			Schema int `yaml:"schema"`
		}
		if yaml.Unmarshal(f.Data, &doc) == nil && doc.Schema != 0 {
			return doc.Schema
		}
	}
	return 0
}

// canonical is the signed form: the manifest without its signature.
func (m Manifest) canonical() ([]byte, error) {
	m.Signature = ""
	return json.Marshal(m)
}

// KeyID names a public key: the first 16 hex digits of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Sign sets the manifest's key id and signature.
func (b *Bundle) Sign(priv ed25519.PrivateKey) error {
	b.Manifest.KeyID = KeyID(priv.Public().(ed25519.PublicKey))
	msg, err := b.Manifest.canonical()
	if err != nil {
		return err
	}
	b.Manifest.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(priv, msg))
	return nil
}

// Errors a verifier returns, for errors.Is.
var (
	ErrUnsigned     = errors.New("bundle is not signed")
	ErrBadSignature = errors.New("bundle signature does not verify")
	ErrTampered     = errors.New("bundle files do not match the signed manifest")
	ErrSchema       = errors.New("bundle schema is newer than this keygate supports")
)

// Verify checks the manifest's signature with pub.
func (m *Manifest) Verify(pub ed25519.PublicKey) error {
	if m.Signature == "" {
		return fmt.Errorf("%w (bundle.json has no signature)", ErrUnsigned)
	}
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil {
		return fmt.Errorf("%w: signature is not base64", ErrBadSignature)
	}
	msg, err := m.canonical()
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, msg, sig) {
		if want := KeyID(pub); m.KeyID != "" && m.KeyID != want {
			return fmt.Errorf("%w: signed with key %s, this node trusts key %s", ErrBadSignature, m.KeyID, want)
		}
		return fmt.Errorf("%w (bundle %s: the manifest was changed after signing, or signed with another key)", ErrBadSignature, m.Version)
	}
	return nil
}

// CheckFiles reports whether files are exactly the manifest's: the same
// names, the same SHA-256 each, and the same content hash.
func (m *Manifest) CheckFiles(files []config.File) error {
	want := map[string]string{}
	for _, f := range m.Files {
		want[f.Name] = f.SHA256
	}
	var problems []string
	seen := map[string]bool{}
	for _, f := range fileHashes(files) {
		seen[f.Name] = true
		switch h, ok := want[f.Name]; {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s is not in the manifest", f.Name))
		case h != f.SHA256:
			problems = append(problems, fmt.Sprintf("%s has SHA-256 %s, the manifest says %s", f.Name, short(f.SHA256), short(h)))
		}
	}
	for _, f := range m.Files {
		if !seen[f.Name] {
			problems = append(problems, fmt.Sprintf("%s is in the manifest but missing", f.Name))
		}
	}
	if len(problems) == 0 && ContentHash(files) != m.ContentHash {
		problems = append(problems, "content hash differs from the manifest")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w (bundle %s): %s", ErrTampered, m.Version, strings.Join(problems, "; "))
	}
	return nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// ParseManifest decodes bundle.json strictly.
func ParseManifest(data []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("bundle.json: %v", err)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("bundle.json: format %d is not supported (this keygate reads format %d)", m.Format, Format)
	}
	return &m, nil
}

// JSON is the manifest as written to bundle.json (indented, newline-terminated).
func (m *Manifest) JSON() []byte {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		panic(err) // a Manifest always marshals
	}
	return append(data, '\n')
}

// Verifier returns the config.Options.Verify hook of a runtime node that
// trusts pub: the directory must hold a bundle.json signed by pub, whose
// schema this binary supports, describing exactly the files loaded.
func Verifier(pub ed25519.PublicKey) func([]config.File, []byte) error {
	return func(files []config.File, manifest []byte) error {
		if manifest == nil {
			return fmt.Errorf("%w: no %s in the config directory (KEYGATE_BUNDLE_VERIFY_KEY_FILE is set, so only signed bundles are loaded)",
				ErrUnsigned, config.ManifestName)
		}
		m, err := ParseManifest(manifest)
		if err != nil {
			return err
		}
		return m.check(pub, files)
	}
}

func (m *Manifest) check(pub ed25519.PublicKey, files []config.File) error {
	if err := m.Verify(pub); err != nil {
		return err
	}
	if m.Schema > config.SchemaVersion {
		return fmt.Errorf("%w: bundle %s needs config schema %d, this keygate supports up to %d; upgrade this node before publishing it",
			ErrSchema, m.Version, m.Schema, config.SchemaVersion)
	}
	return m.CheckFiles(files)
}

// Read reads a bundle from a directory (a plain directory or a published,
// Kubernetes-style one, through one resolved ..data target). It does not
// verify it.
func Read(dir string) (*Bundle, error) {
	from := dir
	if target, err := filepath.EvalSymlinks(filepath.Join(dir, "..data")); err == nil {
		from = target
	}
	files, err := config.ReadDir(from)
	if err != nil {
		return nil, err
	}
	data, err := readfile.Read(filepath.Join(from, config.ManifestName), readfile.MaxSecretFile)
	if err != nil {
		return nil, fmt.Errorf("read bundle manifest: %w", err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, err
	}
	return &Bundle{Manifest: *m, Files: files}, nil
}

// Verify checks a bundle read from disk: signature, schema and files.
func (b *Bundle) Verify(pub ed25519.PublicKey) error { return b.Manifest.check(pub, b.Files) }

// LoadPrivateKey reads an Ed25519 private key (PEM, PKCS#8).
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	return loadKey[ed25519.PrivateKey](path, "PRIVATE KEY", "PKCS#8 private key", x509.ParsePKCS8PrivateKey)
}

// LoadPublicKey reads an Ed25519 public key (PEM "PUBLIC KEY", PKIX).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	return loadKey[ed25519.PublicKey](path, "PUBLIC KEY", "PKIX public key", x509.ParsePKIXPublicKey)
}

// loadKey reads the PEM block typ of path, parses it with parse (format
// names it in errors) and requires an Ed25519 key of type K. Neither
// error quotes the file.
func loadKey[K ed25519.PrivateKey | ed25519.PublicKey](path, typ, format string, parse func([]byte) (any, error)) (K, error) {
	der, err := readPEM(path, typ)
	if err != nil {
		return nil, err
	}
	k, err := parse(der)
	if err != nil {
		return nil, fmt.Errorf("%s: not a %s", path, format)
	}
	key, ok := k.(K)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key (bundles are signed with Ed25519)", path)
	}
	return key, nil
}

// readPEM never echoes the file's content: it may be a secret.
func readPEM(path, typ string) ([]byte, error) {
	data, err := readfile.Read(path, readfile.MaxSecretFile)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != typ {
		return nil, fmt.Errorf("%s: no PEM %q block", path, typ)
	}
	return block.Bytes, nil
}

// MarshalKeys returns PEM encodings of an Ed25519 key pair (for tests and
// for operators generating a key with keygate's own code).
func MarshalKeys(priv ed25519.PrivateKey) (privPEM, pubPEM []byte, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), nil
}
