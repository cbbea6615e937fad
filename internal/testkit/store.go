package testkit

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/datasource"
	"github.com/keygate/keygate/internal/secret"
	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/storage/postgres/pgtest"
)

// Backends are the storage engines, as config names them.
var Backends = []string{config.DataSourceSQLite, config.DataSourcePostgres}

// DataSource is a fresh, empty data source of the backend named db: a
// SQLite file in a temporary directory, or a PostgreSQL schema of its own
// (dropped at cleanup; unreachable, the test skips loudly, or fails with
// CI=true).
func DataSource(tb testing.TB, backend string) *config.DataSource {
	tb.Helper()
	switch backend {
	case config.DataSourceSQLite:
		return SQLiteSource(filepath.Join(tb.TempDir(), "keygate.db"))
	case config.DataSourcePostgres:
		return &config.DataSource{Meta: config.Meta{Name: "db"}, Type: config.DataSourcePostgres,
			URL: secret.New(pgtest.SchemaURL(tb, pgtest.Schema(tb)))}
	}
	tb.Fatalf("testkit: unknown backend %q", backend)
	return nil
}

// SQLiteSource is a SQLite data source named db at path.
func SQLiteSource(path string) *config.DataSource {
	return &config.DataSource{Meta: config.Meta{Name: "db"}, Type: config.DataSourceSQLite, Path: path}
}

// Open opens ds as a node does (datasource.Open: the data source's
// deadlines and error classes) and migrates it. The store is closed at
// cleanup; closing it earlier is allowed.
func Open(tb testing.TB, ds *config.DataSource) model.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := datasource.Open(ctx, ds)
	if err != nil {
		tb.Fatalf("testkit: open %s: %v", ds.Type, err)
	}
	tb.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		tb.Fatalf("testkit: migrate %s: %v", ds.Type, err)
	}
	return st
}

// Store is a migrated store on a fresh data source of the backend.
func Store(tb testing.TB, backend string) model.Store {
	tb.Helper()
	return Open(tb, DataSource(tb, backend))
}

// SQLite is a migrated store on a fresh SQLite file.
func SQLite(tb testing.TB) model.Store {
	tb.Helper()
	return Store(tb, config.DataSourceSQLite)
}

// SQLiteAt is a migrated store on the SQLite file at path, which a node or
// an admin under test may use too.
func SQLiteAt(tb testing.TB, path string) model.Store {
	tb.Helper()
	return Open(tb, SQLiteSource(path))
}

// SourceYAML is ds as the value of a data-sources entry in a config file.
func SourceYAML(ds *config.DataSource) string {
	if ds.Type == config.DataSourcePostgres {
		return fmt.Sprintf("{type: postgres, url: %q}", ds.URL.Reveal())
	}
	return SQLiteYAML(ds.Path)
}

// SQLiteYAML is a SQLite data-sources entry for path.
func SQLiteYAML(path string) string { return fmt.Sprintf("{type: sqlite, path: %q}", path) }
