// Package clientauth authenticates OAuth clients at the token,
// introspection and revocation endpoints: client_secret_basic and
// client_secret_post (RFC 6749 §2.3.1) and private_key_jwt (RFC 7523 §2.2,
// OpenID Connect Core 1.0 §9).
//
// Secrets: config secrets arrive in plaintext through placeholders (from
// a vault or a secret volume) and are random strings of at least 16
// characters. The Authenticator keeps only their SHA-256, computed once
// when the snapshot is built, and compares SHA-256 of the presented
// secret in constant time: microseconds per check. A slow password hash
// (bcrypt, PBKDF2) defends a stored hash database against offline
// guessing; there is none here, and a high-entropy secret cannot be
// guessed from its SHA-256 anyway.
package clientauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/storage/model"
)

// AssertionType is the client_assertion_type of RFC 7523 §2.2.
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// MaxAssertionLifetime bounds how far in the future an assertion's exp may
// be, which bounds how long its jti must be remembered. Common clients
// sign assertions for 5 to 60 minutes (oauth2c: 10); RFC 7523 sets no
// limit, and a replay is refused for the assertion's whole life anyway.
const MaxAssertionLifetime = time.Hour

// Skew is the clock skew tolerated on assertion exp/nbf/iat.
const Skew = 30 * time.Second

// Credentials are what one request presented. The endpoint fills them
// from the Authorization header and the form.
type Credentials struct {
	// Authorization is the raw Authorization header value ("" if absent).
	Authorization string
	// Form parameters (RFC 6749 §2.3.1, RFC 7521 §4.2).
	ClientID            string
	ClientSecret        string
	ClientAssertionType string
	ClientAssertion     string
	// HasClientSecret etc. tell an empty parameter from an absent one.
	HasClientSecret, HasAssertion bool
}

// ClaimedID is the client id the request names, authenticated or not
// (the Basic user, else client_id), cut to 64 bytes: what a refusal is
// logged under. It is request input: log it as a value, never as a
// metric label.
func (c *Credentials) ClaimedID() string {
	id := c.ClientID
	if c.Authorization != "" {
		if user, _, err := parseBasic(c.Authorization); err == nil {
			id = user
		}
	}
	if len(id) > 64 {
		id = id[:64]
	}
	return id
}

// UsedBasic reports whether the request carried HTTP Basic credentials,
// so an invalid_client answer is a 401 with a Basic challenge.
func (c *Credentials) UsedBasic() bool {
	return len(c.Authorization) >= 6 && strings.EqualFold(c.Authorization[:6], "basic ")
}

// Client is a config client as the authenticator holds it.
type Client struct {
	ID     string
	Config *config.Client
	Method string

	secretHash [sha256.Size]byte
	keys       jwk.Set // private_key_jwt
}

// String keeps the hash out of %v.
func (c *Client) String() string { return "client " + c.ID }

// Authenticator authenticates the clients of one token profile.
type Authenticator struct {
	clients map[string]*Client
	// audiences an assertion may name: the token endpoint URL and the
	// issuer (RFC 7523 §3 item 3).
	audiences      []string
	singleAudience bool
	store          model.Store // for assertion replay; nil: private_key_jwt fails closed
	now            func() time.Time
}

// Options configure New.
type Options struct {
	// Audiences are the values an assertion's aud may contain (one
	// match suffices): the token endpoint URL and the issuer.
	Audiences []string
	// SingleAudience: aud must be one value, not a list that contains one
	// of Audiences among others (FAPI 2.0's defence against audience
	// injection).
	SingleAudience bool
	// NoRS256 refuses RSA public keys, which verify RS256 here (FAPI 2.0
	// allows PS256, ES256 and EdDSA; PS256 is not built).
	NoRS256 bool
	Store   model.Store
	Now     func() time.Time // nil: time.Now
	// Previous is the authenticator of the snapshot being replaced: a
	// client whose config entry is the same object (the loader keeps
	// unchanged entries) is reused rather than derived again, so a reload
	// with thousands of clients does not redo their work.
	Previous *Authenticator
}

// New builds the authenticator for clients (the profile's). Public keys
// are parsed here, once per snapshot.
func New(clients []*config.Client, o Options) (*Authenticator, error) {
	a := &Authenticator{clients: make(map[string]*Client, len(clients)), audiences: o.Audiences, singleAudience: o.SingleAudience,
		store: o.Store, now: o.Now}
	if a.now == nil {
		a.now = time.Now
	}
	for _, c := range clients {
		if o.Previous != nil {
			if prev, ok := o.Previous.clients[c.Name]; ok && prev.Config == c {
				if err := checkAlgs(prev, o.NoRS256); err != nil {
					return nil, err
				}
				a.clients[c.Name] = prev // immutable once built
				continue
			}
		}
		cl := &Client{ID: c.Name, Config: c, Method: c.TokenEndpointAuthMethod}
		if cl.Method == "" {
			switch {
			case !c.Secret.IsZero():
				cl.Method = config.AuthSecretBasic
			case len(c.PublicKeys) > 0:
				cl.Method = config.AuthPrivateKeyJWT
			default:
				cl.Method = config.AuthNone
			}
		}
		if !c.Secret.IsZero() {
			cl.secretHash = sha256.Sum256([]byte(c.Secret.Reveal()))
		}
		if len(c.PublicKeys) > 0 {
			set, err := publicKeys(c.PublicKeys)
			if err != nil {
				return nil, fmt.Errorf("clients.%s.public-keys: %w", c.Name, err)
			}
			cl.keys = set
		}
		if err := checkAlgs(cl, o.NoRS256); err != nil {
			return nil, err
		}
		a.clients[c.Name] = cl
	}
	return a, nil
}

// checkAlgs refuses a client key whose algorithm the profile does not
// allow.
func checkAlgs(cl *Client, noRS256 bool) error {
	if !noRS256 || cl.keys == nil {
		return nil
	}
	for i := range cl.keys.Len() {
		if k, ok := cl.keys.Key(i); ok && k.Algorithm() == jwa.RS256 {
			return fmt.Errorf("clients.%s.public-keys[%d]: an RSA key signs RS256, which security-profile fapi-2.0 does not allow; use a P-256 (ES256) or Ed25519 (EdDSA) key", cl.ID, i)
		}
	}
	return nil
}

// publicKeys parses PEM public keys (PKIX) into a JWK Set, each key with
// the one alg it may verify: ES256 (P-256), RS256 (≥2048 bits) or EdDSA.
func publicKeys(pems []string) (jwk.Set, error) {
	set := jwk.NewSet()
	for i, text := range pems {
		block, _ := pem.Decode([]byte(text))
		if block == nil || block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("[%d]: want a PEM PUBLIC KEY block", i)
		}
		raw, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("[%d]: not a PKIX public key", i)
		}
		var alg jwa.SignatureAlgorithm
		switch k := raw.(type) {
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() {
				return nil, fmt.Errorf("[%d]: EC keys must be P-256 (ES256)", i)
			}
			alg = jwa.ES256
		case *rsa.PublicKey:
			if k.N.BitLen() < 2048 {
				return nil, fmt.Errorf("[%d]: RSA keys must have at least 2048 bits", i)
			}
			alg = jwa.RS256
		case ed25519.PublicKey:
			alg = jwa.EdDSA
		default:
			return nil, fmt.Errorf("[%d]: unsupported key type %T", i, raw)
		}
		key, err := jwk.FromRaw(raw)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		if err := key.Set(jwk.AlgorithmKey, alg); err != nil {
			return nil, err
		}
		if err := set.AddKey(key); err != nil {
			return nil, err
		}
	}
	return set, nil
}

// ownAlgorithm offers jwx only those of the client's keys whose own
// algorithm the assertion's header names, and none when the header has a
// crit member (keys.CheckHeader). jwx's key-set verification would verify
// with a key's alg whatever the header says (none, HS256, nothing).
func ownAlgorithm(set jwk.Set) jws.KeyProvider {
	return jws.KeyProviderFunc(func(_ context.Context, sink jws.KeySink, sig *jws.Signature, _ *jws.Message) error {
		for _, k := range keysFor(set, sig.ProtectedHeaders()) {
			sink.Key(jwa.SignatureAlgorithm(k.Algorithm().String()), k)
		}
		return nil
	})
}

// keysFor lists the keys of set that may verify a signature under header h.
func keysFor(set jwk.Set, h jws.Headers) []jwk.Key {
	var out []jwk.Key
	for i := range set.Len() {
		k, _ := set.Key(i)
		if keys.CheckHeader(h, jwa.SignatureAlgorithm(k.Algorithm().String())) == nil {
			out = append(out, k)
		}
	}
	return out
}

// Client returns a client by id, or nil.
func (a *Authenticator) Client(id string) *Client { return a.clients[id] }

// dummy is compared against when the client is unknown, so an unknown
// client id costs the same as a wrong secret.
var dummy [sha256.Size]byte

// Authenticate authenticates the request's client (RFC 6749 §2.3).
// Exactly one method must be used, and it must be the client's configured
// one. Errors are *oauth.Error: invalid_request for a malformed or
// ambiguous request, invalid_client for every failed authentication
// (with no hint which part failed; the cause is for logs).
func (a *Authenticator) Authenticate(ctx context.Context, cr *Credentials) (*Client, *oauth.Error) {
	methods := 0
	basic := cr.Authorization != ""
	if basic {
		methods++
	}
	if cr.HasClientSecret {
		methods++
	}
	if cr.HasAssertion || cr.ClientAssertionType != "" {
		methods++
	}
	switch {
	case methods > 1:
		// RFC 6749 §2.3: "MUST NOT use more than one authentication method in each request."
		return nil, oauth.ErrInvalidRequest.WithDescription("use exactly one client authentication method").WithReason("several_auth_methods")
	case methods == 0:
		return nil, oauth.ErrInvalidClient.WithDescription("client authentication required").WithReason("no_credentials").WithCause(errors.New("no credentials"))
	}
	switch {
	case basic:
		id, secret, err := parseBasic(cr.Authorization)
		if err != nil {
			return nil, failed("malformed_basic", "%v", err)
		}
		if cr.ClientID != "" && cr.ClientID != id {
			return nil, oauth.ErrInvalidRequest.WithDescription("client_id does not match the Authorization header").WithReason("client_id_mismatch")
		}
		return a.secret(id, secret, config.AuthSecretBasic)
	case cr.HasClientSecret:
		return inBody(a.secret(cr.ClientID, cr.ClientSecret, config.AuthSecretPost))
	default:
		return inBody(a.assertion(ctx, cr))
	}
}

// inBody marks a failure of credentials sent in the body, which is
// answered without a Basic challenge (oauth.Error.WithoutChallenge).
func inBody(c *Client, e *oauth.Error) (*Client, *oauth.Error) {
	if e != nil {
		e = e.WithoutChallenge()
	}
	return c, e
}

// failed is a refused client authentication: the same answer to the
// client whatever the reason, which only the log and the metric tell.
func failed(reason, cause string, args ...any) *oauth.Error {
	return oauth.ErrInvalidClient.WithDescription("client authentication failed").WithReason(reason).WithCause(fmt.Errorf(cause, args...))
}

// secret checks a client secret in constant time (hash of presented vs
// hash held since the snapshot was built).
func (a *Authenticator) secret(id, secret, method string) (*Client, *oauth.Error) {
	got := sha256.Sum256([]byte(secret))
	c := a.clients[id]
	want := dummy
	if c != nil {
		want = c.secretHash
	}
	ok := subtle.ConstantTimeCompare(got[:], want[:]) == 1
	switch {
	case c == nil:
		return nil, failed("unknown_client", "unknown client")
	case c.Method != method:
		return nil, failed("wrong_auth_method", "client %s uses %s, not %s", id, c.Method, method)
	case c.secretHash == dummy || !ok:
		return nil, failed("wrong_secret", "client %s: wrong secret", id)
	}
	return c, nil
}

// parseBasic decodes HTTP Basic credentials whose id and secret are each
// form-urlencoded (RFC 6749 §2.3.1).
func parseBasic(h string) (id, secret string, err error) {
	if len(h) < 6 || !strings.EqualFold(h[:6], "basic ") {
		return "", "", errors.New("authorization scheme is not Basic")
	}
	// Decoded on the stack when short, as every client's credentials are:
	// the string made of them is then the only copy.
	var buf [192]byte
	raw, err := base64.StdEncoding.AppendDecode(buf[:0], []byte(strings.TrimSpace(h[6:])))
	if err != nil {
		return "", "", errors.New("basic credentials are not base64")
	}
	u, p, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", errors.New("basic credentials lack ':'")
	}
	if id, err = url.QueryUnescape(u); err != nil {
		return "", "", errors.New("basic user is not form-urlencoded")
	}
	if secret, err = url.QueryUnescape(p); err != nil {
		return "", "", errors.New("basic password is not form-urlencoded")
	}
	if id == "" {
		return "", "", errors.New("empty basic user")
	}
	return id, secret, nil
}

// Why an assertion was refused, in the error_description: fixed text
// (never the assertion's content), so a client developer can tell an
// expired assertion from a wrong key.
var (
	errAssertionMalformed = assertionError("assertion_malformed", "the client assertion is not a signed JWT")
	errAssertionHeader    = assertionError("assertion_header", "the client assertion's header is refused: alg must be the algorithm of a registered key, and crit is not supported")
	errAssertionSignature = assertionError("assertion_signature", "the client assertion's signature does not verify with the client's registered keys")
	errAssertionIssuer    = assertionError("assertion_issuer", "the client assertion's iss and sub must both be the client_id")
	errAssertionClaims    = assertionError("assertion_claims", "the client assertion must have exp and jti claims")
	errAssertionExpired   = assertionError("assertion_expired", "the client assertion has expired")
	errAssertionEarly     = assertionError("assertion_not_yet_valid", "the client assertion is not valid yet (nbf or iat in the future)")
	errAssertionAudience  = assertionError("assertion_audience", "the client assertion's aud must be the token endpoint URL or the issuer")
	errAssertionTooLong   = assertionError("assertion_lifetime", "the client assertion expires more than 1 hour from now")
	errAssertionReplayed  = assertionError("assertion_replayed", "the client assertion's jti was already used")
)

func assertionError(reason, desc string) *oauth.Error {
	return oauth.ErrInvalidClient.WithDescription(desc).WithReason(reason)
}

// assertion implements private_key_jwt (RFC 7523 §2.2 and §3).
func (a *Authenticator) assertion(ctx context.Context, cr *Credentials) (*Client, *oauth.Error) {
	if cr.ClientAssertionType != AssertionType {
		return nil, oauth.ErrInvalidRequest.WithDescription("unsupported client_assertion_type")
	}
	if cr.ClientAssertion == "" {
		return nil, oauth.ErrInvalidRequest.WithDescription("client_assertion is empty")
	}
	raw := []byte(cr.ClientAssertion)
	// Which client: client_id if sent (RFC 7521 §4.2: it may be), else the
	// unverified sub, which the verified iss/sub must then equal.
	id := cr.ClientID
	if id == "" {
		tok, err := jwt.ParseInsecure(raw)
		if err != nil {
			return nil, errAssertionMalformed.WithCause(err)
		}
		id = tok.Subject()
	}
	c := a.clients[id]
	if c == nil {
		return nil, failed("unknown_client", "unknown client")
	}
	if c.Method != config.AuthPrivateKeyJWT || c.keys == nil {
		return nil, failed("wrong_auth_method", "client %s uses %s, not private_key_jwt", id, c.Method)
	}
	msg, err := jws.Parse(raw)
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, errAssertionMalformed.WithCause(fmt.Errorf("client %s: assertion: %v", id, err))
	}
	if len(keysFor(c.keys, msg.Signatures()[0].ProtectedHeaders())) == 0 {
		return nil, errAssertionHeader.WithCause(fmt.Errorf("client %s: assertion header refused", id))
	}
	tok, err := jwt.Parse(raw, jwt.WithKeyProvider(ownAlgorithm(c.keys)), jwt.WithValidate(false))
	if err != nil {
		return nil, errAssertionSignature.WithCause(fmt.Errorf("client %s: assertion: %v", id, err))
	}
	now := a.now()
	err = jwt.Validate(tok,
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
		jwt.WithAcceptableSkew(Skew),
		jwt.WithIssuer(id),
		jwt.WithSubject(id),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithRequiredClaim(jwt.JwtIDKey),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired()):
		return nil, errAssertionExpired.WithCause(fmt.Errorf("client %s: %v", id, err))
	case errors.Is(err, jwt.ErrTokenNotYetValid()), errors.Is(err, jwt.ErrInvalidIssuedAt()):
		return nil, errAssertionEarly.WithCause(fmt.Errorf("client %s: %v", id, err))
	case errors.Is(err, jwt.ErrRequiredClaim()):
		return nil, errAssertionClaims.WithCause(fmt.Errorf("client %s: %v", id, err))
	case err != nil: // iss or sub
		return nil, errAssertionIssuer.WithCause(fmt.Errorf("client %s: %v", id, err))
	}
	if !slices.ContainsFunc(tok.Audience(), func(aud string) bool { return slices.Contains(a.audiences, aud) }) ||
		a.singleAudience && len(tok.Audience()) != 1 {
		return nil, errAssertionAudience.WithCause(fmt.Errorf("client %s: assertion audience %v", id, tok.Audience()))
	}
	exp := tok.Expiration()
	if exp.After(now.Add(MaxAssertionLifetime + Skew)) {
		return nil, errAssertionTooLong.WithCause(fmt.Errorf("client %s: assertion exp %s ahead", id, exp.Sub(now).Round(time.Second)))
	}
	if a.store == nil {
		return nil, oauth.ErrServerError.WithCause(errors.New("private_key_jwt needs a data source for replay protection"))
	}
	// Remember the jti until the assertion expires (plus skew, during which
	// it would still be accepted): a replay is refused for its whole life.
	switch err := a.store.Assertions().Use(ctx, id, tok.JwtID(), exp.Add(Skew)); {
	case errors.Is(err, model.ErrReplay):
		return nil, errAssertionReplayed.WithCause(fmt.Errorf("client %s: assertion jti replayed", id))
	case err != nil:
		return nil, oauth.ErrServerError.WithCause(fmt.Errorf("record assertion: %w", err))
	}
	return c, nil
}
