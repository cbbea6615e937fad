package postgres

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/keygate/keygate/internal/storage/sqlstore"
)

// dialect is PostgreSQL's: times are timestamptz, lists text[] and maps
// jsonb, each passed to pgx as the Go value.
var dialect = sqlstore.Dialect{
	Types: strings.NewReplacer("{bytes}", "bytea", "{time}", "timestamptz", "{int64}", "bigint", "{list}", "text[]",
		"{json}", "jsonb", "{serial}", "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "{norowid}", ""),

	Time: func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return t
	},
	List: func(v []string) any {
		if v == nil {
			return []string{} // '{}', not NULL
		}
		return v
	},
	Object: func(m map[string]any) (any, error) {
		if m == nil {
			return map[string]any{}, nil // '{}', not NULL
		}
		return m, nil
	},
	ScanTime:   func(p *time.Time) any { return (*timeCol)(p) },
	ScanList:   func(p *[]string) any { return (*listCol)(p) },
	ScanObject: func(p *map[string]any) any { return (*objectCol)(p) },

	In: func(value, list string) string { return value + " = ANY (" + list + ")" },
	AddMicros: func(t, us string) string {
		return t + "::timestamptz + " + us + " * interval '1 microsecond'"
	},
	// The row lock keeps concurrent updates of a user from both reading the
	// old row.
	ForUpdate: " FOR UPDATE",
	SchemaVersion: `SELECT CASE WHEN to_regclass('keygate_schema_migrations') IS NULL THEN 0
		ELSE (SELECT COALESCE(MAX(version), 0) FROM keygate_schema_migrations) END`,
	TableExists: `SELECT to_regclass($1) IS NOT NULL`,
	// Nodes migrating one database queue here; tests in separate schemas
	// do not.
	MigrationLock: `SELECT pg_advisory_xact_lock(hashtext('keygate_schema_migrations:' || current_schema()))`,
	// DELETEs that never hold many row locks at once.
	GCBatch: 5000,
	// Two batches in flight overlap one's WAL flush with the next one's
	// round trip.
	TokenWriters: 2,
	// Rotate is one statement; INSERT ... SELECT does not infer parameter
	// types from the target columns.
	RotateValues: `$1::bytea, $2::text, $3::text, $4::text, $5::text[], $6::text[], $7::text, $8::timestamptz,
		$9::text, $10::text[], $11::text, $12::timestamptz, $13::timestamptz, $14::timestamptz, $15::timestamptz, $16::text`,
	IsUnique: func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "23505" // unique_violation
	},

	JSONText: func(doc string, path []string) string { return "(" + doc + " #>> '" + textPath(path) + "')" },
	JSONHas:  func(doc string, path []string) string { return "(" + doc + " #> '" + textPath(path) + "') IS NOT NULL" },
	JSONBool: func(doc string, path []string, b bool) string {
		return "(" + doc + " #> '" + textPath(path) + "') = '" + fmt.Sprint(b) + "'::jsonb"
	},
	JSONEach: func(doc string, path []string) string {
		p := "(" + doc + " #> '" + textPath(path) + "')"
		return "jsonb_array_elements(CASE WHEN jsonb_typeof(" + p + ") = 'array' THEN " + p + " ELSE '[]'::jsonb END) AS e(value)"
	},
	Contains: func(s, sub string) string { return "strpos(" + s + ", " + sub + ") > 0" },
	Collate:  ` COLLATE "C"`,
}

// timeCol reads timestamptz in UTC, NULL as the zero time.
type timeCol time.Time

func (c *timeCol) ScanTimestamptz(v pgtype.Timestamptz) error {
	*c = timeCol{}
	if v.Valid {
		*c = timeCol(v.Time.UTC())
	}
	return nil
}

// listCol reads text[]; empty reads nil.
type listCol []string

func (c *listCol) SetDimensions(dims []pgtype.ArrayDimension) error {
	n := min(len(dims), 1) // no dimensions: no elements
	for _, d := range dims {
		n *= int(d.Length)
	}
	*c = nil
	if n > 0 {
		*c = make(listCol, n)
	}
	return nil
}

func (c listCol) ScanIndex(i int) any { return &c[i] }
func (c listCol) ScanIndexType() any  { return new(string) }

// objectCol reads jsonb; an empty object reads nil.
type objectCol map[string]any

func (c *objectCol) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if len(m) == 0 {
		m = nil
	}
	*c = m
	return nil
}

// textPath is a path of schema names as a text[] literal: {"a","b","0"}.
func textPath(path []string) string {
	parts := make([]string, len(path))
	for i, p := range path {
		parts[i] = `"` + strings.Trim(p, "[]") + `"`
	}
	return "{" + strings.Join(parts, ",") + "}"
}
