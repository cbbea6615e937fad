package validate

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/config"
)

const base = `schema: 1
service-roles:
  default: {zone: z, profiles: [token, other]}
zones:
  z: {data-source: d}
data-sources:
  d: {type: sqlite, path: /tmp/x.db}
keys:
  k: {algorithm: ES256, private-key: $SIGNING_KEY}
profiles:
  token: {type: token, path: /oauth/v2, issuer: "https://id.example.com/oauth/v2", signing-keys: [k], endpoints: [discovery]}
  other: {type: token, path: /other, issuer: "https://other.example.com/oauth/v2", signing-keys: [k], endpoints: [discovery]}
`

func dir(t *testing.T, body string) string {
	t.Helper()
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, "a.yaml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

func lines[T interface{ Error() string }](es []T) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Error())
	}
	return out
}

// Without the stage's variables, the missing variable and the error only
// building finds (two issuers with one RFC 8414 metadata URL) are both
// reported: the key the profiles sign with is a stand-in.
func TestMissingVariableDoesNotHideBuildErrors(t *testing.T) {
	rep := Role(config.Options{Dir: dir(t, base), Role: "default"})
	want := []string{
		"a.yaml:9:38: keys.k.private-key: variable SIGNING_KEY is not set (set it in the environment or an env file, or write ${SIGNING_KEY:-default})",
		`a.yaml:12:3: profiles.other.issuer: its metadata URL /.well-known/oauth-authorization-server/oauth/v2 is already profile "token"'s in role "default"; give the issuers different paths`,
	}
	if got := lines(rep.Errors); !slices.Equal(got, want) {
		t.Errorf("errors\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if rep.NotChecked != nil {
		t.Errorf("not checked %v: without Lenient a missing variable is an error", rep.NotChecked)
	}
}

func TestLenient(t *testing.T) {
	fixed := strings.Replace(base, "https://other.example.com/oauth/v2", "https://other.example.com/other", 1)
	for _, tc := range []struct {
		name       string
		body       string
		errs       []string
		notChecked []string
	}{
		{name: "vault key: valid, the key not checked", body: fixed,
			notChecked: []string{"a.yaml:9:38: keys.k.private-key: not checked: needs variable SIGNING_KEY"}},
		{name: "an unresolved issuer does not make the profile an error", body: strings.Replace(fixed, `"https://other.example.com/other"`, "$OTHER_ISSUER", 1),
			notChecked: []string{"a.yaml:9:38: keys.k.private-key: not checked: needs variable SIGNING_KEY", "a.yaml:12:46: profiles.other.issuer: not checked: needs variable OTHER_ISSUER"}},
		{name: "a literal bad key is an error", body: strings.Replace(fixed, "$SIGNING_KEY", `"not a pem"`, 1),
			errs: []string{"a.yaml:9:3: keys.k.private-key: not PEM", `a.yaml:12:3: profiles.other.signing-keys[0]: key "k" is invalid (see above)`}},
		{name: "an unread file", body: strings.Replace(fixed, "$SIGNING_KEY", `"${file:/run/secrets/k.pem}"`, 1),
			notChecked: []string{"a.yaml:9:38: keys.k.private-key: not checked: needs the file /run/secrets/k.pem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := Role(config.Options{Dir: dir(t, tc.body), Role: "default", Lenient: true, NoFileReads: true})
			var notChecked []string
			for _, n := range rep.NotChecked {
				notChecked = append(notChecked, n.String())
			}
			got := lines(rep.Errors)
			if len(tc.errs) != len(got) || !slices.EqualFunc(got, tc.errs, strings.HasPrefix) {
				t.Errorf("errors %q, want %q", got, tc.errs)
			}
			if !slices.Equal(notChecked, tc.notChecked) {
				t.Errorf("not checked %q, want %q", notChecked, tc.notChecked)
			}
			if rep.Valid() != (len(tc.errs) == 0) || (rep.Snapshot == nil) {
				t.Errorf("valid %v, snapshot %v", rep.Valid(), rep.Snapshot != nil)
			}
		})
	}
}
