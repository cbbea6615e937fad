package postgres_test

import (
	"testing"

	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/storage/postgres/pgtest"
	"github.com/keygate/keygate/internal/storage/storagetest"
)

func open(t *testing.T) model.Store { return pgtest.Open(t) }

func TestConformance(t *testing.T) { storagetest.Run(t, open) }

// TestConcurrentMigrateNodes migrates one schema from three pools at
// once, as three nodes starting together would.
func TestConcurrentMigrateNodes(t *testing.T) {
	schema := pgtest.Schema(t)
	storagetest.ConcurrentMigrate(t, pgtest.OpenSchema(t, schema), pgtest.OpenSchema(t, schema), pgtest.OpenSchema(t, schema))
	applied, err := pgtest.OpenSchema(t, schema).AppliedMigrations(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != model.SchemaMax {
		t.Errorf("applied = %+v, want one row per version", applied)
	}
}

func TestMigrationList(t *testing.T) {
	if err := model.CheckMigrations(pgtest.Open(t).Migrations()); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkCreateAccessToken(b *testing.B) { storagetest.BenchCreateAccessToken(b, pgtest.Open(b)) }
func BenchmarkIsRevoked(b *testing.B)         { storagetest.BenchIsRevoked(b, pgtest.Open(b)) }
