// Package jwstest builds JWS compact serializations with any protected
// header, for tests of verifiers: a real ES256 signature under a header a
// JOSE library would never write (alg none, a wrong alg, crit extensions).
// Verifiers must refuse such tokens even though the signature checks out.
package jwstest

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// Forge signs payload with key (P-256, ES256 over SHA-256, r||s as in
// RFC 7518 §3.4) under header as given, whatever its alg says.
func Forge(t testing.TB, key *ecdsa.PrivateKey, header map[string]any, payload []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(payload)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}
