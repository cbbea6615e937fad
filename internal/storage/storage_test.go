package storage_test

import (
	"reflect"
	"testing"

	"github.com/keygate/keygate/internal/storage"
	"github.com/keygate/keygate/internal/storage/postgres"
	"github.com/keygate/keygate/internal/storage/sqlite"
)

// TestMigrationsAgree: one version number means one logical schema on
// every backend.
func TestMigrationsAgree(t *testing.T) {
	name := func(ms []storage.Migration) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return out
	}
	if a, b := name(sqlite.Migrations()), name(postgres.Migrations()); !reflect.DeepEqual(a, b) {
		t.Fatalf("sqlite migrations %v, postgres %v", a, b)
	}
}

func TestHashSecret(t *testing.T) {
	h := storage.HashSecret("abc")
	if h.String() != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("HashSecret = %s", h)
	}
	if a, b := storage.NewID(), storage.NewID(); a == b || len(a) != 22 {
		t.Fatalf("NewID = %q, %q", a, b)
	}
}
