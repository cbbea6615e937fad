package token

import (
	"testing"
	"time"

	"github.com/keygate/keygate/internal/config"
)

// A rebuild reuses a client's derived state only when its config entry is
// the same object and the profile policy that fills its gaps is unchanged.
func TestRebuildReusesUnchangedClients(t *testing.T) {
	ks := keySet(t)
	cp := tokenProfile("token", "/oauth/v2", "https://id.example.com/oauth/v2", "discovery", "jwks", "token")
	snap := snapshot(cp)
	first, err := New(snap, cp, ks, Deps{})
	if err != nil {
		t.Fatal(err)
	}

	// The next snapshot: web-app unchanged (same entry), billing-api edited.
	next := *snap
	next.Clients = map[string]*config.Client{}
	for name, c := range snap.Clients {
		next.Clients[name] = c
	}
	edited := *snap.Clients["billing-api"]
	edited.Scopes = []string{"invoices:read", "invoices:write"}
	next.Clients["billing-api"] = &edited
	second, err := New(&next, cp, ks, Deps{Previous: first})
	if err != nil {
		t.Fatal(err)
	}
	if second.clients["web-app"] != first.clients["web-app"] || second.auth.Client("web-app") != first.auth.Client("web-app") {
		t.Error("an unchanged client was derived again")
	}
	if second.clients["billing-api"] == first.clients["billing-api"] || !second.clients["billing-api"].scopeSet["invoices:write"] {
		t.Error("an edited client was reused")
	}
	if second.auth.Client("billing-api").Config != &edited {
		t.Error("the authenticator kept the old billing-api entry")
	}

	// A profile policy change reaches every client, even unchanged ones.
	cp2 := *cp
	cp2.AccessTokens.Lifetime = config.Duration(time.Hour)
	third, err := New(&next, &cp2, ks, Deps{Previous: second})
	if err != nil {
		t.Fatal(err)
	}
	if third.clients["web-app"] == second.clients["web-app"] || third.clients["web-app"].lifetime != time.Hour {
		t.Error("a profile policy change did not rebuild the clients")
	}
}
