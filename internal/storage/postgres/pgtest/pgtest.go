// Package pgtest gives each test its own PostgreSQL schema on the shared
// test server, so tests (and packages tested in parallel) never see each
// other's rows.
//
// The server is KEYGATE_TEST_POSTGRES_URL (default DefaultURL). When it is
// unreachable a test is skipped, loudly; with CI=true it fails instead, so
// CI cannot pass by skipping.
//
// Ping, CreateSchema, DropSchema and WithSearchPath do the same without a
// testing.TB, for the load benchmark, which gives each scenario a schema.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/storage/postgres"
)

// DefaultURL is the test server when KEYGATE_TEST_POSTGRES_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// ServerURL is KEYGATE_TEST_POSTGRES_URL, or DefaultURL.
func ServerURL() string {
	if u := os.Getenv("KEYGATE_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultURL
}

var (
	reachOnce sync.Once
	reachErr  error
)

// URL returns the test server's URL after checking, once per test binary,
// that it answers; otherwise it skips t (or fails it when CI=true).
func URL(t testing.TB) string {
	t.Helper()
	u := ServerURL()
	reachOnce.Do(func() { reachErr = Ping(context.Background(), u) })
	if reachErr != nil {
		where := Describe(u)
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL not reachable at %s (CI=true, so this fails): %v", where, reachErr)
		}
		t.Skipf("PostgreSQL not reachable at %s; skipping; CI=true makes this fail (%v)", where, reachErr)
	}
	return u
}

// Ping checks that the server at u answers, within 5 s.
func Ping(ctx context.Context, u string) error {
	return withConn(ctx, u, 5*time.Second, func(ctx context.Context, conn *pgx.Conn) error { return conn.Ping(ctx) })
}

// withConn runs fn on a connection of its own to u, all within timeout.
func withConn(ctx context.Context, u string, timeout time.Duration, fn func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return fn(ctx, conn)
}

// Describe names the server without credentials.
func Describe(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "KEYGATE_TEST_POSTGRES_URL (unparsable)"
	}
	return p.Host + p.Path
}

// CreateSchema creates a fresh schema named prefix and a random suffix on
// the server at u and returns its name.
func CreateSchema(ctx context.Context, u, prefix string) (string, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := prefix + hex.EncodeToString(b[:])
	return name, withConn(ctx, u, 10*time.Second, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize())
		return err
	})
}

// DropSchema drops a schema CreateSchema made, with everything in it.
func DropSchema(ctx context.Context, u, name string) error {
	return withConn(ctx, u, 30*time.Second, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE")
		return err
	})
}

// WithSearchPath returns u with search_path set to schema, for code that
// takes a URL (datasource.Open, a keygate process): pgx passes unknown URL
// parameters to the server as run-time parameters.
func WithSearchPath(u, schema string) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	q := p.Query()
	q.Set("search_path", schema)
	p.RawQuery = q.Encode()
	return p.String(), nil
}

// Schema creates a fresh, randomly named schema, dropped at cleanup.
func Schema(t testing.TB) string {
	t.Helper()
	u := URL(t)
	name, err := CreateSchema(context.Background(), u, "kg_test_")
	if err != nil {
		t.Fatalf("pgtest: create schema: %v", err)
	}
	t.Cleanup(func() {
		if err := DropSchema(context.Background(), u, name); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", name, err)
		}
	})
	return name
}

// Config returns a pool config whose every connection uses schema.
func Config(t testing.TB, schema string) *pgxpool.Config {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(URL(t))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = postgres.DefaultMaxConns
	return cfg
}

// SchemaURL returns the server URL with search_path set to schema.
func SchemaURL(t testing.TB, schema string) string {
	t.Helper()
	u, err := WithSearchPath(URL(t), schema)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

// Open returns an unmigrated store on a fresh schema, closed at cleanup.
func Open(t testing.TB) *postgres.Store {
	t.Helper()
	return OpenSchema(t, Schema(t))
}

// OpenSchema returns another store on schema, as a second node would
// open the same database; closed at cleanup.
func OpenSchema(t testing.TB, schema string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := postgres.New(ctx, Config(t, schema))
	if err != nil {
		t.Fatalf("pgtest: open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
