package served

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/config"
)

// RFC 8414 §3: each token profile's metadata is also served at the host
// root, at /.well-known/oauth-authorization-server followed by its
// issuer's path, and only there; two profiles of a role cannot claim the
// same issuer path.
func TestAuthorizationServerMetadata(t *testing.T) {
	snap := testSnapshot(t)
	snap.ServiceRoles["default"].Profiles = []string{"token", "token-external"}
	// The issuer path need not be the mount path (a proxy may add a prefix).
	snap.Profiles["token-external"].Issuer = "https://api.example.com/partners"
	var h Holder
	h.Swap(build(t, snap, Deps{}))
	for uri, issuer := range map[string]string{
		"/.well-known/oauth-authorization-server/oauth/v2": "https://id.example.com/oauth/v2",
		"/.well-known/oauth-authorization-server/partners": "https://api.example.com/partners",
	} {
		resp := serve(h.Serve, "GET", uri)
		var md map[string]any
		if err := json.Unmarshal([]byte(resp.body), &md); resp.status != 200 || err != nil || md["issuer"] != issuer ||
			resp.header["Content-Type"] != "application/json" {
			t.Errorf("%s: %d %s, want the metadata of %s", uri, resp.status, resp.body, issuer)
		}
	}
	for _, uri := range []string{"/.well-known/oauth-authorization-server", "/.well-known/oauth-authorization-server/ext",
		"/.well-known/oauth-authorization-server/oauth"} {
		if resp := serve(h.Serve, "GET", uri); resp.status != 404 {
			t.Errorf("%s: %d, want 404", uri, resp.status)
		}
	}

	// An issuer without a path: the bare well-known URI.
	snap = testSnapshot(t)
	snap.Profiles["token"].Issuer = "https://id.example.com"
	h.Swap(build(t, snap, Deps{}))
	if resp := serve(h.Serve, "GET", "/.well-known/oauth-authorization-server"); resp.status != 200 ||
		!strings.Contains(resp.body, `"issuer":"https://id.example.com"`) {
		t.Errorf("issuer without a path: %d %s", resp.status, resp.body)
	}

	snap = testSnapshot(t)
	snap.ServiceRoles["default"].Profiles = []string{"token", "token-external"}
	snap.Profiles["token-external"].Issuer = "https://other.example.com/oauth/v2"
	snap.Profiles["token-external"].Pos = config.Position{File: "p.yaml", Line: 9, Column: 3}
	if _, err := Build(snap, Deps{}); err == nil || !strings.Contains(err.Error(),
		`p.yaml:9:3: profiles.token-external.issuer: its metadata URL /.well-known/oauth-authorization-server/oauth/v2 is already profile "token"'s in role "default"; give the issuers different paths`) {
		t.Fatalf("two issuers with one path: %v", err)
	}
}
