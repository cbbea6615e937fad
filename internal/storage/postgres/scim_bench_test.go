package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/scim"
	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/storage/postgres/pgtest"
)

// BenchmarkSCIMList lists with a filter over 100,000 users of a zone (and
// 100,000 of another): the indexed attributes (userName, externalId) and
// a document attribute, reporting p50/p99 per query. Run with
//
//	CI=true go test -run '^$' -bench SCIMList -benchtime 200x ./internal/storage/postgres
func BenchmarkSCIMList(b *testing.B) {
	schema := pgtest.Schema(b)
	st := pgtest.OpenSchema(b, schema)
	ctx := context.Background()
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pgtest.SchemaURL(b, schema))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	// Bulk rows in the stored shape (what Users.Create writes, generated in SQL for speed).
	if _, err := conn.Exec(ctx, `INSERT INTO users (id, zone, username, password_hash, claims, status, created_at, updated_at, external_id, scim, scim_folded, version)
		SELECT z || '~' || i, z, 'user' || i, '', '{}', 'active', now(), now(), 'ext-' || i,
		       jsonb_build_object('userName', 'User' || i, 'title', CASE WHEN i % 100 = 0 THEN 'Lead' ELSE 'Guide' END,
		                          'emails', jsonb_build_array(jsonb_build_object('value', 'user' || i || '@example.com', 'type', 'work'))),
		       jsonb_build_object('userName', 'user' || i, 'title', CASE WHEN i % 100 = 0 THEN 'lead' ELSE 'guide' END,
		                          'emails', jsonb_build_array(jsonb_build_object('value', 'user' || i || '@example.com', 'type', 'work'))), 1
		FROM generate_series(1, 100000) AS i, unnest(ARRAY['eu', 'us']) AS z`); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `ANALYZE users`); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, filter string }{
		{"userName_eq", `userName eq "USER54321"`},
		{"externalId_eq", `externalId eq "ext-54321"`},
		{"title_eq_paged", `title eq "lead"`},
	} {
		e, perr := scim.ParseFilter(tc.filter)
		if perr != nil {
			b.Fatal(perr)
		}
		b.Run(tc.name, func(b *testing.B) {
			var lat []time.Duration
			for range b.N {
				start := time.Now()
				page, total, err := st.Users().Query(ctx, "eu", model.UserQuery{Filter: e, Limit: 50})
				lat = append(lat, time.Since(start))
				if err != nil || len(page) == 0 || total == 0 {
					b.Fatalf("%v %d %d", err, len(page), total)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
	// The plan of the indexed lookup.
	rows, err := conn.Query(ctx, `EXPLAIN SELECT id FROM users WHERE zone = 'eu' AND (username = 'user54321') ORDER BY created_at, id LIMIT 50`)
	if err == nil {
		var plan []string
		for rows.Next() {
			var line string
			_ = rows.Scan(&line)
			plan = append(plan, line)
		}
		rows.Close()
		b.Logf("EXPLAIN userName eq:\n%s", strings.Join(plan, "\n"))
	}
	b.Run("create", func(b *testing.B) {
		start := time.Now()
		for i := range b.N {
			if err := st.Users().Create(ctx, model.User{ID: fmt.Sprintf("eu~bench-%d-%d", b.N, i), Zone: "eu", Username: fmt.Sprintf("bench-%d-%d", b.N, i),
				Status: "active", SCIM: map[string]any{"userName": "x"}, CreatedAt: start, UpdatedAt: start}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "users/s")
	})
}
