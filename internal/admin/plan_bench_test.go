package admin

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkPlan10kClients: validate and plan a 10,000-client bundle
// against an active one that differs in one client (goal: under 2 s).
func BenchmarkPlan10kClients(b *testing.B) {
	f := newFixture(b)
	files := func(changed string) map[string]string {
		var c strings.Builder
		c.WriteString("clients:\n")
		for i := range 10_000 {
			scope := "read"
			if i == 42 {
				scope = changed
			}
			fmt.Fprintf(&c, "  c%05d: {profile: token, secret: $C%05d_SECRET, grant-types: [client_credentials], scopes: [%s]}\n", i, i, scope)
		}
		return map[string]string{"a.yaml": `schema: 1
service-roles:
  default: {zone: z, profiles: [token]}
zones:
  z: {data-source: d}
data-sources:
  d: {type: sqlite, path: "${DB_DIR}/k.db"}
keys:
  k: {algorithm: ES256, private-key: $SIGNING_KEY}
profiles:
  token: {type: token, path: /oauth/v2, issuer: "https://id.example.com/oauth/v2", signing-keys: [k], endpoints: [discovery, token]}
`, "b.yaml": c.String()}
	}
	if code, _, body := f.do(b, "POST", "/admin/v1/bundles", token, Upload{Files: files("read")}); code != http.StatusCreated {
		b.Fatalf("publish: %d %.300s", code, body)
	}
	next := files("write")
	b.ResetTimer()
	for range b.N {
		if code, _, body := f.do(b, "POST", "/admin/v1/bundles/plan", token, Upload{Files: next}); code != http.StatusOK {
			b.Fatalf("plan: %d %.300s", code, body)
		}
	}
}
