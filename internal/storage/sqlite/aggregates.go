package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/storage/model"
)

// ---- access tokens ----

type accessTokens struct{ s *Store }

const insertAccessTokenSQL = `INSERT INTO access_tokens
	(hash, jti, client_id, subject, scopes, audience, profile, issued_at, expires_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`

// getAccessTokenSQL joins the revocation, which is kept only there.
const getAccessTokenSQL = `SELECT a.hash, a.jti, a.client_id, a.subject, a.scopes, a.audience, a.profile,
	a.issued_at, a.expires_at, r.revoked_at
	FROM access_tokens a LEFT JOIN revoked_tokens r ON r.jti = a.jti WHERE a.hash = $1`

// Create queues t for the next group commit (see batch).
func (a accessTokens) Create(ctx context.Context, t model.AccessToken) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if err := a.s.tokens.Do(ctx, t); err != nil {
		return fmt.Errorf("create access token: %w", err)
	}
	return nil
}

// tokenBatch bounds one group commit.
const tokenBatch = 128

// insertAccessTokens writes a batch in one IMMEDIATE transaction. A
// duplicate hash inserts nothing (ON CONFLICT DO NOTHING), so it fails only
// its own item; any other error fails every item.
func (s *Store) insertAccessTokens(ctx context.Context, toks []model.AccessToken) []error {
	errs := make([]error, len(toks))
	fail := func(err error) []error {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fail(err)
	}
	defer tx.Rollback()
	var st *sql.Stmt
	if h := s.stmts(ctx); h != nil {
		st = tx.StmtContext(ctx, h.insertAccessToken)
	} else if st, err = tx.PrepareContext(ctx, insertAccessTokenSQL); err != nil {
		return fail(err)
	}
	defer st.Close()
	for i, t := range toks {
		res, err := st.ExecContext(ctx, hashArg(t.Hash), t.JTI, t.ClientID, t.Subject, list(t.Scopes), list(t.Audience),
			t.Profile, micros(t.IssuedAt), micros(t.ExpiresAt))
		if err != nil {
			return fail(err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fail(err)
		} else if n == 0 {
			errs[i] = model.ErrConflict
		}
	}
	if err := tx.Commit(); err != nil {
		return fail(err)
	}
	return errs
}

func (a accessTokens) Get(ctx context.Context, hash model.Hash) (model.AccessToken, error) {
	var row *sql.Row
	if h := a.s.stmts(ctx); h != nil {
		row = h.getAccessToken.QueryRowContext(ctx, hashArg(hash))
	} else {
		row = a.s.r.QueryRowContext(ctx, getAccessTokenSQL, hashArg(hash))
	}
	t, err := scanAccessToken(row)
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("access token: %w", model.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("get access token: %w", err)
	}
	return t, nil
}

func scanAccessToken(sc scanner) (model.AccessToken, error) {
	var t model.AccessToken
	var hash []byte
	var scopes, aud string
	var iat, exp, rev sql.NullInt64
	if err := sc.Scan(&hash, &t.JTI, &t.ClientID, &t.Subject, &scopes, &aud, &t.Profile, &iat, &exp, &rev); err != nil {
		return t, err
	}
	var d decoder
	t.Hash, t.Scopes, t.Audience = d.hash(hash), d.list(scopes), d.list(aud)
	t.IssuedAt, t.ExpiresAt, t.RevokedAt = fromMicros(iat), fromMicros(exp), fromMicros(rev)
	return t, d.err
}

// ---- revocations ----

type revocations struct{ s *Store }

const isRevokedSQL = `SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $1)`

func (r revocations) Revoke(ctx context.Context, jti string, expiresAt time.Time) error {
	if jti == "" || expiresAt.IsZero() {
		return errors.New("revoke: jti and expiry are required")
	}
	if _, err := r.s.w.ExecContext(ctx, `INSERT INTO revoked_tokens (jti, revoked_at, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)`,
		jti, time.Now().UnixMicro(), expiresAt.UnixMicro()); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	return nil
}

func (r revocations) IsRevoked(ctx context.Context, ids ...string) (bool, error) {
	var row *sql.Row
	switch h := r.s.stmts(ctx); {
	case len(ids) == 0:
		return false, nil
	case len(ids) == 1 && h != nil:
		row = h.isRevoked.QueryRowContext(ctx, ids[0])
	case len(ids) == 1:
		row = r.s.r.QueryRowContext(ctx, isRevokedSQL, ids[0])
	default:
		params := make([]string, len(ids))
		args := make([]any, len(ids))
		for i, id := range ids {
			params[i], args[i] = fmt.Sprintf("$%d", i+1), id
		}
		row = r.s.r.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti IN (`+
			strings.Join(params, ", ")+`))`, args...)
	}
	var revoked bool
	if err := row.Scan(&revoked); err != nil {
		return false, fmt.Errorf("is revoked: %w", err)
	}
	return revoked, nil
}

// ---- assertions ----

type assertions struct{ s *Store }

const useAssertionSQL = `INSERT INTO used_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`

func (a assertions) Use(ctx context.Context, clientID, jti string, expiresAt time.Time) error {
	if clientID == "" || jti == "" || expiresAt.IsZero() {
		return errors.New("use assertion: client id, jti and expiry are required")
	}
	var res sql.Result
	var err error
	if h := a.s.stmts(ctx); h != nil {
		res, err = h.useAssertion.ExecContext(ctx, clientID, jti, expiresAt.UnixMicro())
	} else {
		res, err = a.s.w.ExecContext(ctx, useAssertionSQL, clientID, jti, expiresAt.UnixMicro())
	}
	if err != nil {
		return fmt.Errorf("use assertion: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("use assertion: %w", err)
	} else if n == 0 {
		return fmt.Errorf("assertion jti: %w", model.ErrReplay)
	}
	return nil
}

// ---- refresh tokens ----

type refreshTokens struct{ s *Store }

const refreshCols = `hash, family_id, client_id, subject, scopes, audience, session_id, auth_time, acr, amr,
	profile, issued_at, expires_at, used_at, revoked_at`

const insertRefreshSQL = `INSERT INTO refresh_tokens (` + refreshCols + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`

func refreshArgs(t model.RefreshToken) []any {
	return []any{hashArg(t.Hash), t.FamilyID, t.ClientID, t.Subject, list(t.Scopes), list(t.Audience), t.SessionID,
		micros(t.AuthTime), t.ACR, list(t.AMR), t.Profile, micros(t.IssuedAt), micros(t.ExpiresAt),
		micros(t.UsedAt), micros(t.RevokedAt)}
}

func (r refreshTokens) Create(ctx context.Context, t model.RefreshToken) error {
	if err := t.Validate(); err != nil {
		return err
	}
	_, err := r.s.w.ExecContext(ctx, insertRefreshSQL, refreshArgs(t)...)
	if isUnique(err) {
		return fmt.Errorf("create refresh token: %w", model.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create refresh token: %w", err)
	}
	return nil
}

func (r refreshTokens) Get(ctx context.Context, hash model.Hash) (model.RefreshToken, error) {
	t, err := scanRefresh(r.s.r.QueryRowContext(ctx, `SELECT `+refreshCols+` FROM refresh_tokens WHERE hash = $1`, hashArg(hash)))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("refresh token: %w", model.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("get refresh token: %w", err)
	}
	return t, nil
}

func (r refreshTokens) Rotate(ctx context.Context, oldHash model.Hash, next model.RefreshToken) error {
	if err := next.Validate(); err != nil {
		return err
	}
	tx, err := r.s.w.BeginTx(ctx, nil) // IMMEDIATE: the write lock is ours until commit
	if err != nil {
		return fmt.Errorf("rotate refresh token: %w", err)
	}
	defer tx.Rollback()
	var family string
	var used, revoked sql.NullInt64
	err = tx.QueryRowContext(ctx, `SELECT family_id, used_at, revoked_at FROM refresh_tokens WHERE hash = $1`,
		hashArg(oldHash)).Scan(&family, &used, &revoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("rotate refresh token: %w", model.ErrNotFound)
	case err != nil:
		return fmt.Errorf("rotate refresh token: %w", err)
	case used.Valid:
		return fmt.Errorf("rotate refresh token: %w", model.ErrReplay)
	case revoked.Valid:
		return fmt.Errorf("rotate refresh token: %w", model.ErrRevoked)
	case family != next.FamilyID:
		return fmt.Errorf("rotate refresh token: new token's family %q differs from the old token's %q", next.FamilyID, family)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET used_at = $2 WHERE hash = $1`,
		hashArg(oldHash), time.Now().UnixMicro()); err != nil {
		return fmt.Errorf("rotate refresh token: %w", err)
	}
	if _, err := tx.ExecContext(ctx, insertRefreshSQL, refreshArgs(next)...); err != nil {
		if isUnique(err) {
			return fmt.Errorf("rotate refresh token: %w", model.ErrConflict)
		}
		return fmt.Errorf("rotate refresh token: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("rotate refresh token: %w", err)
	}
	return nil
}

// RevokeFamily is one UPDATE, and unlike PostgreSQL's (see there) it
// needs no second pass: every write of this process goes through the one
// writer connection, so it runs strictly before or after a Rotate
// transaction, never beside it, and a write on the file from another
// process holds SQLite's database-wide write lock, on a snapshot that
// includes every committed row (WAL refuses a writer a stale snapshot). A
// Rotate after it finds the old token revoked; one before it committed its
// new token, which the UPDATE sees.
func (r refreshTokens) RevokeFamily(ctx context.Context, familyID string) error {
	_, err := r.s.w.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL`,
		familyID, time.Now().UnixMicro())
	if err != nil {
		return fmt.Errorf("revoke refresh family: %w", err)
	}
	return nil
}

// RevokeSession is one UPDATE, safe against concurrent rotation for the
// reason RevokeFamily is. scopes is a JSON array, searched with json_each.
func (r refreshTokens) RevokeSession(ctx context.Context, sessionID string) (int, error) {
	if sessionID == "" {
		return 0, nil // tokens without a session must not match
	}
	rows, err := r.s.w.QueryContext(ctx, `UPDATE refresh_tokens SET revoked_at = $2
		WHERE revoked_at IS NULL AND family_id IN (
			SELECT family_id FROM refresh_tokens WHERE session_id = $1
			GROUP BY family_id
			HAVING NOT max(EXISTS (SELECT 1 FROM json_each(scopes) WHERE value = $3)))
		RETURNING family_id`, sessionID, time.Now().UnixMicro(), model.ScopeOfflineAccess)
	if err != nil {
		return 0, fmt.Errorf("revoke refresh tokens of session: %w", err)
	}
	defer rows.Close()
	families := map[string]bool{}
	for rows.Next() {
		var f string
		if err := rows.Scan(&f); err != nil {
			return 0, fmt.Errorf("revoke refresh tokens of session: %w", err)
		}
		families[f] = true
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("revoke refresh tokens of session: %w", err)
	}
	return len(families), nil
}

func scanRefresh(sc scanner) (model.RefreshToken, error) {
	var t model.RefreshToken
	var hash []byte
	var scopes, aud, amr string
	var authTime, iat, exp, used, rev sql.NullInt64
	if err := sc.Scan(&hash, &t.FamilyID, &t.ClientID, &t.Subject, &scopes, &aud, &t.SessionID, &authTime, &t.ACR, &amr,
		&t.Profile, &iat, &exp, &used, &rev); err != nil {
		return t, err
	}
	var d decoder
	t.Hash, t.Scopes, t.Audience, t.AMR = d.hash(hash), d.list(scopes), d.list(aud), d.list(amr)
	t.AuthTime, t.IssuedAt, t.ExpiresAt = fromMicros(authTime), fromMicros(iat), fromMicros(exp)
	t.UsedAt, t.RevokedAt = fromMicros(used), fromMicros(rev)
	return t, d.err
}

// ---- authorization codes ----

type authCodes struct{ s *Store }

const codeCols = `hash, client_id, redirect_uri, scopes, audience, subject, session_id, nonce, code_challenge,
	code_challenge_method, auth_time, acr, amr, profile, access_token_jti, refresh_family_id, issued_at, expires_at, used_at`

func (a authCodes) Create(ctx context.Context, c model.AuthCode) error {
	if err := c.Validate(); err != nil {
		return err
	}
	_, err := a.s.w.ExecContext(ctx, `INSERT INTO auth_codes (`+codeCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
		hashArg(c.Hash), c.ClientID, c.RedirectURI, list(c.Scopes), list(c.Audience), c.Subject, c.SessionID, c.Nonce,
		c.CodeChallenge, c.CodeChallengeMethod, micros(c.AuthTime), c.ACR, list(c.AMR), c.Profile, c.AccessTokenJTI,
		c.RefreshFamilyID, micros(c.IssuedAt), micros(c.ExpiresAt), micros(c.UsedAt))
	if isUnique(err) {
		return fmt.Errorf("create auth code: %w", model.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create auth code: %w", err)
	}
	return nil
}

// readCodeCols are codeCols plus what only the store writes.
const readCodeCols = codeCols + `, failed_attempts`

func (a authCodes) Get(ctx context.Context, hash model.Hash) (model.AuthCode, error) {
	c, err := scanCode(a.s.r.QueryRowContext(ctx, `SELECT `+readCodeCols+` FROM auth_codes WHERE hash = $1`, hashArg(hash)))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("auth code: %w", model.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("get auth code: %w", err)
	}
	return c, nil
}

func (a authCodes) Fail(ctx context.Context, hash model.Hash) error {
	if _, err := a.s.w.ExecContext(ctx, `UPDATE auth_codes SET failed_attempts = failed_attempts + 1
		WHERE hash = $1 AND used_at IS NULL`, hashArg(hash)); err != nil {
		return fmt.Errorf("count failed code exchange: %w", err)
	}
	return nil
}

// Consume marks the code used in one statement on the single writer, so
// of concurrent consumers exactly one sees the row change.
func (a authCodes) Consume(ctx context.Context, hash model.Hash) (model.AuthCode, error) {
	c, err := scanCode(a.s.w.QueryRowContext(ctx, `UPDATE auth_codes SET used_at = $2
		WHERE hash = $1 AND used_at IS NULL AND failed_attempts < $3 RETURNING `+readCodeCols,
		hashArg(hash), time.Now().UnixMicro(), model.MaxCodeFailures))
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("consume auth code: %w", err)
	}
	c, err = scanCode(a.s.w.QueryRowContext(ctx, `SELECT `+readCodeCols+` FROM auth_codes WHERE hash = $1`, hashArg(hash)))
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

func scanCode(sc scanner) (model.AuthCode, error) {
	var c model.AuthCode
	var hash []byte
	var scopes, aud, amr string
	var authTime, iat, exp, used sql.NullInt64
	if err := sc.Scan(&hash, &c.ClientID, &c.RedirectURI, &scopes, &aud, &c.Subject, &c.SessionID, &c.Nonce,
		&c.CodeChallenge, &c.CodeChallengeMethod, &authTime, &c.ACR, &amr, &c.Profile, &c.AccessTokenJTI,
		&c.RefreshFamilyID, &iat, &exp, &used, &c.FailedAttempts); err != nil {
		return c, err
	}
	var d decoder
	c.Hash, c.Scopes, c.Audience, c.AMR = d.hash(hash), d.list(scopes), d.list(aud), d.list(amr)
	c.AuthTime, c.IssuedAt, c.ExpiresAt, c.UsedAt = fromMicros(authTime), fromMicros(iat), fromMicros(exp), fromMicros(used)
	return c, d.err
}

// ---- sessions ----

type sessions struct{ s *Store }

const sessionCols = `hash, id, user_id, zone, auth_time, acr, amr, idle_timeout_us, created_at, last_seen_at, expires_at`

func (ss sessions) Create(ctx context.Context, s model.Session) error {
	if err := s.Validate(); err != nil {
		return err
	}
	idleUS := s.IdleTimeout.Microseconds()
	var idleExp sql.NullInt64
	if idleUS > 0 {
		idleExp = micros(s.LastSeenAt.Add(s.IdleTimeout))
	}
	_, err := ss.s.w.ExecContext(ctx, `INSERT INTO sessions (`+sessionCols+`, idle_expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		hashArg(s.Hash), s.ID, s.UserID, s.Zone, micros(s.AuthTime), s.ACR, list(s.AMR), idleUS,
		micros(s.CreatedAt), micros(s.LastSeenAt), micros(s.ExpiresAt), idleExp)
	if isUnique(err) {
		return fmt.Errorf("create session: %w", model.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

func (ss sessions) Get(ctx context.Context, hash model.Hash) (model.Session, error) {
	var s model.Session
	var h []byte
	var amr string
	var idleUS int64
	var authTime, created, seen, exp sql.NullInt64
	err := ss.s.r.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE hash = $1`, hashArg(hash)).
		Scan(&h, &s.ID, &s.UserID, &s.Zone, &authTime, &s.ACR, &amr, &idleUS, &created, &seen, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return s, fmt.Errorf("session: %w", model.ErrNotFound)
	}
	if err != nil {
		return s, fmt.Errorf("get session: %w", err)
	}
	var d decoder
	s.Hash, s.AMR = d.hash(h), d.list(amr)
	s.IdleTimeout = time.Duration(idleUS) * time.Microsecond
	s.AuthTime, s.CreatedAt, s.LastSeenAt, s.ExpiresAt = fromMicros(authTime), fromMicros(created), fromMicros(seen), fromMicros(exp)
	return s, d.err
}

func (ss sessions) Touch(ctx context.Context, hash model.Hash, now time.Time) error {
	t := now.UnixMicro()
	res, err := ss.s.w.ExecContext(ctx, `UPDATE sessions SET last_seen_at = $2,
		idle_expires_at = CASE WHEN idle_timeout_us > 0 THEN $2 + idle_timeout_us END
		WHERE hash = $1`, hashArg(hash), t)
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("session: %w", model.ErrNotFound)
	}
	return nil
}

func (ss sessions) Exists(ctx context.Context, id string) (bool, error) {
	var ok bool
	err := ss.s.r.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1)`, id).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("find session: %w", err)
	}
	return ok, nil
}

func (ss sessions) Delete(ctx context.Context, hash model.Hash) error {
	if _, err := ss.s.w.ExecContext(ctx, `DELETE FROM sessions WHERE hash = $1`, hashArg(hash)); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// ---- users ----

type users struct{ s *Store }

const userCols = `id, zone, username, password_hash, claims, status, created_at, updated_at`

func (u users) Create(ctx context.Context, usr model.User) error {
	if err := usr.Validate(); err != nil {
		return err
	}
	claims, err := object(usr.Claims)
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	_, err = u.s.w.ExecContext(ctx, `INSERT INTO users (`+userCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		usr.ID, usr.Zone, usr.Username, usr.PasswordHash, claims, usr.Status, micros(usr.CreatedAt), micros(usr.UpdatedAt))
	if isUnique(err) {
		return fmt.Errorf("create user: %w", model.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

func (u users) Get(ctx context.Context, id string) (model.User, error) {
	return u.get(ctx, u.s.r, `SELECT `+userCols+` FROM users WHERE id = $1`, id)
}

func (u users) GetByUsername(ctx context.Context, zone, username string) (model.User, error) {
	return u.get(ctx, u.s.r, `SELECT `+userCols+` FROM users WHERE zone = $1 AND username = $2`, zone, username)
}

// querier is *sql.DB or *sql.Tx.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (users) get(ctx context.Context, q querier, query string, args ...any) (model.User, error) {
	var usr model.User
	var claims string
	var created, updated sql.NullInt64
	err := q.QueryRowContext(ctx, query, args...).
		Scan(&usr.ID, &usr.Zone, &usr.Username, &usr.PasswordHash, &claims, &usr.Status, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return usr, fmt.Errorf("user: %w", model.ErrNotFound)
	}
	if err != nil {
		return usr, fmt.Errorf("get user: %w", err)
	}
	var d decoder
	usr.Claims = d.object(claims)
	usr.CreatedAt, usr.UpdatedAt = fromMicros(created), fromMicros(updated)
	return usr, d.err
}

func (u users) Update(ctx context.Context, id string, fn func(old model.User) (model.User, error)) error {
	tx, err := u.s.w.BeginTx(ctx, nil) // IMMEDIATE: concurrent updates serialise here
	if err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	defer tx.Rollback()
	old, err := u.get(ctx, tx, `SELECT `+userCols+` FROM users WHERE id = $1`, id)
	if err != nil {
		return err
	}
	nu, err := fn(old)
	if err != nil {
		return err
	}
	nu.ID, nu.CreatedAt, nu.UpdatedAt = old.ID, old.CreatedAt, time.Now()
	if err := nu.Validate(); err != nil {
		return err
	}
	claims, err := object(nu.Claims)
	if err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE users SET zone = $2, username = $3, password_hash = $4, claims = $5,
		status = $6, updated_at = $7 WHERE id = $1`,
		id, nu.Zone, nu.Username, nu.PasswordHash, claims, nu.Status, micros(nu.UpdatedAt))
	if isUnique(err) {
		return fmt.Errorf("update user: %w", model.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	return nil
}

// ---- audit ----

type audit struct{ s *Store }

func (a audit) Append(ctx context.Context, e model.AuditEvent) error {
	if e.Type == "" || e.Time.IsZero() {
		return errors.New("audit event: type and time are required")
	}
	details, err := object(e.Details)
	if err != nil {
		return fmt.Errorf("append audit event: %w", err)
	}
	if _, err := a.s.w.ExecContext(ctx, `INSERT INTO audit_events (time, type, zone, subject, client_id, ip, details)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		e.Time.UnixMicro(), e.Type, e.Zone, e.Subject, e.ClientID, e.IP, details); err != nil {
		return fmt.Errorf("append audit event: %w", err)
	}
	return nil
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
	if !q.Since.IsZero() {
		add("time >= $%d", q.Since.UnixMicro())
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	query := `SELECT id, time, type, zone, subject, client_id, ip, details FROM audit_events`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += fmt.Sprintf(" ORDER BY time, id LIMIT %d", limit)
	rows, err := a.s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	defer rows.Close()
	var out []model.AuditEvent
	for rows.Next() {
		var e model.AuditEvent
		var t int64
		var details string
		if err := rows.Scan(&e.ID, &t, &e.Type, &e.Zone, &e.Subject, &e.ClientID, &e.IP, &details); err != nil {
			return nil, fmt.Errorf("list audit events: %w", err)
		}
		var d decoder
		e.Time, e.Details = time.UnixMicro(t).UTC(), d.object(details)
		if d.err != nil {
			return nil, fmt.Errorf("list audit events: %w", d.err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	return out, nil
}

// ---- nodes ----

type nodes struct{ s *Store }

const nodeCols = `id, role, zone, binary_version, config_version, config_hash, started_at, heartbeat_at, expires_at, details`

func (n nodes) Heartbeat(ctx context.Context, ns model.NodeStatus) error {
	if err := ns.Validate(); err != nil {
		return err
	}
	details, err := object(ns.Details)
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	_, err = n.s.w.ExecContext(ctx, `INSERT INTO nodes (`+nodeCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (id) DO UPDATE SET role = excluded.role, zone = excluded.zone,
			binary_version = excluded.binary_version, config_version = excluded.config_version,
			config_hash = excluded.config_hash, started_at = excluded.started_at,
			heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at, details = excluded.details`,
		ns.ID, ns.Role, ns.Zone, ns.BinaryVersion, ns.ConfigVersion, ns.ConfigHash, micros(ns.StartedAt),
		micros(ns.HeartbeatAt), micros(ns.ExpiresAt), details)
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	return nil
}

func (n nodes) List(ctx context.Context) ([]model.NodeStatus, error) {
	rows, err := n.s.r.QueryContext(ctx, `SELECT `+nodeCols+` FROM nodes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []model.NodeStatus
	for rows.Next() {
		var ns model.NodeStatus
		var started, beat, exp sql.NullInt64
		var details string
		if err := rows.Scan(&ns.ID, &ns.Role, &ns.Zone, &ns.BinaryVersion, &ns.ConfigVersion, &ns.ConfigHash,
			&started, &beat, &exp, &details); err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		var d decoder
		ns.StartedAt, ns.HeartbeatAt, ns.ExpiresAt = fromMicros(started), fromMicros(beat), fromMicros(exp)
		ns.Details = d.object(details)
		if d.err != nil {
			return nil, fmt.Errorf("list nodes: %w", d.err)
		}
		out = append(out, ns)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return out, nil
}
