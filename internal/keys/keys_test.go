package keys

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/secret"
)

// Generated once: RSA key generation is slow, and tests only need fresh
// material per run, not per case.
var (
	genOnce          sync.Once
	ecP256, ecP384   *ecdsa.PrivateKey
	rsa2048, rsa1024 *rsa.PrivateKey
	edKey            ed25519.PrivateKey
	x25519Key        *ecdh.PrivateKey
	errGen           error
)

func gen(t testing.TB) {
	t.Helper()
	genOnce.Do(func() {
		var errs [6]error
		ecP256, errs[0] = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ecP384, errs[1] = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		rsa2048, errs[2] = rsa.GenerateKey(rand.Reader, 2048)
		rsa1024, errs[3] = rsa.GenerateKey(rand.Reader, 1024)
		_, edKey, errs[4] = ed25519.GenerateKey(rand.Reader)
		x25519Key, errs[5] = ecdh.X25519().GenerateKey(rand.Reader)
		errGen = errors.Join(errs[:]...)
	})
	if errGen != nil {
		t.Fatal(errGen)
	}
}

func pemOf(t testing.TB, typ string, der []byte) string {
	t.Helper()
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func pkcs8(t testing.TB, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "PRIVATE KEY", der)
}

func sec1(t testing.TB, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "EC PRIVATE KEY", der)
}

func pkcs1(t testing.TB, key *rsa.PrivateKey) string {
	t.Helper()
	return pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
}

func cfgKey(name, alg, pemText string) *config.Key {
	k := &config.Key{Algorithm: alg, PrivateKey: secret.New(pemText)}
	k.Name = name
	return k
}

func TestParseEncodings(t *testing.T) {
	gen(t)
	// openssl ecparam -genkey writes EC PARAMETERS before the key.
	params := pemOf(t, "EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})
	cases := []struct {
		name, alg, pem string
		want           jwa.SignatureAlgorithm
	}{
		{"es256-pkcs8", config.AlgES256, pkcs8(t, ecP256), jwa.ES256},
		{"es256-sec1", config.AlgES256, sec1(t, ecP256), jwa.ES256},
		{"es256-sec1-params", config.AlgES256, params + sec1(t, ecP256), jwa.ES256},
		{"rs256-pkcs8", config.AlgRS256, pkcs8(t, rsa2048), jwa.RS256},
		{"rs256-pkcs1", config.AlgRS256, pkcs1(t, rsa2048), jwa.RS256},
		{"eddsa-pkcs8", config.AlgEdDSA, pkcs8(t, edKey), jwa.EdDSA},
		{"leading-text", config.AlgES256, "comment line\n" + pkcs8(t, ecP256), jwa.ES256},
	}
	kids := map[string]string{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Parse(cfgKey(c.name, c.alg, c.pem))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if s.Name != c.name || s.Alg != c.want {
				t.Fatalf("got name %q alg %s", s.Name, s.Alg)
			}
			if s.KID == "" || s.Private.KeyID() != s.KID || s.Public.KeyID() != s.KID {
				t.Fatalf("kid not set consistently: %q %q %q", s.KID, s.Private.KeyID(), s.Public.KeyID())
			}
			if s.Private.Algorithm() != c.want || s.Public.Algorithm() != c.want {
				t.Fatalf("alg not set on JWKs")
			}
			if s.Public.KeyUsage() != string(jwk.ForSignature) {
				t.Fatalf("public use = %q", s.Public.KeyUsage())
			}
			kids[c.name] = s.KID
		})
	}
	// The kid depends on the key only, not on its encoding.
	if kids["es256-pkcs8"] != kids["es256-sec1"] || kids["es256-sec1"] != kids["es256-sec1-params"] {
		t.Errorf("ES256 kids differ across encodings: %v", kids)
	}
	if kids["rs256-pkcs8"] != kids["rs256-pkcs1"] {
		t.Errorf("RS256 kids differ across encodings: %v", kids)
	}
}

// TestKIDIsRFC7638Thumbprint recomputes the kid from the canonical JSON of
// RFC 7638 §3 by hand, so a library change cannot silently move kids (and
// with them every relying party's cache).
func TestKIDIsRFC7638Thumbprint(t *testing.T) {
	gen(t)
	s, err := Parse(cfgKey("k", config.AlgEdDSA, pkcs8(t, edKey)))
	if err != nil {
		t.Fatal(err)
	}
	// RFC 7638 §3.2 + RFC 8037 §2: the OKP members are crv, kty, x.
	pub, err := jwk.FromRaw(edKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(pub)
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	canon := fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":"%s"}`, m["x"])
	want := b64sha256(canon)
	if s.KID != want {
		t.Fatalf("kid %s, want thumbprint %s", s.KID, want)
	}
}

func TestParseErrors(t *testing.T) {
	gen(t)
	encrypted := string(pem.EncodeToMemory(&pem.Block{
		Type:    "RSA PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"},
		Bytes:   x509.MarshalPKCS1PrivateKey(rsa2048),
	}))
	ecDER, _ := x509.MarshalECPrivateKey(ecP256)
	rsaCertLike := pemOf(t, "CERTIFICATE", []byte{1, 2, 3})
	cases := []struct {
		name, alg, pem, want string
	}{
		{"garbage", config.AlgES256, "not a key at all", "private-key: not PEM"},
		{"empty", config.AlgES256, "", "private-key: not PEM"},
		{"escaped-newlines", config.AlgES256, strings.ReplaceAll(pkcs8(t, ecP256), "\n", `\n`),
			`private-key: not PEM: it contains literal \n sequences; use real line breaks (a double-quoted env value, a YAML block scalar or ${file:PATH})`},
		{"bad-alg", "HS256", pkcs8(t, ecP256), `algorithm: unsupported algorithm "HS256"; want ES256, EdDSA or RS256`},
		{"es256-rsa", config.AlgES256, pkcs8(t, rsa2048), "private-key: ES256 needs a P-256 EC key, got an RSA key"},
		{"es256-p384", config.AlgES256, sec1(t, ecP384), "private-key: ES256 needs a P-256 EC key, got a P-384 EC key"},
		{"es256-ed25519", config.AlgES256, pkcs8(t, edKey), "private-key: ES256 needs a P-256 EC key, got an Ed25519 key"},
		{"rs256-ec", config.AlgRS256, pkcs8(t, ecP256), "private-key: RS256 needs an RSA key, got a P-256 EC key"},
		{"rs256-short", config.AlgRS256, pkcs1(t, rsa1024), "private-key: RSA key is 1024 bits; RS256 needs at least 2048"},
		{"rs256-short-pkcs8", config.AlgRS256, pkcs8(t, rsa1024), "private-key: RSA key is 1024 bits; RS256 needs at least 2048"},
		{"eddsa-ec", config.AlgEdDSA, pkcs8(t, ecP256), "private-key: EdDSA needs an Ed25519 key, got a P-256 EC key"},
		{"eddsa-x25519", config.AlgEdDSA, pkcs8(t, x25519Key), "private-key: EdDSA needs an Ed25519 key, got an X25519 key"},
		{"encrypted-legacy", config.AlgRS256, encrypted, "private-key: encrypted PEM is not supported; provide the key unencrypted through a secret (environment variable or ${file:PATH})"},
		{"encrypted-pkcs8", config.AlgRS256, pemOf(t, "ENCRYPTED PRIVATE KEY", []byte{0x30, 0x00}), "private-key: encrypted PEM is not supported; provide the key unencrypted through a secret (environment variable or ${file:PATH})"},
		{"certificate", config.AlgES256, rsaCertLike, `private-key: PEM block is "CERTIFICATE"; want PRIVATE KEY (PKCS#8), RSA PRIVATE KEY (PKCS#1) or EC PRIVATE KEY (SEC 1)`},
		{"public-key", config.AlgES256, pemOf(t, "PUBLIC KEY", []byte{1}), `private-key: PEM block is "PUBLIC KEY"; want PRIVATE KEY (PKCS#8), RSA PRIVATE KEY (PKCS#1) or EC PRIVATE KEY (SEC 1)`},
		{"corrupt-pkcs8", config.AlgES256, pemOf(t, "PRIVATE KEY", []byte{0x30, 0x03, 0x02, 0x01, 0x00}), `private-key: PEM block "PRIVATE KEY" is not a valid PKCS#8 private key`},
		{"corrupt-sec1", config.AlgES256, pemOf(t, "EC PRIVATE KEY", ecDER[:len(ecDER)-7]), `private-key: PEM block "EC PRIVATE KEY" is not a valid SEC 1 EC private key`},
		{"sec1-labeled-pkcs8", config.AlgES256, pemOf(t, "PRIVATE KEY", ecDER), `private-key: PEM block "PRIVATE KEY" holds a SEC 1 EC key; label it EC PRIVATE KEY`},
		{"pkcs1-labeled-pkcs8", config.AlgRS256, pemOf(t, "PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa2048)), `private-key: PEM block "PRIVATE KEY" holds a PKCS#1 RSA key; label it RSA PRIVATE KEY`},
		{"two-keys", config.AlgES256, pkcs8(t, ecP256) + pkcs8(t, ecP256), `private-key: expected one PEM private key, found another PEM block ("PRIVATE KEY") after it`},
		{"key-and-cert", config.AlgES256, pkcs8(t, ecP256) + rsaCertLike, `private-key: expected one PEM private key, found another PEM block ("CERTIFICATE") after it`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Parse(cfgKey(c.name, c.alg, c.pem))
			if err == nil {
				t.Fatalf("Parse succeeded (%v), want %q", s, c.want)
			}
			if err.Error() != c.want {
				t.Fatalf("error\n got: %s\nwant: %s", err, c.want)
			}
			var ke *Error
			if !errors.As(err, &ke) {
				t.Fatalf("error is %T, want *keys.Error", err)
			}
			assertNoKeyMaterial(t, err.Error(), c.pem)
		})
	}
}

// assertNoKeyMaterial fails if msg holds any base64 line of the PEM text
// (or a long piece of one).
func assertNoKeyMaterial(t *testing.T, msg, pemText string) {
	t.Helper()
	for _, line := range strings.Split(strings.ReplaceAll(pemText, `\n`, "\n"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "-----") || strings.Contains(line, ":") {
			continue
		}
		for i := 0; i+16 <= len(line); i += 8 {
			if strings.Contains(msg, line[i:i+16]) {
				t.Fatalf("error contains key material %q: %s", line[i:i+16], msg)
			}
		}
	}
}

func TestSignerNeverPrintsKeyMaterial(t *testing.T) {
	gen(t)
	text := pkcs8(t, ecP256)
	s, err := Parse(cfgKey("k", config.AlgES256, text))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(s.Private)
	var m map[string]string
	_ = json.Unmarshal(b, &m)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s), fmt.Sprintf("%v", []*Signer{s})} {
		if strings.Contains(out, m["d"]) {
			t.Fatalf("formatted signer contains the private scalar: %s", out)
		}
		assertNoKeyMaterial(t, out, text)
	}
}

func parseAll(t testing.TB) []*Signer {
	t.Helper()
	gen(t)
	var out []*Signer
	for _, k := range []*config.Key{
		cfgKey("ec", config.AlgES256, pkcs8(t, ecP256)),
		cfgKey("rsa", config.AlgRS256, pkcs1(t, rsa2048)),
		cfgKey("ed", config.AlgEdDSA, pkcs8(t, edKey)),
	} {
		s, err := Parse(k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func TestSetJWKS(t *testing.T) {
	signers := parseAll(t)
	set, err := NewSet(signers)
	if err != nil {
		t.Fatal(err)
	}
	if set.Active != signers[0] || len(set.All) != 3 {
		t.Fatalf("active %v, all %d", set.Active, len(set.All))
	}

	// Only public members, each key with kid, alg and use=sig.
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(set.JWKS, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw.Keys) != 3 {
		t.Fatalf("jwks has %d keys", len(raw.Keys))
	}
	for i, k := range raw.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
			if _, ok := k[private]; ok {
				t.Errorf("jwks key %d has private member %q", i, private)
			}
		}
		if k["kid"] != signers[i].KID || k["alg"] != signers[i].Alg.String() || k["use"] != "sig" {
			t.Errorf("jwks key %d: kid %v alg %v use %v", i, k["kid"], k["alg"], k["use"])
		}
	}

	jwks, err := jwk.Parse(set.JWKS)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"sub":"alice"}`)
	for _, s := range signers {
		t.Run(s.Alg.String(), func(t *testing.T) {
			viaJWK, err := jws.Sign(payload, jws.WithKey(s.Alg, s.Private))
			if err != nil {
				t.Fatal(err)
			}
			viaSigner, err := s.Sign(payload, "at+jwt")
			if err != nil {
				t.Fatal(err)
			}
			for _, tok := range [][]byte{viaJWK, viaSigner} {
				got, err := jws.Verify(tok, jws.WithKeySet(jwks))
				if err != nil {
					t.Fatalf("verify with jwks: %v", err)
				}
				if string(got) != string(payload) {
					t.Fatalf("payload %s", got)
				}
				msg, err := jws.Parse(tok)
				if err != nil {
					t.Fatal(err)
				}
				h := msg.Signatures()[0].ProtectedHeaders()
				if h.KeyID() != s.KID || h.Algorithm() != s.Alg {
					t.Fatalf("header kid %q alg %s", h.KeyID(), h.Algorithm())
				}
			}
			msg, _ := jws.Parse(viaSigner)
			if typ := msg.Signatures()[0].ProtectedHeaders().Type(); typ != "at+jwt" {
				t.Fatalf("typ %q", typ)
			}
			// Without a typ the header has none (the header is cached per typ).
			plain, err := s.Sign(payload, "")
			if err != nil {
				t.Fatal(err)
			}
			if msg, err := jws.Parse(plain); err != nil || msg.Signatures()[0].ProtectedHeaders().Type() != "" {
				t.Fatalf("no typ: %v %v", err, msg)
			}
			if _, err := jws.Verify(plain, jws.WithKeySet(jwks)); err != nil {
				t.Fatalf("verify the untyped token: %v", err)
			}
			// A JWT signed by the key verifies through the set as well.
			tok, err := jwt.NewBuilder().Subject("alice").Build()
			if err != nil {
				t.Fatal(err)
			}
			signed, err := jwt.Sign(tok, jwt.WithKey(s.Alg, s.Private))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := jwt.Parse(signed, jwt.WithKeySet(jwks)); err != nil {
				t.Fatalf("jwt verify: %v", err)
			}
		})
	}
}

func TestSetErrors(t *testing.T) {
	signers := parseAll(t)
	if _, err := NewSet(nil); err == nil || err.Error() != "no signing keys" {
		t.Fatalf("empty set: %v", err)
	}
	again, err := Parse(cfgKey("ec-again", config.AlgES256, sec1(t, ecP256)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewSet([]*Signer{signers[0], signers[1], again})
	want := fmt.Sprintf(`keys "ec" and "ec-again" are the same key (kid %s)`, signers[0].KID)
	if err == nil || err.Error() != want {
		t.Fatalf("duplicate kid: %v, want %s", err, want)
	}
	if _, err := NewSet([]*Signer{signers[0], nil}); err == nil {
		t.Fatal("nil signer accepted")
	}
}

func TestSignConcurrent(t *testing.T) {
	signers := parseAll(t)
	set, err := NewSet(signers)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := jwk.Parse(set.JWKS)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8*len(signers))
	for _, s := range signers {
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, err := s.Sign([]byte(`{"n":1}`), "")
				if err == nil {
					_, err = jws.Verify(tok, jws.WithKeySet(jwks))
				}
				if err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkSign measures signing a small JWT payload: through jws.Sign with
// the jwk.Key (what the brief's API offers) and through Signer.Sign (the
// parsed Go key, which the crypto packages can cache precomputations for).
func BenchmarkSign(b *testing.B) {
	signers := parseAll(b)
	payload := []byte(`{"iss":"https://id.example.com/oauth/v2","sub":"alice","aud":"api","exp":1767225600,"iat":1767225300,"jti":"3f9a6c1e"}`)
	for _, s := range signers {
		b.Run(s.Alg.String()+"/jwk", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := jws.Sign(payload, jws.WithKey(s.Alg, s.Private)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.Alg.String()+"/signer", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Sign(payload, "at+jwt"); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The bare signature, for the cost of JOSE on top of it.
		b.Run(s.Alg.String()+"/crypto-only", func(b *testing.B) {
			b.ReportAllocs()
			opts := crypto.Hash(crypto.SHA256)
			if s.Alg == jwa.EdDSA {
				opts = crypto.Hash(0)
			}
			for b.Loop() {
				msg := payload
				if opts != 0 {
					sum := sha256.Sum256(payload)
					msg = sum[:]
				}
				if _, err := s.raw.Sign(rand.Reader, msg, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func b64sha256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
