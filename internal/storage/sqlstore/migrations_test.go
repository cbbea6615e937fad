package sqlstore_test

import (
	"regexp"
	"testing"

	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/storage/postgres"
	"github.com/keygate/keygate/internal/storage/sqlite"
)

// TestMigrationsRender: each backend's dialect fills in every column type
// of the shared schema.
func TestMigrationsRender(t *testing.T) {
	placeholder := regexp.MustCompile(`\{[a-z0-9]+\}`)
	for name, ms := range map[string][]model.Migration{"sqlite": sqlite.Migrations(), "postgres": postgres.Migrations()} {
		if err := model.CheckMigrations(ms); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		for _, m := range ms {
			if p := placeholder.FindString(m.SQL); p != "" {
				t.Errorf("%s: migration %d leaves %s", name, m.Version, p)
			}
		}
	}
}
