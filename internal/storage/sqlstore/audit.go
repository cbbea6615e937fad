package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/storage/model"
)

type audit struct{ s *Store }

func (a audit) Append(ctx context.Context, e model.AuditEvent) error {
	if e.Type == "" || e.Time.IsZero() {
		return errors.New("audit event: type and time are required")
	}
	details, err := a.s.d.Object(e.Details)
	if err == nil {
		_, err = a.s.w.Exec(ctx, `INSERT INTO audit_events (time, type, zone, subject, client_id, ip, details)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, a.s.d.Time(e.Time), e.Type, e.Zone, e.Subject, e.ClientID, e.IP, details)
	}
	return a.s.failed("append audit event", err)
}

func (a audit) List(ctx context.Context, q model.AuditQuery) ([]model.AuditEvent, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if q.Type != "" {
		add("type = $%d", q.Type)
	}
	if q.Subject != "" {
		add("subject = $%d", q.Subject)
	}
	if q.ClientID != "" {
		add("client_id = $%d", q.ClientID)
	}
	if q.Zone != "" {
		// An event written without a zone (before events carried one)
		// belongs to the data source it is in, which is the zone's.
		add("(zone = $%d OR zone = '')", q.Zone)
	}
	if !q.Since.IsZero() {
		add("time >= $%d", a.s.d.Time(q.Since))
	}
	if !q.Until.IsZero() {
		add("time < $%d", a.s.d.Time(q.Until))
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	query := `SELECT id, time, type, zone, subject, client_id, ip, details FROM audit_events`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit) // a parameter, so that every limit is one statement
	order := "time, id"
	if q.Newest {
		order = "time DESC, id DESC"
	}
	query += fmt.Sprintf(" ORDER BY %s LIMIT $%d", order, len(args))
	var out []model.AuditEvent
	d := a.s.d
	err := a.s.r.Query(ctx, func(row Row) error {
		var e model.AuditEvent
		err := scan(row, &e.ID, d.ScanTime(&e.Time), &e.Type, &e.Zone, &e.Subject, &e.ClientID, &e.IP,
			d.ScanObject(&e.Details))
		out = append(out, e)
		return err
	}, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	return out, nil
}

// Prune deletes old events in batches, so a large backlog never holds the
// writer for long.
func (a audit) Prune(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	q := fmt.Sprintf(`DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE time < $1 LIMIT %d)`, a.s.d.GCBatch)
	for {
		n, err := a.s.w.Exec(ctx, q, a.s.d.Time(before))
		if err != nil {
			return total, fmt.Errorf("%s: prune audit events: %w", a.s.target, err)
		}
		total += n
		if n < int64(a.s.d.GCBatch) {
			return total, nil
		}
	}
}
