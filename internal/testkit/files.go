package testkit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Head is the start of a config: schema 1, the default service role
// serving profiles, its zone local and that zone's data source db (ds is
// its value, e.g. SQLiteYAML(path)).
func Head(ds string, profiles ...string) string {
	return fmt.Sprintf(`schema: 1
service-roles:
  default: {zone: local, profiles: [%s]}
zones:
  local: {data-source: db}
data-sources:
  db: %s
`, strings.Join(profiles, ", "), ds)
}

// TokenConfig is a whole config of one token profile at /oauth/v2 serving
// discovery and jwks with issuer, signing with keys (the first signs):
// Head, then the profile. The keys section is the caller's (KeysConfig).
func TokenConfig(ds, issuer string, keys ...string) string {
	return Head(ds, "token") + fmt.Sprintf(`profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: %s
    signing-keys: [%s]
    endpoints: [discovery, jwks]
`, issuer, strings.Join(keys, ", "))
}

// Replace writes body over path as an editor does: a temporary file,
// hidden and not *.yaml so a watcher ignores it, renamed over path.
func Replace(path, body string) error {
	tmp, err := Stage(path, body)
	if err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Stage writes Replace's temporary file and returns its name, so a
// benchmark can time the rename alone.
func Stage(path, body string) (string, error) {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp~")
	return tmp, os.WriteFile(tmp, []byte(body), 0o644)
}

// WriteAtomic is Replace for tests.
func WriteAtomic(tb testing.TB, path, body string) {
	tb.Helper()
	if err := Replace(path, body); err != nil {
		tb.Fatal(err)
	}
}

// WriteFiles writes each name → body into dir with WriteAtomic.
func WriteFiles(tb testing.TB, dir string, files map[string]string) {
	tb.Helper()
	for name, body := range files {
		WriteAtomic(tb, filepath.Join(dir, name), body)
	}
}

// ConfigDir is a temporary directory holding files.
func ConfigDir(tb testing.TB, files map[string]string) string {
	tb.Helper()
	dir := tb.TempDir()
	WriteFiles(tb, dir, files)
	return dir
}
