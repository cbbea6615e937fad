package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/keygate/keygate/internal/storage/model"
)

// ---- sessions ----

type sessions struct{ s *Store }

const sessionCols = `hash, id, user_id, zone, auth_time, acr, amr, idle_timeout_us, created_at, last_seen_at, expires_at`

func (ss sessions) Create(ctx context.Context, s model.Session) error {
	if err := s.Validate(); err != nil {
		return err
	}
	idleUS := s.IdleTimeout.Microseconds()
	var idleExp time.Time
	if idleUS > 0 {
		idleExp = s.LastSeenAt.Add(s.IdleTimeout)
	}
	d := ss.s.d
	_, err := ss.s.w.Exec(ctx, `INSERT INTO sessions (`+sessionCols+`, idle_expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		s.Hash[:], s.ID, s.UserID, s.Zone, d.Time(s.AuthTime), s.ACR, d.List(s.AMR), idleUS,
		d.Time(s.CreatedAt), d.Time(s.LastSeenAt), d.Time(s.ExpiresAt), d.Time(idleExp))
	return ss.s.failed("create session", err)
}

func (ss sessions) Get(ctx context.Context, hash model.Hash) (model.Session, error) {
	var s model.Session
	var idleUS int64
	d := ss.s.d
	err := scan(ss.s.r.QueryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE hash = $1`, hash[:]),
		(*hashCol)(&s.Hash), &s.ID, &s.UserID, &s.Zone, d.ScanTime(&s.AuthTime), &s.ACR, d.ScanList(&s.AMR), &idleUS,
		d.ScanTime(&s.CreatedAt), d.ScanTime(&s.LastSeenAt), d.ScanTime(&s.ExpiresAt))
	s.IdleTimeout = time.Duration(idleUS) * time.Microsecond
	return s, found("session", err)
}

func (ss sessions) Touch(ctx context.Context, hash model.Hash, now time.Time) error {
	n, err := ss.s.w.Exec(ctx, `UPDATE sessions SET last_seen_at = $2,
		idle_expires_at = CASE WHEN idle_timeout_us > 0 THEN `+ss.s.d.AddMicros("$2", "idle_timeout_us")+` END
		WHERE hash = $1`, hash[:], ss.s.d.Time(now))
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("session: %w", model.ErrNotFound)
	}
	return nil
}

func (ss sessions) Exists(ctx context.Context, id string) (bool, error) {
	var ok bool
	err := ss.s.r.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1)`, id).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("find session: %w", err)
	}
	return ok, nil
}

func (ss sessions) Delete(ctx context.Context, hash model.Hash) error {
	_, err := ss.s.w.Exec(ctx, `DELETE FROM sessions WHERE hash = $1`, hash[:])
	return ss.s.failed("delete session", err)
}

// ---- users ----

type users struct{ s *Store }

const userCols = `id, zone, username, password_hash, claims, status, created_at, updated_at, external_id, scim, version`

func (u users) Create(ctx context.Context, usr model.User) error {
	if err := usr.Validate(); err != nil {
		return err
	}
	d := u.s.d
	if usr.Version == 0 {
		usr.Version = 1
	}
	claims, err := d.Object(usr.Claims)
	var doc, folded any
	if err == nil {
		doc, folded, err = u.scim(usr.SCIM)
	}
	if err == nil {
		_, err = u.s.w.Exec(ctx, `INSERT INTO users (`+userCols+`, scim_folded) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			usr.ID, usr.Zone, usr.Username, usr.PasswordHash, claims, usr.Status, d.Time(usr.CreatedAt), d.Time(usr.UpdatedAt),
			usr.ExternalID, doc, usr.Version, folded)
	}
	return u.s.failed("create user", err)
}

func (u users) Get(ctx context.Context, id string) (model.User, error) {
	return u.get(ctx, u.s.r, `SELECT `+userCols+` FROM users WHERE id = $1`, id)
}

func (u users) GetByUsername(ctx context.Context, zone, username string) (model.User, error) {
	return u.get(ctx, u.s.r, `SELECT `+userCols+` FROM users WHERE zone = $1 AND username = $2`, zone, username)
}

func (u users) get(ctx context.Context, q Querier, query string, args ...any) (model.User, error) {
	var usr model.User
	err := scan(q.QueryRow(ctx, query, args...), u.dest(&usr)...)
	return usr, found("user", err)
}

// Update reads and writes the user in one write transaction: concurrent
// updates queue on the row lock (ForUpdate) or SQLite's write lock.
func (u users) Update(ctx context.Context, id string, fn func(old model.User) (model.User, error)) error {
	tx, err := u.s.db.Begin(ctx)
	if err != nil {
		return u.s.failed("update user", err)
	}
	defer tx.Rollback()
	d := u.s.d
	old, err := u.get(ctx, tx, `SELECT `+userCols+` FROM users WHERE id = $1`+d.ForUpdate, id)
	if err != nil {
		return err
	}
	nu, err := fn(old)
	if err != nil {
		return err
	}
	nu.ID, nu.CreatedAt, nu.UpdatedAt, nu.Version = old.ID, old.CreatedAt, time.Now(), old.Version+1
	if err := nu.Validate(); err != nil {
		return err
	}
	claims, err := d.Object(nu.Claims)
	var doc, folded any
	if err == nil {
		doc, folded, err = u.scim(nu.SCIM)
	}
	if err == nil {
		_, err = tx.Exec(ctx, `UPDATE users SET zone = $2, username = $3, password_hash = $4, claims = $5,
			status = $6, updated_at = $7, external_id = $8, scim = $9, scim_folded = $10, version = $11 WHERE id = $1`,
			id, nu.Zone, nu.Username, nu.PasswordHash, claims, nu.Status, d.Time(nu.UpdatedAt), nu.ExternalID, doc, folded, nu.Version)
	}
	if err == nil {
		err = tx.Commit()
	}
	return u.s.failed("update user", err)
}
