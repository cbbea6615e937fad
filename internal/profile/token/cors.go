package token

import (
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/keygate/keygate/internal/config"
)

// corsEndpoints are the endpoints a browser app calls with fetch: the code
// exchange and refresh, revocation, userinfo, and the push of its
// authorization request. Discovery and JWKS are public documents with a
// wildcard origin (sendPublic); authorize and logout are navigations, not
// fetches.
var corsEndpoints = map[string]bool{config.EndpointToken: true, config.EndpointRevoke: true, config.EndpointUserinfo: true,
	config.EndpointPAR: true}

// corsOrigins is the union of the allowed-origins of the profile's
// clients. A preflight carries no client, so the answer is per profile;
// none of these endpoints reads cookies, so an allowed origin gains
// nothing but the ability to read the responses to its own requests.
func corsOrigins(clients []*config.Client) map[string]bool {
	out := map[string]bool{}
	for _, c := range clients {
		for _, o := range c.AllowedOrigins {
			out[o] = true
		}
	}
	return out
}

// withCORS names an allowed Origin in the response of h. Never "*" and
// never Access-Control-Allow-Credentials: the endpoints authenticate with
// headers and bodies, not cookies. Vary: Origin in every case, so a cache
// never serves one origin's answer to another.
func (p *Profile) withCORS(h fiber.Handler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		c.Vary(fiber.HeaderOrigin)
		if o := c.Get(fiber.HeaderOrigin); p.corsOrigins[o] {
			c.Set(fiber.HeaderAccessControlAllowOrigin, o)
			// Userinfo's errors are in WWW-Authenticate (RFC 6750 §3), and
			// a DPoP client reads its next nonce (RFC 9449 §8).
			c.Set(fiber.HeaderAccessControlExposeHeaders, fiber.HeaderWWWAuthenticate+", "+headerDPoPNonce)
		}
		return h(c)
	}
}

// preflight answers a CORS preflight (OPTIONS with Origin and
// Access-Control-Request-Method) for an endpoint served with methods; any
// other OPTIONS request is a 405 as before.
func (p *Profile) preflight(methods string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		o, want := c.Get(fiber.HeaderOrigin), c.Get(fiber.HeaderAccessControlRequestMethod)
		if o == "" || want == "" {
			return methodNotAllowed(methods)(c)
		}
		c.Vary(fiber.HeaderOrigin)
		if !p.corsOrigins[o] || !strings.Contains(", "+methods+", ", ", "+want+", ") {
			return c.SendStatus(http.StatusForbidden)
		}
		c.Set(fiber.HeaderAccessControlAllowOrigin, o)
		c.Set(fiber.HeaderAccessControlAllowMethods, methods)
		c.Set(fiber.HeaderAccessControlAllowHeaders, "Authorization, Content-Type, DPoP")
		c.Set(fiber.HeaderAccessControlMaxAge, "600")
		return c.SendStatus(http.StatusNoContent)
	}
}
