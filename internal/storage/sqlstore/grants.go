package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/internal/storage/model"
)

// ---- refresh tokens ----

type refreshTokens struct{ s *Store }

const refreshCols = `hash, family_id, client_id, subject, scopes, audience, session_id, auth_time, acr, amr,
	profile, issued_at, expires_at, used_at, revoked_at, jkt`

const insertRefreshSQL = `INSERT INTO refresh_tokens (` + refreshCols + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`

func (s *Store) refreshArgs(t model.RefreshToken) []any {
	d := s.d
	return []any{t.Hash[:], t.FamilyID, t.ClientID, t.Subject, d.List(t.Scopes), d.List(t.Audience), t.SessionID,
		d.Time(t.AuthTime), t.ACR, d.List(t.AMR), t.Profile, d.Time(t.IssuedAt), d.Time(t.ExpiresAt),
		d.Time(t.UsedAt), d.Time(t.RevokedAt), t.JKT}
}

func (r refreshTokens) Create(ctx context.Context, t model.RefreshToken) error {
	if err := t.Validate(); err != nil {
		return err
	}
	_, err := r.s.w.Exec(ctx, insertRefreshSQL, r.s.refreshArgs(t)...)
	return r.s.failed("create refresh token", err)
}

func (r refreshTokens) Get(ctx context.Context, hash model.Hash) (model.RefreshToken, error) {
	var t model.RefreshToken
	d := r.s.d
	err := scan(r.s.r.QueryRow(ctx, `SELECT `+refreshCols+` FROM refresh_tokens WHERE hash = $1`, hash[:]),
		(*hashCol)(&t.Hash), &t.FamilyID, &t.ClientID, &t.Subject, d.ScanList(&t.Scopes), d.ScanList(&t.Audience),
		&t.SessionID, d.ScanTime(&t.AuthTime), &t.ACR, d.ScanList(&t.AMR), &t.Profile, d.ScanTime(&t.IssuedAt),
		d.ScanTime(&t.ExpiresAt), d.ScanTime(&t.UsedAt), d.ScanTime(&t.RevokedAt), &t.JKT)
	return t, found("refresh token", err)
}

// markUsedSQL marks the old token (hash) used at now while it is unspent,
// unrevoked and of family, and no token of family is revoked.
func markUsedSQL(hash, now, family string) string {
	return `UPDATE refresh_tokens SET used_at = ` + now + `
		WHERE hash = ` + hash + ` AND used_at IS NULL AND revoked_at IS NULL AND family_id = ` + family + `
			AND NOT EXISTS (SELECT 1 FROM refresh_tokens f WHERE f.family_id = ` + family + ` AND f.revoked_at IS NOT NULL)`
}

// Rotate marks the old token used and inserts the new one only if the
// mark changed a row. Concurrent rotations of one token queue on that
// row's write (PostgreSQL's row lock, SQLite's database lock), and each
// later one finds used_at set and inserts nothing.
func (r refreshTokens) Rotate(ctx context.Context, oldHash model.Hash, next model.RefreshToken) error {
	if err := next.Validate(); err != nil {
		return err
	}
	rotated, err := r.rotate(ctx, oldHash, next)
	if rotated || err != nil {
		return r.s.failed("rotate refresh token", err)
	}
	// Nothing rotated: say why.
	var family string
	var used, revoked time.Time
	err = scan(r.s.w.QueryRow(ctx, `SELECT family_id, used_at, revoked_at FROM refresh_tokens WHERE hash = $1`,
		oldHash[:]), &family, r.s.d.ScanTime(&used), r.s.d.ScanTime(&revoked))
	// Unspent and unrevoked itself: a revocation of its family has reached
	// other tokens and not yet this one.
	why := model.ErrRevoked
	switch {
	case errors.Is(err, sql.ErrNoRows):
		why = model.ErrNotFound
	case err != nil:
		why = err
	case !used.IsZero():
		why = model.ErrReplay
	case revoked.IsZero() && family != next.FamilyID:
		return fmt.Errorf("rotate refresh token: new token's family %q differs from the old token's %q", next.FamilyID, family)
	}
	return fmt.Errorf("rotate refresh token: %w", why)
}

// rotate runs the mark and the insert as one statement where the dialect
// allows (INSERT ... SELECT from the UPDATE), otherwise in a transaction.
func (r refreshTokens) rotate(ctx context.Context, oldHash model.Hash, next model.RefreshToken) (bool, error) {
	now := r.s.d.Time(time.Now())
	if values := r.s.d.RotateValues; values != "" {
		n, err := r.s.w.Exec(ctx, `WITH old AS (`+markUsedSQL("$17", "$18", "$2")+` RETURNING 1)
			INSERT INTO refresh_tokens (`+refreshCols+`) SELECT `+values+` FROM old`,
			append(r.s.refreshArgs(next), oldHash[:], now)...)
		return n == 1, err
	}
	tx, err := r.s.db.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	if n, err := tx.Exec(ctx, markUsedSQL("$1", "$2", "$3"), oldHash[:], now, next.FamilyID); n == 0 || err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, insertRefreshSQL, r.s.refreshArgs(next)...); err != nil {
		return false, err
	}
	return true, tx.Commit()
}

// RevokeFamily repeats its UPDATE until a pass changes no row. Under
// PostgreSQL's READ COMMITTED a pass that waits for a concurrent Rotate
// revokes the old row but not the new token, which is outside its
// snapshot; the next pass sees it. A pass that changes nothing saw the
// whole family revoked, and Rotate refuses a family with any revoked
// token, so the loop ends within a few passes (ctx bounds it anyway). On
// SQLite, whose writes run one at a time, the second pass finds nothing.
func (r refreshTokens) RevokeFamily(ctx context.Context, familyID string) error {
	now := r.s.d.Time(time.Now())
	for {
		n, err := r.s.w.Exec(ctx,
			`UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL`, familyID, now)
		if err != nil {
			return fmt.Errorf("revoke refresh family: %w", err)
		}
		if n == 0 {
			return nil
		}
	}
}

// RevokeSession repeats its UPDATE until a pass revokes nothing, for the
// reason RevokeFamily does; each pass looks the session's families up
// again, so it also catches a family whose first token was committed
// after the previous pass began.
func (r refreshTokens) RevokeSession(ctx context.Context, sessionID string) (int, error) {
	if sessionID == "" {
		return 0, nil // tokens without a session must not match
	}
	q := `UPDATE refresh_tokens SET revoked_at = $2
		WHERE revoked_at IS NULL AND family_id IN (
			SELECT family_id FROM refresh_tokens WHERE session_id = $1 GROUP BY family_id
			HAVING max(CASE WHEN ` + r.s.d.In("$3", "scopes") + ` THEN 1 ELSE 0 END) = 0)
		RETURNING family_id`
	now := r.s.d.Time(time.Now())
	families := map[string]bool{}
	for {
		changed := false
		err := r.s.w.Query(ctx, func(row Row) error {
			var f string
			if err := row.Scan(&f); err != nil {
				return err
			}
			changed, families[f] = true, true
			return nil
		}, q, sessionID, now, model.ScopeOfflineAccess)
		if err != nil {
			return len(families), fmt.Errorf("revoke refresh tokens of session: %w", err)
		}
		if !changed {
			return len(families), nil
		}
	}
}

// ---- authorization codes ----

type authCodes struct{ s *Store }

const codeCols = `hash, client_id, redirect_uri, scopes, audience, subject, session_id, nonce, code_challenge,
	code_challenge_method, auth_time, acr, amr, profile, access_token_jti, refresh_family_id, issued_at, expires_at, used_at,
	dpop_jkt`

// readCodeCols are codeCols plus what only the store writes.
const readCodeCols = codeCols + `, failed_attempts`

func (a authCodes) Create(ctx context.Context, c model.AuthCode) error {
	if err := c.Validate(); err != nil {
		return err
	}
	d := a.s.d
	_, err := a.s.w.Exec(ctx, `INSERT INTO auth_codes (`+codeCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)`,
		c.Hash[:], c.ClientID, c.RedirectURI, d.List(c.Scopes), d.List(c.Audience), c.Subject, c.SessionID, c.Nonce,
		c.CodeChallenge, c.CodeChallengeMethod, d.Time(c.AuthTime), c.ACR, d.List(c.AMR), c.Profile, c.AccessTokenJTI,
		c.RefreshFamilyID, d.Time(c.IssuedAt), d.Time(c.ExpiresAt), d.Time(c.UsedAt), c.DPoPJKT)
	return a.s.failed("create auth code", err)
}

func (a authCodes) Get(ctx context.Context, hash model.Hash) (model.AuthCode, error) {
	c, err := a.scan(a.s.r.QueryRow(ctx, `SELECT `+readCodeCols+` FROM auth_codes WHERE hash = $1`, hash[:]))
	return c, found("auth code", err)
}

func (a authCodes) Fail(ctx context.Context, hash model.Hash) error {
	_, err := a.s.w.Exec(ctx, `UPDATE auth_codes SET failed_attempts = failed_attempts + 1
		WHERE hash = $1 AND used_at IS NULL`, hash[:])
	return a.s.failed("count failed code exchange", err)
}

// Consume marks the code used in one statement. Concurrent consumers (and
// Fail) queue on the row's write, and each later one checks used_at and
// failed_attempts again after the first commits, so exactly one matches.
func (a authCodes) Consume(ctx context.Context, hash model.Hash) (model.AuthCode, error) {
	c, err := a.scan(a.s.w.QueryRow(ctx, `UPDATE auth_codes SET used_at = $2
		WHERE hash = $1 AND used_at IS NULL AND failed_attempts < $3 RETURNING `+readCodeCols,
		hash[:], a.s.d.Time(time.Now()), model.MaxCodeFailures))
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("consume auth code: %w", err)
	}
	c, err = a.scan(a.s.w.QueryRow(ctx, `SELECT `+readCodeCols+` FROM auth_codes WHERE hash = $1`, hash[:]))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return c, fmt.Errorf("auth code: %w", model.ErrNotFound)
	case err != nil:
		return c, fmt.Errorf("consume auth code: %w", err)
	case c.UsedAt.IsZero():
		return c, fmt.Errorf("auth code failed %d times: %w", c.FailedAttempts, model.ErrRevoked)
	}
	return c, fmt.Errorf("auth code: %w", model.ErrReplay)
}

func (a authCodes) scan(row Row) (model.AuthCode, error) {
	var c model.AuthCode
	d := a.s.d
	err := scan(row, (*hashCol)(&c.Hash), &c.ClientID, &c.RedirectURI, d.ScanList(&c.Scopes), d.ScanList(&c.Audience),
		&c.Subject, &c.SessionID, &c.Nonce, &c.CodeChallenge, &c.CodeChallengeMethod, d.ScanTime(&c.AuthTime), &c.ACR,
		d.ScanList(&c.AMR), &c.Profile, &c.AccessTokenJTI, &c.RefreshFamilyID, d.ScanTime(&c.IssuedAt),
		d.ScanTime(&c.ExpiresAt), d.ScanTime(&c.UsedAt), &c.DPoPJKT, &c.FailedAttempts)
	return c, err
}
