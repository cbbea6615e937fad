package sqlstore_test

import (
	"path/filepath"
	"regexp"
	"testing"

	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/storage/postgres/pgtest"
	"github.com/keygate/keygate/internal/storage/sqlite"
)

// TestMigrationsRender: each backend's dialect fills in every column type
// of the shared schema.
func TestMigrationsRender(t *testing.T) {
	lite, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "k.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	placeholder := regexp.MustCompile(`\{[a-z0-9]+\}`)
	for name, s := range map[string]interface{ Migrations() []model.Migration }{"sqlite": lite, "postgres": pgtest.Open(t)} {
		for _, m := range s.Migrations() {
			if p := placeholder.FindString(m.SQL); p != "" {
				t.Errorf("%s: migration %d leaves %s", name, m.Version, p)
			}
		}
	}
}
