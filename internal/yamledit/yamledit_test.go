package yamledit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const corpus = `# Clients of the example deployment.
clients:
  # A browser application.
  web-app:
    profile: token        # the token profile
    secret: $WEB_APP_SECRET
    redirect-uris: [$WEB_APP_REDIRECT_URI]
    post-logout-redirect-uris: ["${WEB_APP_POST_LOGOUT_REDIRECT_URI:-$WEB_APP_REDIRECT_URI}"]
    grant-types: [authorization_code, refresh_token]
    scopes:
      - openid
      - profile   # keep
      - email

  billing-api:
    profile: 'token'
    secret: "$BILLING_API_SECRET"
    grant-types: [client_credentials]
    scopes: ["invoices:read"]
    access-token-lifetime: 5m
    description: |
      Billing service.
      Reads invoices.
    tags: [under-test]

  reporting: {profile: token, secret: $REPORTING_SECRET, grant-types: [client_credentials], scopes: [reports:read]}
  base: &defaults {profile: token}
  copy: *defaults
# trailing comment
`

func TestEdits(t *testing.T) {
	for _, tc := range []struct {
		name           string
		edit           func(*Doc) error
		removed, added []string
	}{
		{"append to a flow list", func(d *Doc) error {
			return d.Append([]string{"clients", "web-app", "redirect-uris"}, "https://app.example.com/cb")
		}, []string{"    redirect-uris: [$WEB_APP_REDIRECT_URI]"}, []string{"    redirect-uris: [$WEB_APP_REDIRECT_URI, https://app.example.com/cb]"}},
		{"append to a block list", func(d *Doc) error { return d.Append([]string{"clients", "web-app", "scopes"}, "offline_access") },
			nil, []string{"      - offline_access"}},
		{"replace a plain scalar, keeping its comment", func(d *Doc) error { return d.Set([]string{"clients", "web-app", "profile"}, "token-2") },
			[]string{"    profile: token        # the token profile"}, []string{"    profile: token-2        # the token profile"}},
		{"replace a single-quoted scalar", func(d *Doc) error { return d.Set([]string{"clients", "billing-api", "profile"}, "other") },
			[]string{"    profile: 'token'"}, []string{"    profile: 'other'"}},
		{"replace a double-quoted scalar", func(d *Doc) error { return d.Set([]string{"clients", "billing-api", "secret"}, "$NEW_SECRET") },
			[]string{`    secret: "$BILLING_API_SECRET"`}, []string{`    secret: "$NEW_SECRET"`}},
		{"append to a quoted flow list", func(d *Doc) error { return d.Append([]string{"clients", "billing-api", "scopes"}, "invoices:write") },
			[]string{`    scopes: ["invoices:read"]`}, []string{`    scopes: ["invoices:read", "invoices:write"]`}},
		{"a duration", func(d *Doc) error { return d.Set([]string{"clients", "billing-api", "access-token-lifetime"}, "10m") },
			[]string{"    access-token-lifetime: 5m"}, []string{"    access-token-lifetime: 10m"}},
		{"replace a flow list", func(d *Doc) error {
			return d.Set([]string{"clients", "web-app", "grant-types"}, []string{"authorization_code"})
		}, []string{"    grant-types: [authorization_code, refresh_token]"}, []string{"    grant-types: [authorization_code]"}},
		{"replace a block list", func(d *Doc) error {
			return d.Set([]string{"clients", "web-app", "scopes"}, []string{"openid", "email"})
		},
			[]string{"      - profile   # keep"}, nil},
		{"a new key in a block mapping", func(d *Doc) error { return d.Set([]string{"clients", "web-app", "enabled"}, false) },
			nil, []string{"    enabled: false"}},
		{"a new key in a flow mapping", func(d *Doc) error { return d.Set([]string{"clients", "reporting", "tags"}, []string{"internal"}) },
			[]string{"  reporting: {profile: token, secret: $REPORTING_SECRET, grant-types: [client_credentials], scopes: [reports:read]}"},
			[]string{"  reporting: {profile: token, secret: $REPORTING_SECRET, grant-types: [client_credentials], scopes: [reports:read], tags: [internal]}"}},
		{"a value in a flow mapping", func(d *Doc) error { return d.Set([]string{"clients", "reporting", "secret"}, "$OTHER, with comma") },
			[]string{"  reporting: {profile: token, secret: $REPORTING_SECRET, grant-types: [client_credentials], scopes: [reports:read]}"},
			[]string{`  reporting: {profile: token, secret: "$OTHER, with comma", grant-types: [client_credentials], scopes: [reports:read]}`}},
		{"a new entry", func(d *Doc) error {
			return d.Set([]string{"clients", "new-app"}, map[string]any{"profile": "token", "secret": "$NEW_APP_SECRET", "grant-types": []string{"client_credentials"}})
		}, nil, []string{"  new-app:", "    grant-types: [client_credentials]", "    profile: token", "    secret: $NEW_APP_SECRET"}},
		{"a new section", func(d *Doc) error { return d.Set([]string{"keys", "k1", "algorithm"}, "ES256") },
			nil, []string{"keys:", "  k1:", "    algorithm: ES256"}},
		{"remove a key", func(d *Doc) error { return d.Remove([]string{"clients", "billing-api", "tags"}) },
			[]string{"    tags: [under-test]"}, nil},
		{"remove a key with a block scalar", func(d *Doc) error { return d.Remove([]string{"clients", "billing-api", "description"}) },
			[]string{"    description: |", "      Billing service.", "      Reads invoices."}, nil},
		{"replace a block scalar", func(d *Doc) error { return d.Set([]string{"clients", "billing-api", "description"}, "One line.") },
			[]string{"    description: |", "      Billing service.", "      Reads invoices."}, []string{"    description: One line."}},
		{"remove from a flow mapping", func(d *Doc) error { return d.Remove([]string{"clients", "reporting", "secret"}) },
			[]string{"  reporting: {profile: token, secret: $REPORTING_SECRET, grant-types: [client_credentials], scopes: [reports:read]}"},
			[]string{"  reporting: {profile: token, grant-types: [client_credentials], scopes: [reports:read]}"}},
		{"remove a flow item", func(d *Doc) error { return d.RemoveItem([]string{"clients", "web-app", "grant-types"}, 1) },
			[]string{"    grant-types: [authorization_code, refresh_token]"}, []string{"    grant-types: [authorization_code]"}},
		{"remove the first flow item", func(d *Doc) error { return d.RemoveItem([]string{"clients", "web-app", "grant-types"}, 0) },
			[]string{"    grant-types: [authorization_code, refresh_token]"}, []string{"    grant-types: [refresh_token]"}},
		{"remove a block item with its comment", func(d *Doc) error { return d.RemoveItem([]string{"clients", "web-app", "scopes"}, 1) },
			[]string{"      - profile   # keep"}, nil},
		{"the last flow item", func(d *Doc) error { return d.RemoveItem([]string{"clients", "billing-api", "tags"}, 0) },
			[]string{"    tags: [under-test]"}, []string{"    tags: []"}},
		{"a list in flow style", func(d *Doc) error {
			return d.Set([]string{"clients", "billing-api", "scopes"}, []string{"invoices:write"})
		},
			[]string{`    scopes: ["invoices:read"]`}, []string{`    scopes: ["invoices:write"]`}},
		{"a whole entry removed", func(d *Doc) error { return d.Remove([]string{"clients", "reporting"}) },
			[]string{"  reporting: {profile: token, secret: $REPORTING_SECRET, grant-types: [client_credentials], scopes: [reports:read]}"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse([]byte(corpus))
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.edit(d); err != nil {
				t.Fatal(err)
			}
			removed, added := ChangedLines(corpus, string(d.Bytes()))
			if strings.Join(removed, "\n") != strings.Join(tc.removed, "\n") || strings.Join(added, "\n") != strings.Join(tc.added, "\n") {
				t.Errorf("removed %q\nadded %q\nwant removed %q\nadded %q\n---\n%s", removed, added, tc.removed, tc.added, d.Bytes())
			}
		})
	}
}

// An edit the text cannot take in place is refused, and the text is left
// as it was.
func TestRefusedEditLeavesTheText(t *testing.T) {
	src := "a:\n  b: this plain scalar\n    goes on\n"
	d, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set([]string{"a", "b"}, "x"); err == nil {
		t.Fatal("edited a multi-line plain scalar")
	}
	if string(d.Bytes()) != src {
		t.Errorf("text changed: %q", d.Bytes())
	}
	if err := d.Append([]string{"a", "b"}, "x"); err == nil {
		t.Error("appended to a scalar")
	}
	// An anchored node is shared: editing it, or its copy, is refused.
	d, err = Parse([]byte(corpus))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range [][]string{{"clients", "base", "profile"}, {"clients", "copy", "profile"}} {
		if err := d.Set(path, "x"); err == nil || !strings.Contains(err.Error(), "anchor &defaults") {
			t.Errorf("%v: %v", path, err)
		}
	}
	if string(d.Bytes()) != corpus {
		t.Error("a refused edit changed the text")
	}
}

// The repository's own configuration: each file takes a typical edit and
// changes only the intended line.
func TestRepositoryConfig(t *testing.T) {
	files, _ := filepath.Glob("../../config.d/*.yaml")
	if len(files) == 0 {
		t.Fatal("no config.d files")
	}
	src, err := os.ReadFile("../../config.d/40-clients.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Append([]string{"clients", "web-app", "redirect-uris"}, "https://app.example.com/callback"); err != nil {
		t.Fatal(err)
	}
	removed, added := ChangedLines(string(src), string(d.Bytes()))
	if len(removed) != 1 || len(added) != 1 || !strings.HasSuffix(added[0], ", https://app.example.com/callback]") {
		t.Errorf("removed %q added %q", removed, added)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"clients", "profiles", "keys", "data-sources", "service-roles"} {
			d, err := Parse(src) // each section's edit on its own, against the file
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if _, ok := d.Get([]string{k}); ok {
				if err := d.Set([]string{k, "zz-new", "tags"}, []string{"t"}); err != nil {
					t.Errorf("%s: add an entry to %s: %v", f, k, err)
				}
				if removed, added := ChangedLines(string(src), string(d.Bytes())); len(removed) != 0 || len(added) != 2 || added[1] != "    tags: [t]" {
					t.Errorf("%s: adding an entry removed %q added %q", f, removed, added)
				}
			}
		}
	}
}

func TestEmptyAndOddFiles(t *testing.T) {
	d, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set([]string{"clients", "a", "profile"}, "token"); err != nil {
		t.Fatal(err)
	}
	if got := string(d.Bytes()); got != "clients:\n  a:\n    profile: token\n" {
		t.Errorf("empty file: %q", got)
	}
	if _, err := Parse([]byte("a: 1\r\nb: 2\r\n")); err == nil {
		t.Error("CRLF accepted")
	}
	if _, err := Parse([]byte("a: 1\n---\nb: 2\n")); err == nil {
		t.Error("two documents accepted")
	}
	if _, err := Parse([]byte("- a\n- b\n")); err == nil {
		t.Error("a top-level list accepted")
	}
	// Odd but valid formatting: four-space indents, a comment between a
	// key and its value, a document marker.
	src := "---\nclients:\n    a:\n        # the profile\n        profile: token\n        scopes: [ x ,  y ]\n"
	d, err = Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set([]string{"clients", "a", "enabled"}, false); err != nil {
		t.Fatal(err)
	}
	if err := d.Append([]string{"clients", "a", "scopes"}, "z"); err != nil {
		t.Fatal(err)
	}
	want := "---\nclients:\n    a:\n        # the profile\n        profile: token\n        scopes: [ x ,  y , z]\n        enabled: false\n"
	if got := string(d.Bytes()); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
