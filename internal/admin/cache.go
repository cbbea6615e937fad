package admin

import (
	"path/filepath"
	"strings"
	"sync"

	"github.com/keygate/keygate/internal/config"
)

// versionCache keeps what the admin derives from a published version —
// each role's lenient snapshot, its written entries, its lint — since a
// version directory never changes once written. Other directories (an
// upload's scratch copy, the admin's own config dir) are never cached.
type versionCache struct {
	mu      sync.Mutex
	publish string // the publish directory, resolved
	items   map[string]any
}

// maxCached bounds the entries (roles × versions × kinds).
const maxCached = 256

func newVersionCache(publishDir string) *versionCache {
	if real, err := filepath.EvalSymlinks(publishDir); err == nil {
		publishDir = real
	}
	return &versionCache{publish: publishDir, items: map[string]any{}}
}

// key is dir's version directory (resolved through ..data), or "" when
// dir is not a published version.
func (c *versionCache) key(dir string) string {
	if c == nil {
		return ""
	}
	real := dir
	if r, err := filepath.EvalSymlinks(filepath.Join(dir, "..data")); err == nil {
		real = r
	} else if r, err := filepath.EvalSymlinks(dir); err == nil {
		real = r
	}
	if filepath.Dir(real) != c.publish || !strings.HasPrefix(filepath.Base(real), "..v") {
		return ""
	}
	return real
}

func cached[T any](c *versionCache, dir, what string, compute func() T) T {
	k := c.key(dir)
	if k == "" {
		return compute()
	}
	k += "\x00" + what
	c.mu.Lock()
	v, ok := c.items[k]
	c.mu.Unlock()
	if ok {
		return v.(T)
	}
	out := compute()
	c.mu.Lock()
	if len(c.items) >= maxCached {
		clear(c.items)
	}
	c.items[k] = out
	c.mu.Unlock()
	return out
}

// snapshot loads dir for role once per version, from the version
// directory itself, so a switch of ..data during the load cannot cache
// one version's snapshot under another's key.
func (c *versionCache) snapshot(dir, role string, load func(dir string) *config.Snapshot) *config.Snapshot {
	if k := c.key(dir); k != "" {
		dir = k
	}
	return cached(c, dir, "snapshot\x00"+role, func() *config.Snapshot { return load(dir) })
}
