package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/readfile"
)

// Values from the environment or a file may be secrets: an error quotes
// the text as written in config.d, never the value it expanded to.
func TestErrorsNeverQuoteOutsideValues(t *testing.T) {
	secrets := t.TempDir()
	issuerFile := filepath.Join(secrets, "issuer")
	must(t, os.WriteFile(issuerFile, []byte("FILE-CONTENT-ABC not a url\n"), 0o600))
	client := `clients:
  web:
    profile: $PROFILE
    secret: $SECRET
    grant-types: [authorization_code, $GRANT]
    scopes: [$SCOPE]
    redirect-uris: [$REDIRECT]
`
	cases := []struct {
		name, replace, with string
		want                []string
	}{
		{"issuer from a file", "https://id.example.com/oauth", "${file:" + issuerFile + "}", []string{
			`profiles.token.issuer: must be an absolute URL such as https://id.example.com/oauth/v2, got "${file:` + issuerFile + `}" (value not shown)`}},
		{"issuer from a variable", "https://id.example.com/oauth", "$ISSUER", []string{
			`profiles.token.issuer: must use https (http is allowed for localhost only), got "$ISSUER" (value not shown)`}},
		{"path from a variable", "path: /oauth", "path: ${ISSUER}", []string{
			`profiles.token.path: must be a URL path starting with /, got "${ISSUER}" (value not shown)`}},
	}
	env := []string{"KEY=dummy-pem", "SECRET=" + validSecret, "ISSUER=http://ENV-CONTENT-XYZ.example.com",
		"PROFILE=ENV-CONTENT-PROFILE", "GRANT=ENV-CONTENT-GRANT", "SCOPE=ENV CONTENT", "REDIRECT=ENV-CONTENT-REDIRECT"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, map[string]string{"00-base.yaml": strings.Replace(base, tc.replace, tc.with, 1), "c.yaml": client},
				Options{Environ: env})
			msg := errString(err)
			for _, w := range append(tc.want,
				`clients.web.profile: refers to profile "$PROFILE" (value not shown), which is not defined`,
				`clients.web.grant-types[1]: "$GRANT" (value not shown) is not one of`,
				`clients.web.scopes[0]: "$SCOPE" (value not shown) is not a valid scope token`,
				`clients.web.redirect-uris[0]: must be an absolute URI, got "$REDIRECT" (value not shown)`) {
				if !strings.Contains(msg, w) {
					t.Errorf("errors lack %q:\n%s", w, msg)
				}
			}
			if strings.Contains(msg, "CONTENT") {
				t.Errorf("an error quotes a value from outside:\n%s", msg)
			}
		})
	}
}

// A ${file:} target that is not a small regular file fails the load,
// naming the file, quickly and without reading it whole.
func TestFileTargetsAreBounded(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	must(t, syscall.Mkfifo(fifo, 0o600))
	big := filepath.Join(dir, "big.pem")
	must(t, os.WriteFile(big, make([]byte, readfile.MaxSecretFile+1), 0o600))
	for _, tc := range []struct {
		path string
		want error
	}{
		{"/dev/zero", readfile.ErrNotRegular},
		{fifo, readfile.ErrNotRegular},
		{big, readfile.ErrTooLarge},
		{dir, readfile.ErrNotRegular},
	} {
		start := time.Now()
		_, err := load(t, map[string]string{"00-base.yaml": strings.Replace(base, "$KEY", `"${file:`+tc.path+`}"`, 1)}, Options{})
		if err == nil || !strings.Contains(err.Error(), "keys.k1.private-key: read ${file:"+tc.path+"}") {
			t.Errorf("%s: err = %v", tc.path, err)
		}
		if err != nil && !strings.Contains(err.Error(), tc.want.Error()) {
			t.Errorf("%s: err %v does not say %v", tc.path, err, tc.want)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: took %s", tc.path, d)
		}
	}
}

// Many targets each under the per-file cap cannot add up past the total.
func TestLoadTotalIsBounded(t *testing.T) {
	dir := t.TempDir()
	var keys strings.Builder
	keys.WriteString("keys:\n")
	chunk := make([]byte, readfile.MaxSecretFile)
	for i := range readfile.MaxTotal/readfile.MaxSecretFile + 1 {
		p := filepath.Join(dir, "k"+strings.Repeat("x", i%3)+string(rune('a'+i%26))+strings.Repeat("y", i/26)+".pem")
		must(t, os.WriteFile(p, chunk, 0o600))
		keys.WriteString("  k" + strings.Repeat("y", i) + ": {algorithm: ES256, private-key: \"${file:" + p + "}\"}\n")
	}
	_, err := load(t, map[string]string{"00-base.yaml": base, "k.yaml": keys.String()}, Options{})
	if err == nil || !strings.Contains(err.Error(), "the configuration reads more than 64 MiB in all") {
		t.Fatalf("err = %.300v", err)
	}
}

// KEYGATE_FILE_DIRS: a path outside the allowed directories is refused
// before it is read, also when "../" climbs out of one.
func TestFileDirs(t *testing.T) {
	allowed := t.TempDir()
	inside := filepath.Join(allowed, "k.pem")
	must(t, os.WriteFile(inside, []byte("PEM"), 0o600))
	outside := filepath.Join(t.TempDir(), "k.pem")
	must(t, os.WriteFile(outside, []byte("PEM"), 0o600))
	for path, ok := range map[string]bool{
		inside:  true,
		outside: false,
		allowed + "/../" + filepath.Base(filepath.Dir(outside)) + "/k.pem": false,
		"/proc/self/environ": false,
	} {
		_, err := load(t, map[string]string{"00-base.yaml": strings.Replace(base, "$KEY", `"${file:`+path+`}"`, 1)},
			Options{FileDirs: []string{allowed}})
		if ok != (err == nil) {
			t.Errorf("%s: err = %v, want ok=%v", path, err, ok)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "is outside the directories KEYGATE_FILE_DIRS allows")) {
			t.Errorf("%s: err = %v", path, err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
