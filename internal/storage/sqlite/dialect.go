package sqlite

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keygate/keygate/internal/storage/sqlstore"
)

// dialect is SQLite's: times are INTEGER unix microseconds, lists and maps
// JSON text (lists searched with json_each), and the tables keyed by a
// hash WITHOUT ROWID.
var dialect = sqlstore.Dialect{
	Types: strings.NewReplacer("{bytes}", "BLOB", "{time}", "INTEGER", "{int64}", "INTEGER", "{list}", "TEXT",
		"{json}", "TEXT", "{serial}", "INTEGER PRIMARY KEY AUTOINCREMENT", "{norowid}", " WITHOUT ROWID"),

	Time:       micros,
	List:       list,
	Object:     object,
	ScanTime:   func(p *time.Time) any { return (*microsCol)(p) },
	ScanList:   func(p *[]string) any { return (*listCol)(p) },
	ScanObject: func(p *map[string]any) any { return (*objectCol)(p) },

	In:        func(value, list string) string { return value + " IN (SELECT value FROM json_each(" + list + "))" },
	AddMicros: func(t, us string) string { return t + " + " + us },
	ForUpdate: "", // a write transaction holds the whole database
	// SQLite resolves table names when it prepares a statement, so a
	// missing table is told apart only after the query fails.
	SchemaVersion: `SELECT COALESCE(MAX(version), 0) FROM keygate_schema_migrations`,
	TableExists:   `SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1)`,
	// The IMMEDIATE transaction is the migration lock.
	MigrationLock: "",
	// Short DELETEs: the single writer is never held long.
	GCBatch: 1000,
	// Batches commit one after another on the one writer connection.
	TokenWriters: 1,
	// No data-modifying WITH: Rotate reads and writes in a transaction.
	RotateValues: "",
	IsUnique:     isUnique,

	JSONText: func(doc string, path []string) string {
		if len(path) == 0 {
			return doc
		}
		return "json_extract(" + doc + ", '" + jsonPath(path) + "')"
	},
	JSONHas: func(doc string, path []string) string {
		return "json_type(" + doc + ", '" + jsonPath(path) + "') IS NOT NULL"
	},
	JSONBool: func(doc string, path []string, b bool) string {
		return "json_type(" + doc + ", '" + jsonPath(path) + "') = '" + fmt.Sprint(b) + "'"
	},
	JSONEach: func(doc string, path []string) string { return "json_each(" + doc + ", '" + jsonPath(path) + "') AS e" },
	Contains: func(s, sub string) string { return "instr(" + s + ", " + sub + ") > 0" },
	Collate:  "", // BINARY, the default: byte order
}

// jsonPath is a JSON path of schema names: $."a"."b"[0].
func jsonPath(path []string) string {
	var b strings.Builder
	b.WriteString("$")
	for _, p := range path {
		if strings.HasPrefix(p, "[") {
			b.WriteString(p)
			continue
		}
		b.WriteString(`."` + p + `"`)
	}
	return b.String()
}

func micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

type microsCol time.Time

func (c *microsCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*c = microsCol{}
	case int64:
		*c = microsCol(time.UnixMicro(v).UTC())
	default:
		return sqlstore.Undecodable(fmt.Errorf("stored time is %T", src))
	}
	return nil
}

// list and object encode as JSON text; nil and empty read back nil.
func list(v []string) any {
	if len(v) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(v) // []string always marshals
	return string(b)
}

func object(m map[string]any) (any, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode json: %w", err)
	}
	return string(b), nil
}

type listCol []string

func (c *listCol) Scan(src any) error { *c = nil; return fromJSON(src, (*[]string)(c), "list") }

type objectCol map[string]any

func (c *objectCol) Scan(src any) error { *c = nil; return fromJSON(src, (*map[string]any)(c), "json") }

// fromJSON decodes a JSON text column (the driver hands TEXT over as a
// string) into v; empty leaves v alone.
func fromJSON(src, v any, what string) error {
	s, _ := src.(string)
	if s == "" || s == "[]" || s == "{}" {
		return nil
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return sqlstore.Undecodable(fmt.Errorf("decode %s: %w", what, err))
	}
	return nil
}

func isUnique(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
	}
	return false
}
