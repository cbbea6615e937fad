package token

import (
	"github.com/gofiber/fiber/v2"

	"github.com/keygate/keygate/internal/config"
)

// Wrap returns a handler that runs before an endpoint's own handler (e.g.
// to label metrics with the endpoint name and recover panics). It must
// call c.Next.
type Wrap func(endpoint string) fiber.Handler

// Mount registers the endpoints listed in the profile's config, at its
// path.
func (p *Profile) Mount(r fiber.Router) { p.MountWith(r, nil) }

// MountWith is Mount with wrap (may be nil) placed before every endpoint.
// A listed endpoint answers other methods with 405 and an Allow header
// (RFC 9110 §15.5.6).
func (p *Profile) MountWith(r fiber.Router, wrap Wrap) {
	get := func(endpoint string, h fiber.Handler) {
		if !p.served[endpoint] {
			return
		}
		path := p.path + endpointPaths[endpoint]
		r.Get(path, chain(wrap, endpoint, h)...)
		r.All(path, chain(wrap, endpoint, methodNotAllowed("GET, HEAD"))...)
	}
	// cors wraps the endpoints browser apps fetch and answers their
	// preflights.
	cors := func(endpoint, methods string, h fiber.Handler) fiber.Handler {
		if !corsEndpoints[endpoint] {
			return h
		}
		r.Options(p.path+endpointPaths[endpoint], chain(wrap, endpoint, p.preflight(methods))...)
		return p.withCORS(h)
	}
	post := func(endpoint string, h fiber.Handler) {
		if !p.served[endpoint] {
			return
		}
		path := p.path + endpointPaths[endpoint]
		h = cors(endpoint, "POST", h)
		r.Post(path, chain(wrap, endpoint, h)...)
		r.All(path, chain(wrap, endpoint, methodNotAllowed("POST"))...)
	}
	getPost := func(endpoint string, h fiber.Handler) {
		if !p.served[endpoint] {
			return
		}
		path := p.path + endpointPaths[endpoint]
		h = cors(endpoint, "GET, HEAD, POST", h)
		r.Get(path, chain(wrap, endpoint, h)...)
		r.Post(path, chain(wrap, endpoint, h)...)
		r.All(path, chain(wrap, endpoint, methodNotAllowed("GET, HEAD, POST"))...)
	}
	get(config.EndpointDiscovery, p.serveDiscovery)
	if path := p.MetadataPath(); path != "" {
		// The same document at the RFC 8414 location, which internal/served
		// keeps unique among a role's profiles.
		r.Get(path, chain(wrap, config.EndpointDiscovery, p.serveDiscovery)...)
		r.All(path, chain(wrap, config.EndpointDiscovery, methodNotAllowed("GET, HEAD"))...)
	}
	get(config.EndpointJWKS, p.serveJWKS)
	post(config.EndpointToken, p.serveToken)
	post(config.EndpointIntrospect, p.serveIntrospect)
	post(config.EndpointRevoke, p.serveRevoke)
	getPost(config.EndpointAuthorize, p.serveAuthorize) // OpenID Connect Core 1.0 §3.1.2.1
	getPost(config.EndpointUserinfo, p.serveUserinfo)   // §5.3.1
	getPost(config.EndpointLogout, p.serveLogout)       // RP-Initiated Logout 1.0 §2
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
