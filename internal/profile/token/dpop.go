package token

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/storage/model"
)

// DPoP (RFC 9449): a client proves possession of a key with a signed
// proof in the DPoP header of each request; tokens issued with a proof
// are bound to the key's thumbprint (cnf.jkt) and are only accepted with a
// fresh proof of the same key. Every check of a proof is here, the same at
// the token, par and userinfo endpoints.

const (
	headerDPoP      = "DPoP"
	headerDPoPNonce = "DPoP-Nonce"
	// typDPoP is the proof's typ header (RFC 9449 §4.2).
	typDPoP = "dpop+jwt"
	// tokenTypeDPoP is the token_type of a bound access token (§5) and
	// the Authorization scheme that presents it (§7.1).
	tokenTypeDPoP = "DPoP"

	// maxProofLen bounds the DPoP header before it is parsed: an RSA
	// 4096 key in the header and a signature of the same size fit with
	// room to spare.
	maxProofLen = 8 << 10
	// maxProofJTILen bounds the jti stored per proof (RFC 9449 §11.1 asks
	// for 96 random bits or more; 43 base64url characters carry 256).
	maxProofJTILen = 256
	// proofWindow is how far a proof's iat may be from the server's
	// clock, either way (§11.1: a short window limits how long its jti
	// must be remembered, and allows for clock skew).
	proofWindow = 60 * time.Second
	// proofKeep is how long an accepted proof's jti is kept past its
	// iat: the window, plus the skew between nodes' clocks.
	proofKeep = proofWindow + 30*time.Second
	// nonceWindow is the lifetime of a server nonce: the current
	// window's nonce and the previous one's are accepted (§8).
	nonceWindow = 5 * time.Minute
)

// proofAlgs are the proof algorithms accepted: asymmetric only (§4.3: no
// none, no MAC). Discovery lists them (dpop_signing_alg_values_supported).
// A FAPI 2.0 profile leaves out RS256 (fapiProofAlgs).
var (
	proofAlgs     = []jwa.SignatureAlgorithm{jwa.ES256, jwa.EdDSA, jwa.RS256, jwa.PS256}
	fapiProofAlgs = []jwa.SignatureAlgorithm{jwa.ES256, jwa.EdDSA, jwa.PS256}
)

// algNames is algs space-separated, for the algs of a DPoP challenge
// (§7.1) and the error that names them.
func algNames(algs []jwa.SignatureAlgorithm) string {
	s := make([]string, len(algs))
	for i, a := range algs {
		s[i] = a.String()
	}
	return strings.Join(s, " ")
}

// DPoP error codes (RFC 9449 §5.1, §7.1, §8).
var (
	errInvalidDPoPProof = &oauth.Error{Code: "invalid_dpop_proof", Status: http.StatusBadRequest,
		Description: "the DPoP proof is invalid"}
	errUseDPoPNonce = &oauth.Error{Code: "use_dpop_nonce", Status: http.StatusBadRequest,
		Description: "the DPoP proof must carry the nonce of the DPoP-Nonce header", Reason: "dpop_nonce"}
)

// dpopProof is what a valid proof establishes.
type dpopProof struct {
	jkt string // RFC 7638 SHA-256 thumbprint of the proof key, base64url
}

// proofClaims are the claims of a proof (RFC 9449 §4.2).
type proofClaims struct {
	JTI   string   `json:"jti"`
	HTM   string   `json:"htm"`
	HTU   string   `json:"htu"`
	IAT   *float64 `json:"iat"`
	ATH   string   `json:"ath"`
	Nonce string   `json:"nonce"`
}

// dpopChecker checks proofs for one profile: its nonces (if it demands
// them) and the zone's record of used proof ids.
type dpopChecker struct {
	store    model.Store // nil: proofs are refused with server_error
	now      func() time.Time
	nonce    bool   // demand a server nonce (dpop.nonce)
	nonceKey []byte // derived from the active signing key: the same on every node
	algs     []jwa.SignatureAlgorithm
	algNames string
}

// newDPoPChecker derives the nonce key from the profile's active signing
// key, which every node of the profile shares, so a nonce issued by one
// node is accepted by all (no shared state); a key rotation only costs a
// use_dpop_nonce round trip.
func newDPoPChecker(signer *keys.Signer, store model.Store, now func() time.Time, nonce, fapi bool) (*dpopChecker, error) {
	key, err := signer.DeriveKey("keygate dpop-nonce v1")
	if err != nil {
		return nil, err
	}
	algs := proofAlgs
	if fapi {
		algs = fapiProofAlgs
	}
	return &dpopChecker{store: store, now: now, nonce: nonce, nonceKey: key, algs: algs, algNames: algNames(algs)}, nil
}

// nonceAt is the nonce of the window that holds t: a MAC of the window's
// number, so it reveals nothing and cannot be made without the key.
func (d *dpopChecker) nonceAt(t time.Time) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.Unix()/int64(nonceWindow/time.Second)))
	h := hmac.New(sha256.New, d.nonceKey)
	h.Write(b[:])
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:18])
}

// currentNonce is the nonce to hand out now.
func (d *dpopChecker) currentNonce() string { return d.nonceAt(d.now()) }

// nonceOK accepts the current window's nonce and the previous one's, so
// a nonce handed out just before a window ends still works.
func (d *dpopChecker) nonceOK(n string) bool {
	now := d.now()
	for _, t := range []time.Time{now, now.Add(-nonceWindow)} {
		if subtle.ConstantTimeCompare([]byte(n), []byte(d.nonceAt(t))) == 1 {
			return true
		}
	}
	return false
}

// proofHeader returns the request's DPoP header: "" when there is none,
// an error when there are several (RFC 9449 §4.3 check 1).
func proofHeader(c *fiber.Ctx) (string, *oauth.Error) {
	h := &c.Context().Request.Header
	v := h.Peek(headerDPoP)
	if len(v) == 0 {
		return "", nil
	}
	if len(h.PeekAll(headerDPoP)) > 1 {
		return "", errInvalidDPoPProof.WithDescription("more than one DPoP header").WithReason("dpop_proof_invalid")
	}
	return string(v), nil
}

// check validates a proof (RFC 9449 §4.3) for a request of method to
// htu (the endpoint's URL, from the issuer), with accessToken the token it
// presents at a resource ("" at the token and par endpoints, where ath is
// not checked), and records its jti so that it is used once across the
// zone. Errors are invalid_dpop_proof or use_dpop_nonce, each with a
// reason; their descriptions never quote the proof.
func (d *dpopChecker) check(ctx context.Context, raw, method, htu, accessToken string) (*dpopProof, *oauth.Error) {
	bad := func(desc, reason string) *oauth.Error {
		return errInvalidDPoPProof.WithDescription(desc).WithReason(reason)
	}
	if len(raw) > maxProofLen {
		return nil, bad("the DPoP proof is too large", "dpop_proof_invalid")
	}
	// Compact serialization only: one protected header, one signature.
	if strings.Count(raw, ".") != 2 {
		return nil, bad("the DPoP proof is not a compact JWS", "dpop_proof_invalid")
	}
	msg, err := jws.Parse([]byte(raw))
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, bad("the DPoP proof is not a JWS", "dpop_proof_invalid").WithCause(err)
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if h.Type() != typDPoP {
		return nil, bad("the DPoP proof's typ must be dpop+jwt", "dpop_proof_invalid")
	}
	alg := h.Algorithm()
	if !containsAlg(d.algs, alg) {
		return nil, bad("the DPoP proof's alg must be one of "+d.algNames, "dpop_proof_invalid")
	}
	// No JWS extension is supported: a crit member, even empty, or b64
	// (RFC 7797, which changes what is signed) is refused.
	if _, ok := h.Get(jws.CriticalKey); ok {
		return nil, bad("the DPoP proof has a crit header, which is not supported", "dpop_proof_invalid")
	}
	if _, ok := h.Get("b64"); ok {
		return nil, bad("the DPoP proof has a b64 header, which is not supported", "dpop_proof_invalid")
	}
	key := h.JWK()
	if key == nil {
		return nil, bad("the DPoP proof has no jwk header", "dpop_proof_invalid")
	}
	if e := checkProofKey(key, alg); e != nil {
		return nil, e
	}
	// The message is parsed already: check its signature with the
	// library's verifier for alg, rather than jws.Verify, which would
	// parse the whole proof again (a fifth of a proof check's cost).
	if err := verifyParsed(raw, alg, key); err != nil {
		return nil, bad("the DPoP proof's signature does not verify with its jwk", "dpop_proof_invalid").WithCause(err)
	}
	payload := msg.Payload()
	var cl proofClaims
	if err := json.Unmarshal(payload, &cl); err != nil {
		return nil, bad("the DPoP proof's claims are not a JSON object of the right types", "dpop_proof_invalid").WithCause(err)
	}
	switch {
	case cl.JTI == "" || len(cl.JTI) > maxProofJTILen:
		return nil, bad("the DPoP proof needs a jti of at most 256 characters", "dpop_proof_invalid")
	case cl.HTM != method:
		return nil, bad("the DPoP proof's htm is not the request's method", "dpop_htm_mismatch")
	case !sameHTU(cl.HTU, htu):
		return nil, bad("the DPoP proof's htu is not this endpoint's URL", "dpop_htu_mismatch")
	case cl.IAT == nil || math.IsNaN(*cl.IAT) || math.IsInf(*cl.IAT, 0):
		return nil, bad("the DPoP proof needs an iat", "dpop_iat")
	}
	now := d.now()
	iat := time.Unix(0, 0).Add(time.Duration(*cl.IAT * float64(time.Second)))
	if *cl.IAT > float64(math.MaxInt64/int64(time.Second)) || *cl.IAT < 0 ||
		iat.Before(now.Add(-proofWindow)) || iat.After(now.Add(proofWindow)) {
		return nil, bad("the DPoP proof's iat is not within 60 seconds of the server's time", "dpop_iat")
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		want := base64.RawURLEncoding.EncodeToString(sum[:])
		if subtle.ConstantTimeCompare([]byte(cl.ATH), []byte(want)) != 1 {
			return nil, bad("the DPoP proof's ath is not the hash of the access token", "dpop_ath")
		}
	}
	if d.nonce && (cl.Nonce == "" || !d.nonceOK(cl.Nonce)) {
		return nil, errUseDPoPNonce
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, bad("the DPoP proof's jwk has no thumbprint", "dpop_proof_invalid").WithCause(err)
	}
	proof := &dpopProof{jkt: base64.RawURLEncoding.EncodeToString(tp)}
	// Last, so that a refused proof costs no write.
	if d.store == nil {
		return nil, oauth.ErrServerError.WithCause(errNoStore)
	}
	switch err := d.store.DPoPProofs().Use(ctx, proof.jkt, cl.JTI, iat.Add(proofKeep)); {
	case errors.Is(err, model.ErrReplay):
		return nil, bad("the DPoP proof was already used", "dpop_replayed")
	case err != nil:
		return nil, oauth.ErrServerError.WithCause(fmt.Errorf("record dpop proof: %w", err))
	}
	return proof, nil
}

// verifyParsed verifies the signature of the compact JWS raw with key,
// by alg's verifier: the signing input is raw up to its last dot, the
// signature the base64url after it (RFC 7515 §5.2).
func verifyParsed(raw string, alg jwa.SignatureAlgorithm, key jwk.Key) error {
	v, err := jws.NewVerifier(alg)
	if err != nil {
		return err
	}
	i := strings.LastIndexByte(raw, '.')
	sig, err := base64.RawURLEncoding.DecodeString(raw[i+1:])
	if err != nil {
		return err
	}
	var pub any
	if err := key.Raw(&pub); err != nil {
		return err
	}
	return v.Verify([]byte(raw[:i]), sig, pub)
}

// checkProofKey accepts a public key of the type and size alg needs
// (RFC 9449 §4.3 checks 5 and 7): never private or symmetric key material,
// which a client must not send and a log could keep.
func checkProofKey(key jwk.Key, alg jwa.SignatureAlgorithm) *oauth.Error {
	bad := errInvalidDPoPProof.WithReason("dpop_proof_invalid")
	switch k := key.(type) {
	case jwk.ECDSAPrivateKey, jwk.RSAPrivateKey, jwk.OKPPrivateKey, jwk.SymmetricKey:
		return bad.WithDescription("the DPoP proof's jwk must be a public key")
	case jwk.ECDSAPublicKey:
		if alg == jwa.ES256 && k.Crv() == jwa.P256 {
			return nil
		}
	case jwk.OKPPublicKey:
		if alg == jwa.EdDSA && k.Crv() == jwa.Ed25519 {
			return nil
		}
	case jwk.RSAPublicKey:
		if (alg == jwa.RS256 || alg == jwa.PS256) && new(big.Int).SetBytes(k.N()).BitLen() >= 2048 {
			return nil
		}
	}
	return bad.WithDescription("the DPoP proof's jwk does not fit its alg (ES256: P-256, EdDSA: Ed25519, RS256/PS256: RSA of 2048 bits or more)")
}

func containsAlg(list []jwa.SignatureAlgorithm, a jwa.SignatureAlgorithm) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// sameHTU compares a proof's htu with the endpoint's URL as RFC 9449 §4.3
// check 9 asks: without query and fragment, after the syntax-based
// normalisation of RFC 3986 §6.2.2 and the scheme-based one of §6.2.3
// (case of scheme and host, default port, empty path).
func sameHTU(got, want string) bool {
	g, ok := normalHTU(got)
	return ok && g == want
}

// normalHTU is u without query and fragment, normalised (see sameHTU).
func normalHTU(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" || u.User != nil {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	// Percent-encodings in upper case, unreserved characters decoded
	// (RFC 3986 §6.2.2.1, §6.2.2.2): the path's canonical form.
	path := (&url.URL{Path: u.Path}).EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, true
}

// mustNormalHTU normalises an endpoint URL built from a valid issuer.
func mustNormalHTU(s string) string {
	n, ok := normalHTU(s)
	if !ok {
		return s
	}
	return n
}

// dpopChallenge is the WWW-Authenticate challenge of a resource that
// accepts DPoP-bound tokens (RFC 9449 §7.1); code may be "" (no
// credentials sent).
func (d *dpopChecker) challenge(code string) string {
	ch := `DPoP algs="` + d.algNames + `"`
	if code != "" {
		ch += `, error="` + code + `"`
	}
	return ch
}
