// Package keys turns configured PEM private keys into JOSE signers and the
// public JWK Set that token profiles publish.
//
// A key's kid is its RFC 7638 thumbprint, so every node and every reload
// derives the same kid from the same key without coordination.
package keys

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/keygate/keygate/internal/config"
)

// MinRSABits is the smallest RSA modulus accepted for RS256
// (NIST SP 800-131A; RFC 7518 §3.3 requires at least 2048).
const MinRSABits = 2048

// SupportedAlgorithms lists the JWS algorithms a config key may use, in the
// order discovery documents them.
var SupportedAlgorithms = []jwa.SignatureAlgorithm{jwa.ES256, jwa.EdDSA, jwa.RS256}

// Error is a problem with one field of a config key. Field is the config
// key name ("algorithm" or "private-key") so the loader can prefix the
// entry's position and path. Msg never contains key material.
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string { return e.Field + ": " + e.Msg }

func keyErr(format string, args ...any) error {
	return &Error{Field: "private-key", Msg: fmt.Sprintf(format, args...)}
}

// Signer is one parsed signing key.
type Signer struct {
	Name string // config key name
	Alg  jwa.SignatureAlgorithm
	// KID is the RFC 7638 JWK thumbprint (SHA-256, base64url) of the public
	// key: stable across nodes and reloads.
	KID     string
	Private jwk.Key // with kid and alg set
	Public  jwk.Key // with kid, alg and use=sig set

	// raw is the parsed Go key. Signing with it rather than with Private
	// lets crypto/ecdsa and crypto/rsa reuse their per-key precomputation;
	// a jwk.Key is converted to a fresh raw key on every jws.Sign.
	raw crypto.Signer
	// signer is jwx's signature algorithm, which Sign calls on the
	// compact signing input: the protected header is the same for every
	// token of a typ, so it is encoded once (headers: typ → its base64url
	// JSON and the dot) instead of built and serialized per token.
	signer  jws.Signer
	headers sync.Map
}

// String keeps key material out of %v and logs.
func (s *Signer) String() string {
	return fmt.Sprintf("%s key %q (kid %s)", s.Alg, s.Name, s.KID)
}

// GoString keeps key material out of %#v.
func (s *Signer) GoString() string { return s.String() }

// LogValue keeps key material out of slog.
func (s *Signer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", s.Name), slog.String("alg", s.Alg.String()), slog.String("kid", s.KID))
}

// Sign returns payload signed as a JWS in compact serialization
// (RFC 7515 §7.1) with the key's alg and kid in the protected header, plus
// typ when not empty (e.g. "at+jwt", RFC 9068 §2.1). It is safe for
// concurrent use.
func (s *Signer) Sign(payload []byte, typ string) ([]byte, error) {
	hdr, err := s.header(typ)
	if err != nil {
		return nil, err
	}
	b64 := base64.RawURLEncoding
	out := make([]byte, 0, len(hdr)+b64.EncodedLen(len(payload))+1+b64.EncodedLen(maxSignatureSize))
	out = append(out, hdr...)
	out = b64.AppendEncode(out, payload)
	sig, err := s.signer.Sign(out, s.raw) // the signing input: header.payload
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	out = append(out, '.')
	return b64.AppendEncode(out, sig), nil
}

// maxSignatureSize is the longest signature Sign expects (RSA 4096), to
// size its buffer once; a longer one only costs a copy.
const maxSignatureSize = 512

// header is the protected header of typ, base64url-encoded, with the dot
// that ends it.
func (s *Signer) header(typ string) (string, error) {
	if h, ok := s.headers.Load(typ); ok {
		return h.(string), nil
	}
	raw, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ,omitempty"`
	}{s.Alg.String(), s.KID, typ})
	if err != nil {
		return "", fmt.Errorf("encode the JWS header: %w", err)
	}
	h, _ := s.headers.LoadOrStore(typ, base64.RawURLEncoding.EncodeToString(raw)+".")
	return h.(string), nil
}

// Parse parses a config key: a PEM private key in PKCS#8, PKCS#1 (RSA) or
// SEC 1 (EC) form that fits the key's algorithm. ES256 needs P-256
// (RFC 7518 §3.4), RS256 an RSA key of at least 2048 bits (RFC 7518 §3.3),
// EdDSA an Ed25519 key (RFC 8037 §3.1). Errors are *Error and never contain
// key material.
func Parse(k *config.Key) (*Signer, error) {
	if k == nil {
		return nil, errors.New("nil key")
	}
	alg, ok := algorithm(k.Algorithm)
	if !ok {
		return nil, &Error{Field: "algorithm", Msg: fmt.Sprintf("unsupported algorithm %q; want ES256, EdDSA or RS256", k.Algorithm)}
	}
	priv, err := decodePEM(k.PrivateKey.Reveal())
	if err != nil {
		return nil, err
	}
	if err := fits(alg, priv); err != nil {
		return nil, err
	}
	return newSigner(k.Name, alg, priv)
}

// StandIn returns a freshly generated key of k's algorithm, in place of a
// value the checker cannot see (a vault secret), so that what is built on
// the key can still be checked. It never signs anything that leaves the
// process.
func StandIn(k *config.Key) (*Signer, error) {
	alg, ok := algorithm(k.Algorithm)
	if !ok {
		return nil, &Error{Field: "algorithm", Msg: fmt.Sprintf("unsupported algorithm %q; want ES256, EdDSA or RS256", k.Algorithm)}
	}
	var (
		priv any
		err  error
	)
	switch alg {
	case jwa.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jwa.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		return nil, fmt.Errorf("stand-in key: %w", err)
	}
	return newSigner(k.Name, alg, priv)
}

func algorithm(name string) (jwa.SignatureAlgorithm, bool) {
	switch name {
	case config.AlgES256:
		return jwa.ES256, true
	case config.AlgRS256:
		return jwa.RS256, true
	case config.AlgEdDSA:
		return jwa.EdDSA, true
	}
	return "", false
}

// decodePEM returns the one private key in text. An "EC PARAMETERS" block
// (as written by openssl ecparam -genkey) may precede it.
func decodePEM(text string) (any, error) {
	rest := []byte(text)
	var block *pem.Block
	for {
		b, r := pem.Decode(rest)
		if b == nil {
			break
		}
		rest = r
		if b.Type == "EC PARAMETERS" {
			continue
		}
		if block != nil {
			return nil, keyErr("expected one PEM private key, found another PEM block (%s) after it", label(b.Type))
		}
		block = b
	}
	if block == nil {
		if strings.Contains(text, "-----BEGIN") && strings.Contains(text, `\n`) {
			return nil, keyErr(`not PEM: it contains literal \n sequences; use real line breaks (a double-quoted env value, a YAML block scalar or ${file:PATH})`)
		}
		return nil, keyErr("not PEM")
	}
	if block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
		return nil, keyErr("encrypted PEM is not supported; provide the key unencrypted through a secret (environment variable or ${file:PATH})")
	}
	der := block.Bytes
	switch block.Type {
	case "PRIVATE KEY":
		if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
			return k, nil
		}
		return nil, mislabeled("PKCS#8 private key", block.Type, der)
	case "RSA PRIVATE KEY":
		if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
			return k, nil
		}
		return nil, mislabeled("PKCS#1 RSA private key", block.Type, der)
	case "EC PRIVATE KEY":
		if k, err := x509.ParseECPrivateKey(der); err == nil {
			return k, nil
		}
		return nil, mislabeled("SEC 1 EC private key", block.Type, der)
	}
	return nil, keyErr("PEM block is %s; want PRIVATE KEY (PKCS#8), RSA PRIVATE KEY (PKCS#1) or EC PRIVATE KEY (SEC 1)", label(block.Type))
}

// mislabeled explains a PEM block whose content does not match its label.
// The x509 errors are not wrapped: they are not written to keep secrets out.
func mislabeled(want, typ string, der []byte) error {
	if _, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return keyErr("PEM block %s holds a PKCS#8 key; label it PRIVATE KEY", label(typ))
	}
	if _, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return keyErr("PEM block %s holds a PKCS#1 RSA key; label it RSA PRIVATE KEY", label(typ))
	}
	if _, err := x509.ParseECPrivateKey(der); err == nil {
		return keyErr("PEM block %s holds a SEC 1 EC key; label it EC PRIVATE KEY", label(typ))
	}
	return keyErr("PEM block %s is not a valid %s", label(typ), want)
}

// label quotes a PEM type for an error, bounded so a pasted blob cannot
// flow into logs through it.
func label(typ string) string {
	if len(typ) > 40 {
		typ = typ[:40] + "…"
	}
	return fmt.Sprintf("%q", typ)
}

// fits checks that key suits alg.
func fits(alg jwa.SignatureAlgorithm, key any) error {
	switch alg {
	case jwa.ES256:
		if k, ok := key.(*ecdsa.PrivateKey); ok && k.Curve == elliptic.P256() {
			return nil
		}
		return keyErr("ES256 needs a P-256 EC key, got %s", describe(key))
	case jwa.RS256:
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			return keyErr("RS256 needs an RSA key, got %s", describe(key))
		}
		if bits := k.N.BitLen(); bits < MinRSABits {
			return keyErr("RSA key is %d bits; RS256 needs at least %d", bits, MinRSABits)
		}
		return nil
	case jwa.EdDSA:
		if _, ok := key.(ed25519.PrivateKey); ok {
			return nil
		}
		return keyErr("EdDSA needs an Ed25519 key, got %s", describe(key))
	}
	return &Error{Field: "algorithm", Msg: fmt.Sprintf("unsupported algorithm %q", alg)}
}

// describe names a key's type for errors, without any of its material.
func describe(key any) string {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return "an RSA key"
	case *ecdsa.PrivateKey:
		return fmt.Sprintf("a %s EC key", k.Curve.Params().Name)
	case ed25519.PrivateKey:
		return "an Ed25519 key"
	case *ecdh.PrivateKey:
		if k.Curve() == ecdh.X25519() {
			return "an X25519 key"
		}
		return "an ECDH key"
	}
	return fmt.Sprintf("a key of type %T", key)
}

func newSigner(name string, alg jwa.SignatureAlgorithm, raw any) (*Signer, error) {
	signer, ok := raw.(crypto.Signer)
	if !ok {
		return nil, keyErr("%s cannot sign", describe(raw))
	}
	priv, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, keyErr("cannot convert %s to a JWK", describe(raw))
	}
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		return nil, keyErr("cannot derive the public JWK of %s", describe(raw))
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(tp)
	for _, k := range []jwk.Key{priv, pub} {
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			return nil, fmt.Errorf("set kid: %w", err)
		}
		if err := k.Set(jwk.AlgorithmKey, alg); err != nil {
			return nil, fmt.Errorf("set alg: %w", err)
		}
	}
	if err := pub.Set(jwk.KeyUsageKey, jwk.ForSignature); err != nil {
		return nil, fmt.Errorf("set use: %w", err)
	}
	js, err := jws.NewSigner(alg)
	if err != nil {
		return nil, fmt.Errorf("signer for %s: %w", alg, err)
	}
	return &Signer{Name: name, Alg: alg, KID: kid, Private: priv, Public: pub, raw: signer, signer: js}, nil
}

// Set is the keys of one token profile: Active signs, All are published.
type Set struct {
	Active *Signer
	All    []*Signer
	// JWKS is the pre-serialized public JWK Set (RFC 7517 §5): public
	// members only, each key with kid, alg and use=sig.
	JWKS []byte
}

// NewSet builds a profile's key set. The first signer is Active; the others
// are published so tokens they signed still verify, or so relying parties
// learn a new key before it signs. Two entries with the same public key
// (the same kid) are an error: relying parties could not tell them apart.
func NewSet(signers []*Signer) (*Set, error) {
	if len(signers) == 0 {
		return nil, errors.New("no signing keys")
	}
	set := jwk.NewSet()
	seen := make(map[string]string, len(signers))
	for i, s := range signers {
		if s == nil {
			return nil, fmt.Errorf("signing key %d is nil", i)
		}
		if other, dup := seen[s.KID]; dup {
			return nil, fmt.Errorf("keys %q and %q are the same key (kid %s)", other, s.Name, s.KID)
		}
		seen[s.KID] = s.Name
		if err := set.AddKey(s.Public); err != nil {
			return nil, fmt.Errorf("key %q: %w", s.Name, err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("serialize jwks: %w", err)
	}
	all := make([]*Signer, len(signers))
	copy(all, signers)
	return &Set{Active: all[0], All: all, JWKS: b}, nil
}

// DeriveKey returns a 32-byte secret derived (HKDF-SHA256) from the
// private key and label, for MACs that every node holding this key must
// agree on without another shared secret. Distinct labels give
// independent keys; the private key cannot be recovered from one.
func (s *Signer) DeriveKey(label string) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(s.raw)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	return hkdf.Key(sha256.New, der, nil, label, 32)
}

// CheckHeader accepts a JWS protected header only if it names exactly alg,
// the algorithm of the key about to verify it (RFC 8725 §3.1: a key is
// used with its own algorithm only, whatever the token claims), and has
// no crit member: this server implements no JWS extension, so every
// critical one is unknown to it and fatal (RFC 7515 §4.1.11). jwx does not
// check either when the key carries its algorithm, so verifiers call this.
func CheckHeader(h jws.Headers, alg jwa.SignatureAlgorithm) error {
	if got := h.Algorithm(); got != alg {
		return fmt.Errorf("header alg %q, want %s", got.String(), alg)
	}
	if _, ok := h.Get(jws.CriticalKey); ok {
		return errors.New("header has crit, and no JWS extension is supported")
	}
	return nil
}
