package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/storage/sqlite"
	"github.com/keygate/keygate/internal/storage/storagetest"
)

func openPath(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func open(t *testing.T) model.Store {
	return openPath(t, filepath.Join(t.TempDir(), "data", "keygate.db")) // data/ does not exist yet
}

func TestConformance(t *testing.T) { storagetest.Run(t, open) }

// TestConcurrentMigrateNodes migrates one file from three stores at once,
// as `keygate migrate` beside starting nodes would.
func TestConcurrentMigrateNodes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	storagetest.ConcurrentMigrate(t, openPath(t, path), openPath(t, path), openPath(t, path))
	applied, err := openPath(t, path).AppliedMigrations(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != model.SchemaMax {
		t.Errorf("applied = %+v, want one row per version", applied)
	}
}

func TestMigrationList(t *testing.T) {
	if err := model.CheckMigrations(openPath(t, filepath.Join(t.TempDir(), "k.db")).Migrations()); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRejectsURIPath(t *testing.T) {
	if _, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "k.db?mode=memory"), sqlite.Options{}); err == nil {
		t.Fatal("Open accepted a path with a query")
	}
}

func benchStore(b *testing.B) model.Store {
	return openPath(b, filepath.Join(b.TempDir(), "keygate.db"))
}

func BenchmarkCreateAccessToken(b *testing.B) { storagetest.BenchCreateAccessToken(b, benchStore(b)) }
func BenchmarkIsRevoked(b *testing.B)         { storagetest.BenchIsRevoked(b, benchStore(b)) }
