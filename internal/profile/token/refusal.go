package token

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync/atomic"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/time/rate"

	"github.com/keygate/keygate/internal/oauth"
)

// Refused requests (a wrong secret, an expired code) are logged at info,
// so an operator can tell a client developer why without turning on
// debug logs; but a client that retries in a loop, or an attacker, must
// not fill the disk. One limiter for the process: 20 lines a second, in
// bursts of up to 100, and the next line written says how many were
// dropped before it.
var refusals = struct {
	limit      *rate.Limiter
	suppressed atomic.Int64
}{limit: rate.NewLimiter(20, 100)}

// HeaderRequestID names a refused request in its response and in the log
// line about it, so a client developer's report finds the line.
const HeaderRequestID = "X-Request-Id"

// logRefusal writes the info line about a refused request (4xx), rate
// limited. client is the id the request claims (request input, quoted by
// the handler as any value), reason the error's fixed reason word.
func (p *Profile) logRefusal(c *fiber.Ctx, endpoint, client string, e *oauth.Error) {
	id := requestID(c)
	c.Context().Response.Header.Set(HeaderRequestID, id)
	if !p.log.Enabled(c.Context(), slog.LevelInfo) {
		return
	}
	if !refusals.limit.Allow() {
		refusals.suppressed.Add(1)
		return
	}
	attrs := []slog.Attr{slog.String("profile", p.name), slog.String("endpoint", endpoint), slog.String("error", e.Code),
		slog.String("reason", reasonOf(e)), slog.String("client", client), slog.String("request_id", id)}
	if n := refusals.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, slog.Int64("suppressed_before", n))
	}
	p.log.LogAttrs(c.Context(), slog.LevelInfo, "oauth request refused", attrs...)
}

// reasonOf is e's reason, or "unspecified" where the code says it all.
func reasonOf(e *oauth.Error) string {
	if e.Reason == "" {
		return "unspecified"
	}
	return e.Reason
}

// requestID is the request's X-Request-Id when a proxy in front set a
// plain one (at most 64 letters, digits, '-', '_' or '.'), else a new
// random one.
func requestID(c *fiber.Ctx) string {
	if v := c.Get(HeaderRequestID); v != "" && len(v) <= 64 && plainID(v) {
		return v
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func plainID(s string) bool {
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '-' || ch == '_' || ch == '.') {
			return false
		}
	}
	return true
}
