package token

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/storage/model"
)

// benchRequest is a client_credentials request with Basic credentials.
func benchRequest(authz string) *fasthttp.Request {
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI("/oauth/v2/token")
	req.Header.SetContentType("application/x-www-form-urlencoded")
	req.Header.Set(fasthttp.HeaderAuthorization, authz)
	req.SetBodyString("grant_type=client_credentials&scope=a:read")
	return &req
}

// serve runs h on a fresh copy of tmpl (so form parsing is not cached
// between iterations) and checks for 200.
func serve(b *testing.B, h fasthttp.RequestHandler, tmpl *fasthttp.Request) {
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		tmpl.CopyTo(&ctx.Request)
		ctx.Response.Reset()
		h(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// BenchmarkClientCredentialsES256 is the whole token endpoint in process:
// fiber routing, form parsing, Basic authentication, policy, an ES256
// JWT access token, the JSON response.
func BenchmarkClientCredentialsES256(b *testing.B) {
	e := newEnv(b, "https://id.example.com/oauth/v2")
	serve(b, e.app.Handler(), benchRequest(basicAuth("svc", svcSecret)))
}

// BenchmarkClientCredentialsEdDSA is BenchmarkClientCredentialsES256 with
// an Ed25519 key: the signature is cheaper, so the profile's own overhead
// weighs more.
func BenchmarkClientCredentialsEdDSA(b *testing.B) {
	ed := keySet(b).All[1]
	ks, err := keys.NewSet([]*keys.Signer{ed})
	if err != nil {
		b.Fatal(err)
	}
	e := newEnvKeys(b, "https://id.example.com/oauth/v2", ks)
	serve(b, e.app.Handler(), benchRequest(basicAuth("svc", svcSecret)))
}

// BenchmarkMinimalHandler is the yardstick of the token endpoint's cost: a
// minimal fiber handler that checks a SHA-256 secret and signs one ES256
// JWT, so the profile's overhead over the signature itself shows.
func BenchmarkMinimalHandler(b *testing.B) {
	signer := keySet(b).Active
	want := sha256.Sum256([]byte(svcSecret))
	app := fiber.New()
	app.Post("/oauth/v2/token", func(c *fiber.Ctx) error {
		h := string(c.Request().Header.Peek(fiber.HeaderAuthorization))
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h, "Basic "))
		if err != nil {
			return fiber.ErrUnauthorized
		}
		id, sec, _ := strings.Cut(string(raw), ":")
		got := sha256.Sum256([]byte(sec))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return fiber.ErrUnauthorized
		}
		now := time.Now()
		payload, _ := json.Marshal(map[string]any{"iss": "https://id.example.com/oauth/v2", "sub": id, "aud": "https://id.example.com/oauth/v2",
			"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "jti": model.NewID(), "client_id": id, "scope": c.FormValue("scope")})
		tok, err := signer.Sign(payload, "at+jwt")
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"access_token": string(tok), "token_type": "Bearer", "expires_in": 300})
	})
	serve(b, app.Handler(), benchRequest(basicAuth("svc", svcSecret)))
}
