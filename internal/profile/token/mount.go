package token

import (
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/keygate/keygate/internal/config"
)

// Wrap returns a handler that runs before an endpoint's own handler (e.g.
// to label metrics with the endpoint name and recover panics). It must
// call c.Next.
type Wrap = func(endpoint string) fiber.Handler

// Mount registers the endpoints listed in the profile's config, at its
// path.
func (p *Profile) Mount(r fiber.Router) { p.MountWith(r, nil) }

// MountWith is Mount with wrap (may be nil) placed before every endpoint.
// A listed endpoint answers other methods with 405 and an Allow header
// (RFC 9110 §15.5.6).
func (p *Profile) MountWith(r fiber.Router, wrap Wrap) {
	// cors wraps the endpoints browser apps fetch and answers their
	// preflights; other endpoints keep h as it is.
	cors := func(endpoint, methods string, h fiber.Handler) fiber.Handler {
		if !corsEndpoints[endpoint] {
			return h
		}
		r.Options(p.path+endpointPaths[endpoint], chain(wrap, endpoint, p.preflight(methods))...)
		return p.withCORS(h)
	}
	// route mounts a served endpoint for the methods in allow (GET, POST
	// or both), and 405 for the others.
	route := func(endpoint, allow string, h fiber.Handler) {
		if !p.served[endpoint] {
			return
		}
		path := p.path + endpointPaths[endpoint]
		h = cors(endpoint, allow, h)
		if strings.Contains(allow, "GET") {
			r.Get(path, chain(wrap, endpoint, h)...)
		}
		if strings.Contains(allow, "POST") {
			r.Post(path, chain(wrap, endpoint, h)...)
		}
		r.All(path, chain(wrap, endpoint, methodNotAllowed(allow))...)
	}
	const get, post, getPost = "GET, HEAD", "POST", "GET, HEAD, POST"
	route(config.EndpointDiscovery, get, p.serveDiscovery)
	if path := p.MetadataPath(); path != "" {
		// The same document at the RFC 8414 location, which internal/served
		// keeps unique among a role's profiles.
		r.Get(path, chain(wrap, config.EndpointDiscovery, p.serveDiscovery)...)
		r.All(path, chain(wrap, config.EndpointDiscovery, methodNotAllowed(get))...)
	}
	route(config.EndpointJWKS, get, p.serveJWKS)
	route(config.EndpointToken, post, p.serveToken)
	route(config.EndpointIntrospect, post, p.serveIntrospect)
	route(config.EndpointRevoke, post, p.serveRevoke)
	route(config.EndpointAuthorize, getPost, p.serveAuthorize)                  // OpenID Connect Core 1.0 §3.1.2.1
	route(config.EndpointUserinfo, getPost, p.serveUserinfo)                    // §5.3.1
	route(config.EndpointLogout, getPost, p.serveLogout)                        // RP-Initiated Logout 1.0 §2
	route(config.EndpointPAR, post, p.servePAR)                                 // RFC 9126 §2
	route(config.EndpointDeviceAuthorization, post, p.serveDeviceAuthorization) // RFC 8628 §3.1
	if p.served[config.EndpointDeviceAuthorization] {
		// The verification page for the user's browser (RFC 8628 §3.3).
		page := p.path + PathDevice
		r.Get(page, chain(wrap, config.EndpointDeviceAuthorization, p.serveDevicePage)...)
		r.Post(page, chain(wrap, config.EndpointDeviceAuthorization, p.serveDevicePage)...)
		r.All(page, chain(wrap, config.EndpointDeviceAuthorization, methodNotAllowed(getPost))...)
	}
}

func chain(wrap Wrap, endpoint string, h fiber.Handler) []fiber.Handler {
	if wrap == nil {
		return []fiber.Handler{h}
	}
	return []fiber.Handler{wrap(endpoint), h}
}

func methodNotAllowed(allow string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderAllow, allow)
		return fiber.ErrMethodNotAllowed
	}
}
