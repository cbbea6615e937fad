package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// bench10k writes a config.d with n clients (secrets in an env file) and
// returns the options and the path of the small file to edit.
func bench10k(b *testing.B, n int) (Options, string) { return bench10kT(b, n) }

func bench10kT(b testing.TB, n int) (Options, string) {
	dir, secrets := b.TempDir(), b.TempDir()
	var y, e strings.Builder
	y.WriteString("clients:\n")
	for i := range n {
		fmt.Fprintf(&y, `  client-%05[1]d:
    profile: token
    secret: ${CLIENT_%05[1]d_SECRET}
    redirect-uris: [https://app-%05[1]d.example.com/callback]
    grant-types: [authorization_code, refresh_token]
    scopes: [openid, profile, "api%02[2]d:read"]
`, i, i%40)
		fmt.Fprintf(&e, "CLIENT_%05d_SECRET=0123456789abcdef0123456789abcdef%05d\n", i, i)
	}
	env := filepath.Join(secrets, "clients.env")
	for path, body := range map[string]string{
		env:                                   e.String(),
		filepath.Join(secrets, "k.pem"):       "pem\n",
		filepath.Join(dir, "00-base.yaml"):    strings.Replace(base, "$KEY", `"${file:`+filepath.Join(secrets, "k.pem")+`}"`, 1),
		filepath.Join(dir, "30-clients.yaml"): y.String(),
	} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	return Options{Dir: dir, EnvFiles: []string{env}}, filepath.Join(dir, "00-base.yaml")
}

// BenchmarkLoadCachedSmallEdit is a reload's Load with 10,000 clients when
// only the small file changed: the clients file comes from the cache.
func BenchmarkLoadCachedSmallEdit(b *testing.B) {
	opts, small := bench10k(b, 10_000)
	opts.Cache = NewCache()
	if _, err := Load(opts); err != nil {
		b.Fatal(err.Error()[:min(len(err.Error()), 500)])
	}
	orig, _ := os.ReadFile(small)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		edited := strings.Replace(string(orig), "https://id.example.com/oauth", fmt.Sprintf("https://id%d.example.com/oauth", i), 1)
		if err := os.WriteFile(small, []byte(edited), 0o600); err != nil {
			b.Fatal(err)
		}
		if _, err := Load(opts); err != nil {
			b.Fatal(err.Error()[:min(len(err.Error()), 500)])
		}
	}
}

// BenchmarkLoad10kNoCache is a load from scratch.
func BenchmarkLoad10kNoCache(b *testing.B) {
	opts, _ := bench10k(b, 10_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(opts); err != nil {
			b.Fatal(err.Error()[:min(len(err.Error()), 500)])
		}
	}
}

// TestCacheSize reports the heap a warm cache of 10,000 clients keeps.
func TestCacheSize(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	opts, _ := bench10kT(t, 10_000)
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	h0 := heap()
	c := NewCache()
	opts.Cache = c
	snap, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	h1 := heap()
	runtime.KeepAlive(c)
	c = nil
	h2 := heap()
	runtime.KeepAlive(snap)
	t.Logf("snapshot+cache %.1f MB, cache alone %.1f MB", float64(h1-h0)/1e6, float64(h1-h2)/1e6)
}
