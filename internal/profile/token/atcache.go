package token

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
)

// atCacheSize bounds the verified-claims cache of one profile.
const atCacheSize = 10_000

// atCache holds the claims of JWT access tokens this profile has already
// verified (signature, typ, kid, alg, iss), keyed by the SHA-256 of the
// token, so a repeated introspection or userinfo call skips the parse and
// signature check. It caches only that work: expiry and revocation are
// still the callers' checks on every call. An entry is served only while
// now is before the token's exp. The cache belongs to one Profile, which is
// rebuilt on every reload and key rotation, so a token of a key removed in
// a reload is verified afresh against the new key set. When full it is
// cleared (simple, bounded; the next calls refill it).
type atCache struct {
	m   sync.Map // [sha256.Size]byte -> *atClaims (never mutated once stored)
	n   atomic.Int64
	max int64
}

func newATCache(max int) *atCache { return &atCache{max: int64(max)} }

func atCacheKey(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// get returns the cached claims for key, or false if absent or expired at
// now. A nil cache never hits.
func (c *atCache) get(key [sha256.Size]byte, now time.Time) (*atClaims, bool) {
	if c == nil {
		return nil, false
	}
	v, ok := c.m.Load(key)
	if !ok {
		return nil, false
	}
	cl := v.(*atClaims)
	if !now.Before(time.Unix(cl.Exp, 0)) {
		if c.m.CompareAndDelete(key, v) {
			c.n.Add(-1)
		}
		return nil, false
	}
	return cl, true
}

// put stores verified claims unless they are already expired at now.
func (c *atCache) put(key [sha256.Size]byte, cl *atClaims, now time.Time) {
	if c == nil || !now.Before(time.Unix(cl.Exp, 0)) {
		return
	}
	if c.n.Load() >= c.max {
		c.m.Clear()
		c.n.Store(0)
	}
	if _, loaded := c.m.LoadOrStore(key, cl); !loaded {
		c.n.Add(1)
	}
}
