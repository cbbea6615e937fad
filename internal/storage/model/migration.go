package model

import (
	"fmt"
	"time"
)

// Migrations: the rules every backend's list follows.
//
//   - Versions are 1, 2, 3, ... with no gaps, identical across backends (the
//     same version number means the same logical schema), and a migration
//     is never edited once released: fix forward with a new one.
//   - Each migration runs in its own transaction and is recorded in
//     keygate_schema_migrations (version, name, applied_at) in that same
//     transaction, so it is applied wholly or not at all.
//   - Expand/contract: nodes of release N and N+1 share one database during
//     a phased upgrade, and N keeps running after N+1 migrated. So a release
//     only ADDS: new tables, new nullable (or defaulted) columns, new
//     indexes. It never renames, drops, or tightens (NOT NULL, CHECK) what
//     the previous release reads or writes. A removal ships one release
//     later, once no supported binary uses the old shape; raise SchemaMin
//     with it.
//   - Migrations are concurrency-safe: PostgreSQL takes a transaction-level
//     advisory lock, SQLite a write (IMMEDIATE) transaction, and each checks
//     the table again under the lock before applying.

// Migration is one schema step.
type Migration struct {
	Version int
	Name    string
	SQL     string // may hold several statements
}

// AppliedMigration is a row of keygate_schema_migrations.
type AppliedMigration struct {
	Version   int
	Name      string
	AppliedAt time.Time
}

// The schema versions this binary supports: it needs at least SchemaMin
// applied, and its migrations go up to SchemaMax. A database ahead of
// SchemaMax was migrated by a newer release; expand/contract keeps it
// usable by this one.
//
// SchemaMin is 8: this binary reads and writes the users' SCIM columns
// and the groups, which migrations 4 and 5 add, the pushed authorization
// requests of migration 6, the device codes of migration 7, and the DPoP
// key bindings and proof ids of migration 8. Every migration so far only
// expands, so the previous release's binary still serves a database at
// version 8 (it ignores the columns and tables).
const (
	SchemaMin = 8
	SchemaMax = 8
)

// CheckSchemaVersion reports whether this binary can serve a database at
// applied version v.
func CheckSchemaVersion(v int) error {
	if v < SchemaMin {
		return fmt.Errorf("%w: version %d applied, this binary needs %d or newer", ErrSchemaTooOld, v, SchemaMin)
	}
	return nil
}

// CheckMigrations verifies that list is numbered 1..SchemaMax without gaps
// and every step is named; backends call it from their tests.
func CheckMigrations(list []Migration) error {
	for i, m := range list {
		if m.Version != i+1 {
			return fmt.Errorf("migration %d (%s) has version %d, want %d", i, m.Name, m.Version, i+1)
		}
		if m.Name == "" || m.SQL == "" {
			return fmt.Errorf("migration %d: name and SQL are required", m.Version)
		}
	}
	if len(list) != SchemaMax {
		return fmt.Errorf("%d migrations, but SchemaMax is %d", len(list), SchemaMax)
	}
	return nil
}
