package clientauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/jwstest"
	"github.com/keygate/keygate/internal/oauth"
	"github.com/keygate/keygate/internal/secret"
	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/testkit"
)

const tokenURL = "https://id.example.com/oauth/token"

func openStore(t *testing.T) model.Store {
	t.Helper()
	return testkit.SQLite(t)
}

func setup(t *testing.T) (*Authenticator, *ecdsa.PrivateKey) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	clients := []*config.Client{
		{Secret: secret.New("s3cret:with/odd+chars"), TokenEndpointAuthMethod: config.AuthSecretBasic},
		{Secret: secret.New("post-secret-0123456789"), TokenEndpointAuthMethod: config.AuthSecretPost},
		{PublicKeys: []string{pub}, TokenEndpointAuthMethod: config.AuthPrivateKeyJWT},
	}
	for i, n := range []string{"basic:client", "post", "jwt"} {
		clients[i].Name = n
	}
	a, err := New(clients, Options{Audiences: []string{tokenURL, "https://id.example.com/oauth"}, Store: openStore(t)})
	if err != nil {
		t.Fatal(err)
	}
	return a, priv
}

func basic(id, sec string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(sec)))
}

func assertion(t *testing.T, key *ecdsa.PrivateKey, mod func(jwt.Token)) string {
	t.Helper()
	tok := jwt.New()
	now := time.Now()
	for k, v := range map[string]any{"iss": "jwt", "sub": "jwt", "aud": tokenURL, "exp": now.Add(time.Minute), "iat": now, "jti": model.NewID()} {
		_ = tok.Set(k, v)
	}
	if mod != nil {
		mod(tok)
	}
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, key))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAuthenticate(t *testing.T) {
	a, key := setup(t)
	ctx := context.Background()
	good := assertion(t, key, nil)
	cases := []struct {
		name string
		cr   Credentials
		want string // client id, or error code
	}{
		{"basic urlencoded", Credentials{Authorization: basic("basic:client", "s3cret:with/odd+chars")}, "basic:client"},
		{"basic wrong secret", Credentials{Authorization: basic("basic:client", "nope")}, "invalid_client"},
		{"basic unknown client", Credentials{Authorization: basic("ghost", "s3cret:with/odd+chars")}, "invalid_client"},
		{"basic malformed", Credentials{Authorization: "Basic !!!"}, "invalid_client"},
		{"basic client_id mismatch", Credentials{Authorization: basic("basic:client", "s3cret:with/odd+chars"), ClientID: "post"}, "invalid_request"},
		{"post", Credentials{ClientID: "post", ClientSecret: "post-secret-0123456789", HasClientSecret: true}, "post"},
		{"post by a basic client", Credentials{ClientID: "basic:client", ClientSecret: "s3cret:with/odd+chars", HasClientSecret: true}, "invalid_client"},
		{"basic by a post client", Credentials{Authorization: basic("post", "post-secret-0123456789")}, "invalid_client"},
		{"two methods", Credentials{Authorization: basic("post", "x"), ClientID: "post", ClientSecret: "post-secret-0123456789", HasClientSecret: true}, "invalid_request"},
		{"none", Credentials{ClientID: "post"}, "invalid_client"},
		{"jwt", Credentials{ClientAssertionType: AssertionType, ClientAssertion: good, HasAssertion: true}, "jwt"},
		{"jwt replayed", Credentials{ClientAssertionType: AssertionType, ClientAssertion: good, HasAssertion: true}, "invalid_client"},
		{"jwt with client_id", Credentials{ClientID: "jwt", ClientAssertionType: AssertionType, ClientAssertion: assertion(t, key, nil), HasAssertion: true}, "jwt"},
		{"jwt wrong type", Credentials{ClientAssertionType: "x", ClientAssertion: assertion(t, key, nil), HasAssertion: true}, "invalid_request"},
		{"jwt wrong aud", Credentials{ClientAssertionType: AssertionType, HasAssertion: true, ClientAssertion: assertion(t, key, func(tok jwt.Token) { _ = tok.Set("aud", "https://other") })}, "invalid_client"},
		{"jwt no jti", Credentials{ClientAssertionType: AssertionType, HasAssertion: true, ClientAssertion: assertion(t, key, func(tok jwt.Token) { _ = tok.Remove("jti") })}, "invalid_client"},
		{"jwt no exp", Credentials{ClientAssertionType: AssertionType, HasAssertion: true, ClientAssertion: assertion(t, key, func(tok jwt.Token) { _ = tok.Remove("exp") })}, "invalid_client"},
		{"jwt exp too far", Credentials{ClientAssertionType: AssertionType, HasAssertion: true, ClientAssertion: assertion(t, key, func(tok jwt.Token) { _ = tok.Set("exp", time.Now().Add(2*time.Hour)) })}, "invalid_client"},
		{"jwt expired", Credentials{ClientAssertionType: AssertionType, HasAssertion: true, ClientAssertion: assertion(t, key, func(tok jwt.Token) { _ = tok.Set("exp", time.Now().Add(-time.Hour)) })}, "invalid_client"},
		{"jwt iss not client", Credentials{ClientAssertionType: AssertionType, HasAssertion: true, ClientAssertion: assertion(t, key, func(tok jwt.Token) { _ = tok.Set("iss", "post") })}, "invalid_client"},
		{"jwt other key", Credentials{ClientAssertionType: AssertionType, HasAssertion: true, ClientAssertion: func() string {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			return assertion(t, k, nil)
		}()}, "invalid_client"},
		{"jwt by a secret client", Credentials{ClientID: "post", ClientAssertionType: AssertionType, ClientAssertion: good, HasAssertion: true}, "invalid_client"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl, err := a.Authenticate(ctx, &c.cr)
			got := ""
			if err != nil {
				got = err.Code
				if cl != nil {
					t.Error("client with error")
				}
				if err.Description == "" || errors.Is(err, oauth.ErrServerError) {
					t.Errorf("error %v", err)
				}
			} else {
				got = cl.ID
			}
			if got != c.want {
				t.Errorf("got %s (%v), want %s", got, err, c.want)
			}
		})
	}
}

func TestBadPublicKey(t *testing.T) {
	c := &config.Client{PublicKeys: []string{"not pem"}, TokenEndpointAuthMethod: config.AuthPrivateKeyJWT}
	c.Name = "x"
	if _, err := New([]*config.Client{c}, Options{}); err == nil {
		t.Fatal("want error")
	}
}

func BenchmarkSecretBasic(b *testing.B) {
	c := &config.Client{Secret: secret.New("s3cret-0123456789abcdef"), TokenEndpointAuthMethod: config.AuthSecretBasic}
	c.Name = "c"
	a, _ := New([]*config.Client{c}, Options{})
	cr := Credentials{Authorization: basic("c", "s3cret-0123456789abcdef")}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(context.Background(), &cr); err != nil {
			b.Fatal(err)
		}
	}
}

// An assertion whose protected header names another alg than the
// client's key, none, or no alg at all, or that carries a crit extension,
// is refused even though its signature verifies with the key (RFC 7515
// §4.1.11, RFC 8725 §3.1).
func TestAssertionHeaderRefused(t *testing.T) {
	a, key := setup(t)
	ctx := context.Background()
	claims := func() []byte {
		now := time.Now()
		b, _ := json.Marshal(map[string]any{"iss": "jwt", "sub": "jwt", "aud": tokenURL,
			"exp": now.Add(time.Minute).Unix(), "iat": now.Unix(), "jti": model.NewID()})
		return b
	}
	// The control: the same forge with an honest header is accepted.
	ok := jwstest.Forge(t, key, map[string]any{"alg": "ES256", "typ": "JWT"}, claims())
	if _, err := a.Authenticate(ctx, &Credentials{ClientAssertionType: AssertionType, ClientAssertion: ok, HasAssertion: true}); err != nil {
		t.Fatalf("honest header refused: %v", err)
	}
	for name, h := range map[string]map[string]any{
		"alg none":      {"alg": "none"},
		"alg HS256":     {"alg": "HS256"},
		"alg missing":   {"typ": "JWT"},
		"alg ES384":     {"alg": "ES384"},
		"crit unknown":  {"alg": "ES256", "crit": []string{"urn:example:must-understand"}, "urn:example:must-understand": true},
		"crit b64":      {"alg": "ES256", "crit": []string{"b64"}, "b64": true},
		"crit empty":    {"alg": "ES256", "crit": []string{}},
		"alg lowercase": {"alg": "es256"},
	} {
		t.Run(name, func(t *testing.T) {
			tok := jwstest.Forge(t, key, h, claims())
			_, err := a.Authenticate(ctx, &Credentials{ClientAssertionType: AssertionType, ClientAssertion: tok, HasAssertion: true})
			if err == nil || err.Code != "invalid_client" {
				t.Fatalf("got %v, want invalid_client", err)
			}
		})
	}
}

// Assertions live as long as common clients make them (oauth2c: 10
// minutes), up to an hour; a refusal says why in fixed text; a jti stays
// refused for the assertion's whole life, across a GC run.
func TestAssertionLifetimeAndReasons(t *testing.T) {
	a, key := setup(t)
	ctx := context.Background()
	now := time.Now()
	var clock atomic.Int64
	a.now = func() time.Time { return now.Add(time.Duration(clock.Load())) }
	present := func(tok string) *oauth.Error {
		_, err := a.Authenticate(ctx, &Credentials{ClientAssertionType: AssertionType, ClientAssertion: tok, HasAssertion: true})
		return err
	}
	set := func(k string, v any) func(jwt.Token) { return func(tok jwt.Token) { _ = tok.Set(k, v) } }
	for _, lifetime := range []time.Duration{5 * time.Minute, 10 * time.Minute, time.Hour} {
		if err := present(assertion(t, key, set("exp", now.Add(lifetime)))); err != nil {
			t.Errorf("lifetime %s refused: %v", lifetime, err)
		}
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, c := range []struct {
		name, tok, want string
	}{
		{"too long", assertion(t, key, set("exp", now.Add(2*time.Hour))), "the client assertion expires more than 1 hour from now"},
		{"expired", assertion(t, key, set("exp", now.Add(-time.Hour))), "the client assertion has expired"},
		{"not yet valid", assertion(t, key, set("nbf", now.Add(time.Hour))), "the client assertion is not valid yet (nbf or iat in the future)"},
		{"wrong aud", assertion(t, key, set("aud", "https://elsewhere.example")), "the client assertion's aud must be the token endpoint URL or the issuer"},
		{"iss", assertion(t, key, set("iss", "post")), "the client assertion's iss and sub must both be the client_id"},
		{"no jti", assertion(t, key, func(tok jwt.Token) { _ = tok.Remove("jti") }), "the client assertion must have exp and jti claims"},
		{"other key", assertion(t, other, nil), "the client assertion's signature does not verify with the client's registered keys"},
		{"not a JWT", "a.b.c", "the client assertion is not a signed JWT"},
	} {
		err := present(c.tok)
		if err == nil || err.Code != "invalid_client" || err.Description != c.want {
			t.Errorf("%s: got %v, want invalid_client %q", c.name, err, c.want)
		}
	}

	// A 50-minute assertion replayed 45 minutes later, after a GC run.
	long := assertion(t, key, set("exp", now.Add(50*time.Minute)))
	if err := present(long); err != nil {
		t.Fatal(err)
	}
	clock.Store(int64(45 * time.Minute))
	if _, err := a.store.GC(ctx, now.Add(45*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := present(long); err == nil || err.Description != "the client assertion's jti was already used" {
		t.Fatalf("replay after 45 minutes: %v", err)
	}
}
