package token

import (
	"slices"
	"strconv"
	"strings"
)

// redirectAllowed reports whether a redirect_uri is one of the client's:
// character for character (RFC 9700 §4.1.3), or, for a client with
// loopback-redirect-any-port, a registered loopback IP literal URI with
// another port or none (RFC 8252 §7.3: a native app listens on whatever
// port the system gives it). Only the port may differ.
func (cl *client) redirectAllowed(uri string) bool {
	if slices.Contains(cl.redirectURIs, uri) {
		return true
	}
	if !cl.loopbackAnyPort {
		return false
	}
	want, ok := withoutLoopbackPort(uri)
	return ok && slices.ContainsFunc(cl.redirectURIs, func(r string) bool {
		got, ok := withoutLoopbackPort(r)
		return ok && got == want
	})
}

// loopbackOrigins are the only hosts whose port may vary: IP literals, not
// "localhost", which a resolver or hosts file may point elsewhere
// (RFC 8252 §8.3).
var loopbackOrigins = []string{"http://127.0.0.1", "http://[::1]"}

// withoutLoopbackPort returns uri without its port if it is an http URI of
// a loopback IP literal, comparing the rest as written.
func withoutLoopbackPort(uri string) (string, bool) {
	for _, origin := range loopbackOrigins {
		rest, ok := strings.CutPrefix(uri, origin)
		if !ok {
			continue
		}
		if p, ok := strings.CutPrefix(rest, ":"); ok {
			end := strings.IndexAny(p, "/?#")
			if end < 0 {
				end = len(p)
			}
			if n, err := strconv.Atoi(p[:end]); err != nil || n < 1 || n > 65535 || p[:end] != strconv.Itoa(n) {
				return "", false
			}
			rest = p[end:]
		}
		// What follows the authority: a path, a query, or nothing; anything
		// else ("127.0.0.1.evil.example", "127.0.0.1@evil.example") is
		// another host.
		if rest != "" && rest[0] != '/' && rest[0] != '?' {
			return "", false
		}
		return origin + rest, true
	}
	return "", false
}
