package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/storage/model"
)

// DB is a backend's database as the statements here reach it.
type DB interface {
	Read() Querier  // reads outside a transaction
	Write() Querier // writes, and the reads that must see them
	// Begin starts a write transaction.
	Begin(ctx context.Context) (Tx, error)
	// ExecBatch runs query once per argument list, all in one commit, and
	// returns each run's count of changed rows; an error fails them all.
	ExecBatch(ctx context.Context, query string, args [][]any) ([]int64, error)
}

// Querier runs statements.
type Querier interface {
	Exec(ctx context.Context, query string, args ...any) (changed int64, err error)
	QueryRow(ctx context.Context, query string, args ...any) Row
	// Query calls each for every row the statement returns.
	Query(ctx context.Context, each func(Row) error, query string, args ...any) error
}

// Row is a result row (database/sql's or pgx's).
type Row interface{ Scan(dest ...any) error }

// Rows are a statement's result rows (database/sql's or pgx's).
type Rows interface {
	Row
	Next() bool
	Err() error
}

// EachRow calls each for every row, for Querier.Query; the caller closes
// the rows.
func EachRow(rows Rows, each func(Row) error) error {
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Tx is a write transaction.
type Tx interface {
	Querier
	Commit() error
	Rollback() // a no-op after Commit
}

// Dialect is what the two engines do differently, for the statements here.
type Dialect struct {
	// Types fills in the column types of the shared schema (see Migrations).
	Types *strings.Replacer

	// Time, List and Object encode arguments. The zero time is NULL; nil
	// and empty lists and maps store alike.
	Time   func(time.Time) any
	List   func([]string) any
	Object func(map[string]any) (any, error)
	// ScanTime, ScanList and ScanObject return scan destinations that
	// decode a column into p; NULL and empty read as the zero value.
	ScanTime   func(p *time.Time) any
	ScanList   func(p *[]string) any
	ScanObject func(p *map[string]any) any

	// In is the condition that value is an element of the stored list.
	In func(value, list string) string
	// AddMicros is a time plus a count of microseconds.
	AddMicros func(t, micros string) string
	// ForUpdate ends a SELECT that a transaction reads to write back.
	ForUpdate string
	// SchemaVersion is the newest applied migration; TableExists ($1: a
	// name) tells a missing migrations table from a failure.
	SchemaVersion, TableExists string
	// MigrationLock, if set, runs first in each migration's transaction.
	MigrationLock string
	// GCBatch bounds one DELETE of GC.
	GCBatch int
	// TokenWriters is how many access-token batches may commit at once.
	TokenWriters int
	// RotateValues, if set, makes Rotate one statement: the new token's
	// values ($1..$15) as INSERT ... SELECT needs them.
	RotateValues string
	// IsUnique reports a primary-key or unique-constraint violation.
	IsUnique func(error) bool

	// Reading JSON documents, for SCIM filters. A path's elements are
	// attribute names from the schema (never a client's text), or an
	// index written "[0]". JSONText is the string at path (NULL when
	// absent; an empty path: the document itself, a JSON string);
	// JSONHas the condition that path holds a value; JSONBool that it
	// holds true (or false); JSONEach a FROM item "e" whose column
	// e.value is each element of the array at path.
	JSONText func(doc string, path []string) string
	JSONHas  func(doc string, path []string) string
	JSONBool func(doc string, path []string, b bool) string
	JSONEach func(doc string, path []string) string
	// Contains is the condition that s holds sub; Collate makes text
	// order byte order of UTF-8, as Go's.
	Contains func(s, sub string) string
	Collate  string
}

// undecodable is a stored value that a scan destination cannot decode.
type undecodable struct{ err error }

func (e undecodable) Error() string { return e.err.Error() }

// Undecodable marks err as a scan destination's: scan returns it without
// the driver's "scan error on column ..." around it.
func Undecodable(err error) error { return undecodable{err} }

func scan(row Row, dest ...any) error {
	err := row.Scan(dest...)
	var u undecodable
	if err != nil && errors.As(err, &u) {
		return u.err
	}
	return err
}

// hashCol scans a stored hash (bytes on either engine): as database/sql's
// Scanner and as pgx's BytesScanner, which reads the bytes in place.
type hashCol model.Hash

func (h *hashCol) Scan(src any) error {
	b, _ := src.([]byte)
	return h.ScanBytes(b)
}

func (h *hashCol) ScanBytes(b []byte) error {
	if len(b) != len(h) {
		return Undecodable(fmt.Errorf("stored hash has %d bytes", len(b)))
	}
	copy(h[:], b)
	return nil
}
