package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/internal/storage/model"
)

// ---- device authorization requests ----

type deviceCodes struct{ s *Store }

const deviceCols = `hash, user_code, client_id, profile, scopes, audience, status, subject, session_id, auth_time,
	acr, amr, interval_ms, polls, last_polled_at, issued_at, expires_at`

func (d deviceCodes) Create(ctx context.Context, c model.DeviceCode) error {
	if err := c.Validate(); err != nil {
		return err
	}
	x := d.s.d
	_, err := d.s.w.Exec(ctx, `INSERT INTO device_codes (`+deviceCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
		c.Hash[:], c.UserCode[:], c.ClientID, c.Profile, x.List(c.Scopes), x.List(c.Audience), c.Status, c.Subject,
		c.SessionID, x.Time(c.AuthTime), c.ACR, x.List(c.AMR), c.Interval.Milliseconds(), c.Polls,
		x.Time(c.LastPolledAt), x.Time(c.IssuedAt), x.Time(c.ExpiresAt))
	return d.s.failed("create device code", err)
}

func (d deviceCodes) Get(ctx context.Context, hash model.Hash) (model.DeviceCode, error) {
	c, err := d.scan(d.s.r.QueryRow(ctx, `SELECT `+deviceCols+` FROM device_codes WHERE hash = $1`, hash[:]))
	return c, found("device code", err)
}

func (d deviceCodes) ByUserCode(ctx context.Context, userCode model.Hash) (model.DeviceCode, error) {
	c, err := d.scan(d.s.r.QueryRow(ctx, `SELECT `+deviceCols+` FROM device_codes WHERE user_code = $1`, userCode[:]))
	return c, found("device code", err)
}

// Decide is one conditional UPDATE: a request decided (on any node) or
// expired in between matches no row.
func (d deviceCodes) Decide(ctx context.Context, c model.DeviceCode, now time.Time) error {
	if c.Status != model.DeviceApproved && c.Status != model.DeviceDenied {
		return fmt.Errorf("decide device code: status %q is no decision", c.Status)
	}
	x := d.s.d
	n, err := d.s.w.Exec(ctx, `UPDATE device_codes SET status = $2, subject = $3, session_id = $4, auth_time = $5,
		acr = $6, amr = $7 WHERE user_code = $1 AND status = $8 AND expires_at > $9`,
		c.UserCode[:], c.Status, c.Subject, c.SessionID, x.Time(c.AuthTime), c.ACR, x.List(c.AMR),
		model.DevicePending, x.Time(now))
	switch {
	case err != nil:
		return d.s.failed("decide device code", err)
	case n == 0:
		return fmt.Errorf("decide device code: %w", model.ErrNotFound)
	}
	return nil
}

// Poll compares and sets on the poll count, so of two polls that read the
// same count only one is recorded.
func (d deviceCodes) Poll(ctx context.Context, hash model.Hash, polls int, now time.Time, interval time.Duration) (bool, error) {
	n, err := d.s.w.Exec(ctx, `UPDATE device_codes SET polls = polls + 1, last_polled_at = $3, interval_ms = $4
		WHERE hash = $1 AND polls = $2`, hash[:], polls, d.s.d.Time(now), interval.Milliseconds())
	if err != nil {
		return false, d.s.failed("record device poll", err)
	}
	return n == 1, nil
}

// Consume is one DELETE ... RETURNING of a decided request: concurrent
// consumers queue on the row's write and the later ones find it gone.
func (d deviceCodes) Consume(ctx context.Context, hash model.Hash) (model.DeviceCode, error) {
	c, err := d.scan(d.s.w.QueryRow(ctx, `DELETE FROM device_codes WHERE hash = $1 AND status <> $2 RETURNING `+deviceCols,
		hash[:], model.DevicePending))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("device code: %w", model.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("consume device code: %w", err)
	}
	return c, nil
}

func (d deviceCodes) scan(row Row) (model.DeviceCode, error) {
	var c model.DeviceCode
	var ms int64
	x := d.s.d
	err := scan(row, (*hashCol)(&c.Hash), (*hashCol)(&c.UserCode), &c.ClientID, &c.Profile, x.ScanList(&c.Scopes),
		x.ScanList(&c.Audience), &c.Status, &c.Subject, &c.SessionID, x.ScanTime(&c.AuthTime), &c.ACR, x.ScanList(&c.AMR),
		&ms, &c.Polls, x.ScanTime(&c.LastPolledAt), x.ScanTime(&c.IssuedAt), x.ScanTime(&c.ExpiresAt))
	c.Interval = time.Duration(ms) * time.Millisecond
	return c, err
}
