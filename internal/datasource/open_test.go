package datasource_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/datasource"
	"github.com/keygate/keygate/internal/secret"
	"github.com/keygate/keygate/internal/storage"
	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/storage/postgres"
	"github.com/keygate/keygate/internal/storage/postgres/pgtest"
)

func TestOpenSQLiteCreatesParentDirs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "keygate.db")
	s, err := datasource.Open(t.Context(), &config.DataSource{Meta: config.Meta{Name: "local-db"}, Type: "sqlite", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

func TestOpenUnknownType(t *testing.T) {
	_, err := datasource.Open(t.Context(), &config.DataSource{Meta: config.Meta{Name: "x"}, Type: "mysql"})
	if err == nil || !strings.Contains(err.Error(), `data source x: unknown type "mysql"`) {
		t.Fatalf("err = %v", err)
	}
}

// TestOpenPostgresErrorsHideURL: pgx and net/url errors can print the
// connection string; Open's must not.
func TestOpenPostgresErrorsHideURL(t *testing.T) {
	const password = "s3cr3t-Pa55"
	for name, u := range map[string]string{
		"bad port":   "postgres://keygate:" + password + "@127.0.0.1:notaport/keygate",
		"bad url":    "postgres://keygate:" + password + "@[::1/keygate",
		"refused":    "postgres://keygate:" + password + "@127.0.0.1:1/keygate?connect_timeout=2",
		"key=value":  "host=127.0.0.1 port=1 user=keygate password=" + password + " dbname=keygate connect_timeout=2",
		"bad escape": "postgres://keygate:" + password + "%zz@127.0.0.1:1/keygate",
		"bad option": "postgres://keygate:" + password + "@127.0.0.1:1/keygate?sslmode=bogus",
	} {
		t.Run(name, func(t *testing.T) {
			ds := &config.DataSource{Meta: config.Meta{Name: "eu-db"}, Type: "postgres", URL: secret.New(u)}
			s, err := datasource.Open(t.Context(), ds)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if msg := err.Error(); strings.Contains(msg, password) || strings.Contains(msg, u) {
				t.Fatalf("error reveals the URL: %s", msg)
			} else if !strings.HasPrefix(msg, "data source eu-db: ") {
				t.Fatalf("error does not name the data source: %s", msg)
			} else {
				t.Log(msg)
			}
		})
	}
}

func TestOpenPostgres(t *testing.T) {
	u := pgtest.SchemaURL(t, pgtest.Schema(t))
	s, err := datasource.Open(t.Context(), &config.DataSource{Type: "postgres", URL: secret.New(u), MaxConnections: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// search_path from the URL reaches the server: the schema is the test's own.
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if v, err := s.SchemaVersion(t.Context()); err != nil || v != model.SchemaMax {
		t.Fatalf("SchemaVersion = %d, %v", v, err)
	}
	if got := storage.Backend(s).(*postgres.Store).Pool().Config().MaxConns; got != 3 {
		t.Errorf("MaxConns = %d, want 3", got)
	}
}
