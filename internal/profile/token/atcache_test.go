package token

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keys"
)

// cached reports whether the profile has verified claims cached for tok.
func cached(p *Profile, tok string) bool {
	_, ok := p.atCache.get(atCacheKey(tok), p.now())
	return ok
}

func TestIntrospectCachedIdentical(t *testing.T) {
	e := newEnv(t, "https://id.example.com/oauth/v2")
	tok := e.issue("svc", svcSecret)
	if cached(e.p, tok) {
		t.Fatal("cached before any verification")
	}
	first := e.introspect(tok)
	if !cached(e.p, tok) {
		t.Fatal("not cached after introspection")
	}
	second := e.introspect(tok)
	if first["active"] != true || !reflect.DeepEqual(first, second) {
		t.Fatalf("uncached %v, cached %v", first, second)
	}
	// Opaque tokens and garbage are never cached.
	op := e.issue("opaque", opaqueSecret)
	e.introspect(op)
	e.introspect("a.b.c")
	if n := e.p.atCache.n.Load(); n != 1 {
		t.Fatalf("cache holds %d entries, want 1", n)
	}
}

func TestIntrospectCachedRevoked(t *testing.T) {
	e := newEnv(t, "https://id.example.com/oauth/v2")
	tok := e.issue("svc", svcSecret)
	if m := e.introspect(tok); m["active"] != true {
		t.Fatal(m)
	}
	e.revoke(tok, basicAuth("svc", svcSecret), "")
	if !cached(e.p, tok) {
		t.Fatal("revocation should not depend on eviction: want the entry still cached")
	}
	if m := e.introspect(tok); len(m) != 1 || m["active"] != false {
		t.Fatalf("revoked but cached: %v", m)
	}
}

func TestIntrospectCachedExpired(t *testing.T) {
	e := newEnv(t, "https://id.example.com/oauth/v2")
	tok := e.issue("svc", svcSecret)
	if m := e.introspect(tok); m["active"] != true {
		t.Fatal(m)
	}
	e.offset.Store(int64(5*time.Minute + time.Second)) // lifetime is 5m
	if cached(e.p, tok) {
		t.Fatal("expired entry served from the cache")
	}
	if m := e.introspect(tok); len(m) != 1 || m["active"] != false {
		t.Fatalf("expired: %v", m)
	}
	if cached(e.p, tok) {
		t.Fatal("expired token was cached")
	}
}

func TestCacheDoesNotSurviveKeyRemoval(t *testing.T) {
	e := newEnv(t, "https://id.example.com/oauth/v2")
	tok := e.issue("svc", svcSecret) // signed by the active key
	if m := e.introspect(tok); m["active"] != true {
		t.Fatal(m)
	}
	if !cached(e.p, tok) {
		t.Fatal("not cached")
	}
	var rest []*keys.Signer
	for _, s := range e.keys.All {
		if s != e.keys.Active {
			rest = append(rest, s)
		}
	}
	ks, err := keys.NewSet(rest)
	if err != nil {
		t.Fatal(err)
	}
	reload := func(ks *keys.Set) *Profile {
		p, err := New(e.snap, e.cp, ks, Deps{Store: e.store, Previous: e.p})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, ok, err := reload(ks).lookup(context.Background(), tok); ok || err != nil {
		t.Fatalf("token of a removed key accepted after reload: ok=%v err=%v", ok, err)
	}
	// A reload that keeps the key still accepts it (verified afresh).
	p := reload(e.keys)
	if cached(p, tok) {
		t.Fatal("cache carried over a reload")
	}
	if _, ok, err := p.lookup(context.Background(), tok); !ok || err != nil {
		t.Fatalf("reload with the same keys: ok=%v err=%v", ok, err)
	}
}

func TestATCacheBounded(t *testing.T) {
	c := newATCache(3)
	now := time.Now()
	for i := range 10 {
		c.put(atCacheKey(string(rune('a'+i))), &atClaims{Jti: "x", Exp: now.Add(time.Minute).Unix()}, now)
		if n := c.n.Load(); n > 3 || n < 1 {
			t.Fatalf("size %d after %d puts", n, i+1)
		}
	}
	size := 0
	c.m.Range(func(any, any) bool { size++; return true })
	if size > 3 {
		t.Fatalf("map holds %d entries", size)
	}
	c.put(atCacheKey("old"), &atClaims{Exp: now.Unix()}, now)
	if _, ok := c.get(atCacheKey("old"), now); ok {
		t.Fatal("expired claims stored")
	}
	var nilCache *atCache
	nilCache.put(atCacheKey("x"), &atClaims{Exp: now.Add(time.Minute).Unix()}, now)
	if _, ok := nilCache.get(atCacheKey("x"), now); ok {
		t.Fatal("nil cache hit")
	}
}
