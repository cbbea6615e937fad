package sqlite

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keygate/keygate/internal/storage/model"
)

// micros encodes a time as unix microseconds; the zero time is NULL.
func micros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromMicros(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMicro(n.Int64).UTC()
}

// list encodes a string list as JSON text; nil and empty both read back nil.
func list(v []string) string {
	if len(v) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(v) // []string always marshals
	return string(b)
}

func fromList(s string) ([]string, error) {
	if s == "" || s == "[]" {
		return nil, nil
	}
	var v []string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("decode list: %w", err)
	}
	return v, nil
}

func object(m map[string]any) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode json: %w", err)
	}
	return string(b), nil
}

func fromObject(s string) (map[string]any, error) {
	if s == "" || s == "{}" {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("decode json: %w", err)
	}
	return m, nil
}

func hashArg(h model.Hash) []byte { return h[:] }

func toHash(b []byte) (model.Hash, error) {
	var h model.Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("stored hash has %d bytes", len(b))
	}
	copy(h[:], b)
	return h, nil
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// decoder collects the first decode error of a scan, so each record's scan
// function stays a flat list of fields.
type decoder struct{ err error }

func (d *decoder) list(s string) []string {
	v, err := fromList(s)
	if err != nil && d.err == nil {
		d.err = err
	}
	return v
}

func (d *decoder) object(s string) map[string]any {
	v, err := fromObject(s)
	if err != nil && d.err == nil {
		d.err = err
	}
	return v
}

func (d *decoder) hash(b []byte) model.Hash {
	v, err := toHash(b)
	if err != nil && d.err == nil {
		d.err = err
	}
	return v
}
