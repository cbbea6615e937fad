package tests

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/testkit"
)

// Data residency with two zones on two PostgreSQL databases: a user
// created through the EU node lives in the EU database and in no table of
// the US one; the US node serves it by its id (which names its home zone)
// from the EU database; a create through the US node may name the EU zone.
func TestSCIMZonesKeepUsersHome(t *testing.T) {
	eu, us, euDB, usDB := twoZoneNodes(t)
	const ct = "application/scim+json"
	tok := eu.issue(t, url.Values{}, "provisioner", provisionerSecret)
	r := scimCall(t, "POST", eu.Public()+"/scim/v2/Users", tok, ct, []byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"anneliese","password":"anneliese-password-01"}`))
	if r.code != 201 {
		t.Fatalf("create on the EU node: %d %s", r.code, r.raw)
	}
	id := r.body["id"].(string)

	rows := func(dbURL, query string, args ...any) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dbURL)
		check(t, err)
		defer conn.Close(ctx)
		var n int
		check(t, conn.QueryRow(ctx, query, args...).Scan(&n))
		return n
	}
	if n := rows(euDB, `SELECT COUNT(*) FROM users WHERE id = $1`, id); n != 1 {
		t.Errorf("the EU database holds %d rows of the EU user", n)
	}
	// No table of the US database mentions the user: every text column of
	// every table searched.
	if n := rows(usDB, `SELECT COUNT(*) FROM information_schema.columns c WHERE c.table_schema = current_schema()`); n == 0 {
		t.Fatal("the US database has no tables: was it migrated?")
	}
	found := 0
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, usDB)
	check(t, err)
	defer conn.Close(ctx)
	cols, err := conn.Query(ctx, `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()`)
	check(t, err)
	type col struct{ table, column string }
	var all []col
	for cols.Next() {
		var c col
		check(t, cols.Scan(&c.table, &c.column))
		all = append(all, c)
	}
	cols.Close()
	for _, c := range all {
		var n int
		q := `SELECT COUNT(*) FROM ` + pgx.Identifier{c.table}.Sanitize() + ` WHERE ` + pgx.Identifier{c.column}.Sanitize() + `::text LIKE '%' || $1 || '%'`
		check(t, conn.QueryRow(ctx, q, "anneliese").Scan(&n))
		found += n
		check(t, conn.QueryRow(ctx, q, id).Scan(&n))
		found += n
	}
	if found != 0 {
		t.Errorf("the US database mentions the EU user in %d rows", found)
	}

	// The US node serves the EU user from the EU database.
	usTok := us.issue(t, url.Values{}, "provisioner", provisionerSecret)
	if r := scimCall(t, "GET", us.Public()+"/scim/v2/Users/"+id, usTok, "", nil); r.code != 200 || r.body["userName"] != "anneliese" {
		t.Errorf("GET of the EU user on the US node: %d %s", r.code, r.raw)
	}
	// A create through the US node that names the EU zone lands there.
	r = scimCall(t, "POST", us.Public()+"/scim/v2/Users?zone=eu", usTok, ct, []byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bertil"}`))
	if r.code != 201 || rows(euDB, `SELECT COUNT(*) FROM users WHERE username = 'bertil'`) != 1 || rows(usDB, `SELECT COUNT(*) FROM users WHERE username = 'bertil'`) != 0 {
		t.Errorf("create for the EU zone on the US node: %d %s", r.code, r.raw)
	}
	if r := scimCall(t, "POST", us.Public()+"/scim/v2/Users?zone=mars", usTok, ct, []byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"x"}`)); r.code != 400 {
		t.Errorf("an unknown zone: %d %s", r.code, r.raw)
	}
}

// twoZoneNodes starts an EU node and a US node, each of the zone of its
// service role, on two PostgreSQL databases, and returns the databases'
// URLs with them.
func twoZoneNodes(t testing.TB) (eu, us *node, euDB, usDB string) {
	t.Helper()
	euDB, usDB = zoneDatabase(t, "eu"), zoneDatabase(t, "us")
	secrets := t.TempDir()
	dir := testkit.ConfigDir(t, map[string]string{
		"00.yaml": `schema: 1
service-roles:
  eu-node: {zone: eu, profiles: [token, users]}
  us-node: {zone: us, profiles: [token, users]}
zones:
  eu: {data-source: eu-db}
  us: {data-source: us-db}
data-sources:
  eu-db: {type: postgres, url: $EU_DB_URL, max-connections: 4}
  us-db: {type: postgres, url: $US_DB_URL, max-connections: 4}
profiles:
  token: {type: token, path: /oauth/v2, issuer: "http://localhost/oauth/v2", signing-keys: [k1], endpoints: [discovery, jwks, token]}
  users: {type: user-management, path: /scim/v2, token-profile: token, zones: [eu, us]}
clients:
  provisioner: {profile: token, secret: "` + provisionerSecret + `", grant-types: [client_credentials], scopes: ["scim:read", "scim:write"]}
`,
		"10-keys.yaml": testkit.KeysConfig(map[string]string{"k1": testkit.KeyFile(t, secrets, "k1")}),
	})
	env := []string{"EU_DB_URL=" + euDB, "US_DB_URL=" + usDB}
	eu = launch(t, dir, append([]string{"KEYGATE_SERVICE_ROLE=eu-node"}, env...)...)
	us = launch(t, dir, append([]string{"KEYGATE_SERVICE_ROLE=us-node"}, env...)...)
	for _, n := range []*node{eu, us} {
		n.AwaitServing(30 * time.Second)
		n.waitReady(t)
	}
	return eu, us, euDB, usDB
}

// BenchmarkSCIMGetAcrossZones: what serving a user of another zone adds
// to a GET. The US node reads a US user from its own zone's database and
// an EU user from the EU database, both on this host's PostgreSQL, so the
// difference is the node's routing by id and the other pool, not a
// network between regions (add the round trip to the other region's
// database for a real deployment).
func BenchmarkSCIMGetAcrossZones(b *testing.B) {
	eu, us, _, _ := twoZoneNodes(b)
	const ct = "application/scim+json"
	tok := us.issue(b, url.Values{}, "provisioner", provisionerSecret)
	create := func(base, name string) string {
		r := scimCall(b, "POST", base+"/scim/v2/Users", tok, ct, []byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"`+name+`"}`))
		if r.code != 201 {
			b.Fatalf("create %s: %d %s", name, r.code, r.raw)
		}
		return r.body["id"].(string)
	}
	euTok := eu.issue(b, url.Values{}, "provisioner", provisionerSecret)
	r := scimCall(b, "POST", eu.Public()+"/scim/v2/Users", euTok, ct, []byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"elske"}`))
	if r.code != 201 {
		b.Fatalf("create on the EU node: %d %s", r.code, r.raw)
	}
	ids := map[string]string{"home-zone": create(us.Public(), "ulla"), "other-zone": r.body["id"].(string)}
	for _, name := range []string{"home-zone", "other-zone"} {
		b.Run(name, func(b *testing.B) {
			req, _ := http.NewRequest(http.MethodGet, us.Public()+"/scim/v2/Users/"+ids[name], nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("GET %s: %d", name, resp.StatusCode)
				}
				took = append(took, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
		})
	}
}
