package console

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/datasource"
	"github.com/keygate/keygate/internal/publish"
	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/testkit"
)

// BenchmarkConsolePages renders each page with 10,000 clients in the
// active bundle and 50 nodes in the cluster (goal: each under 100 ms).
func BenchmarkConsolePages(b *testing.B) {
	dbDir := b.TempDir()
	db := filepath.Join(dbDir, "k.db")
	var clients strings.Builder
	clients.WriteString("clients:\n")
	for i := range 10_000 {
		fmt.Fprintf(&clients, "  c%05d: {profile: token, secret: $C%05d_SECRET, grant-types: [client_credentials], scopes: [read]}\n", i, i)
	}
	files := map[string]string{"a.yaml": `schema: 1
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
`, "b.yaml": clients.String()}
	p, err := publish.New(b.TempDir(), 5)
	if err != nil {
		b.Fatal(err)
	}
	pools := datasource.New(datasource.Options{Migrate: true})
	b.Cleanup(func() { pools.Close() })
	api := admin.New(admin.Config{Publisher: p, SigningKey: ed25519.NewKeyFromSeed(make([]byte, 32)), Token: []byte(adminToken),
		ConfigDir: b.TempDir(), Pools: pools, Environ: []string{"DB_DIR=" + dbDir}})
	apiSrv := httptest.NewServer(api.Handler())
	defer apiSrv.Close()
	for range 2 {
		body := `{"files":{"a.yaml":` + quote(files["a.yaml"]) + `,"b.yaml":` + quote(files["b.yaml"]) + `}}`
		req, _ := http.NewRequest("POST", apiSrv.URL+"/admin/v1/bundles", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			b.Fatalf("publish: %v", err)
		}
		resp.Body.Close()
	}
	ctx := context.Background()
	st := testkit.SQLiteAt(b, db)
	now := time.Now()
	for i := range 50 {
		if err := st.Nodes().Heartbeat(ctx, model.NodeStatus{ID: fmt.Sprintf("node-%02d", i), Role: "default", Zone: "z", ConfigVersion: "v2",
			HeartbeatAt: now, ExpiresAt: now.Add(time.Hour), Details: map[string]any{"last_reload": "success", "config_schema_max": 1}}); err != nil {
			b.Fatal(err)
		}
	}
	st.Close()
	c, err := New(Config{Admin: api, BaseURL: "http://console.test", AdminToken: []byte(adminToken)})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	cl := &http.Client{Jar: jar}
	if resp, err := cl.PostForm(srv.URL+"/admin/ui/break-glass", url.Values{"token": {adminToken}}); err != nil || resp.StatusCode != 200 {
		b.Fatalf("sign in: %v", err)
	} else {
		resp.Body.Close()
	}
	for _, path := range []string{"fleet", "bundles", "bundles/diff?from=v1&to=v2", "bundles/v1/activate", "config"} {
		b.Run(strings.NewReplacer("/", "_", "?", "_", "&", "_", "=", "").Replace(path), func(b *testing.B) {
			for range b.N {
				resp, err := cl.Get(srv.URL + "/admin/ui/" + path)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("%s: %d", path, resp.StatusCode)
				}
				b.SetBytes(n)
			}
		})
	}
}
