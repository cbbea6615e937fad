package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/storage/model"
)

// ---- codec: zero time ↔ NULL, nil list ↔ '{}', nil map ↔ '{}' ----

func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

func fromTS(p *time.Time) time.Time {
	if p == nil {
		return time.Time{}
	}
	return p.UTC()
}

func arr(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

func fromArr(v []string) []string {
	if len(v) == 0 {
		return nil
	}
	return v
}

func obj(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func fromObj(m map[string]any) map[string]any {
	if len(m) == 0 {
		return nil
	}
	return m
}

func toHash(b []byte) (model.Hash, error) {
	var h model.Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("stored hash has %d bytes", len(b))
	}
	copy(h[:], b)
	return h, nil
}

// ---- access tokens ----

type accessTokens struct{ s *Store }

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

// Token group commit: a couple of batches in flight overlap one's WAL
// flush with the next one's round trip.
const (
	tokenWriters = 2
	tokenBatch   = 128
)

const insertAccessTokenSQL = `INSERT INTO access_tokens
	(hash, jti, client_id, subject, scopes, audience, profile, issued_at, expires_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`

// insertAccessTokens sends the batch as one pipeline, which PostgreSQL runs
// as one implicit transaction: one round trip, one commit. A duplicate
// hash inserts nothing (ON CONFLICT DO NOTHING), so it fails only its own
// item; any other error aborts the transaction and fails every item.
func (s *Store) insertAccessTokens(ctx context.Context, toks []model.AccessToken) []error {
	errs := make([]error, len(toks))
	b := &pgx.Batch{}
	for _, t := range toks {
		b.Queue(insertAccessTokenSQL, t.Hash[:], t.JTI, t.ClientID, t.Subject, arr(t.Scopes), arr(t.Audience),
			t.Profile, ts(t.IssuedAt), ts(t.ExpiresAt))
	}
	br := s.pool.SendBatch(ctx, b)
	var failed error
	for i := range toks {
		tag, err := br.Exec()
		switch {
		case err != nil:
			failed = err
		case tag.RowsAffected() == 0:
			errs[i] = model.ErrConflict
		}
		if failed != nil {
			break
		}
	}
	if err := br.Close(); err != nil && failed == nil {
		failed = err
	}
	if failed != nil {
		for i := range errs {
			errs[i] = failed
		}
	}
	return errs
}

func (a accessTokens) Get(ctx context.Context, hash model.Hash) (model.AccessToken, error) {
	var t model.AccessToken
	var h []byte
	var iat, exp, rev *time.Time
	// The revocation is kept only in revoked_tokens; join it.
	err := a.s.pool.QueryRow(ctx, `SELECT a.hash, a.jti, a.client_id, a.subject, a.scopes, a.audience, a.profile,
		a.issued_at, a.expires_at, r.revoked_at
		FROM access_tokens a LEFT JOIN revoked_tokens r ON r.jti = a.jti WHERE a.hash = $1`, hash[:]).
		Scan(&h, &t.JTI, &t.ClientID, &t.Subject, &t.Scopes, &t.Audience, &t.Profile, &iat, &exp, &rev)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("access token: %w", model.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("get access token: %w", err)
	}
	t.Hash, err = toHash(h)
	t.Scopes, t.Audience = fromArr(t.Scopes), fromArr(t.Audience)
	t.IssuedAt, t.ExpiresAt, t.RevokedAt = fromTS(iat), fromTS(exp), fromTS(rev)
	return t, err
}

// ---- revocations ----

type revocations struct{ s *Store }

func (r revocations) Revoke(ctx context.Context, jti string, expiresAt time.Time) error {
	if jti == "" || expiresAt.IsZero() {
		return errors.New("revoke: jti and expiry are required")
	}
	_, err := r.s.pool.Exec(ctx, `INSERT INTO revoked_tokens (jti, revoked_at, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (jti) DO UPDATE SET expires_at = GREATEST(revoked_tokens.expires_at, excluded.expires_at)`,
		jti, time.Now(), expiresAt)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	return nil
}

func (r revocations) IsRevoked(ctx context.Context, ids ...string) (bool, error) {
	if len(ids) == 0 {
		return false, nil
	}
	var revoked bool
	if err := r.s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ANY ($1))`, ids).
		Scan(&revoked); err != nil {
		return false, fmt.Errorf("is revoked: %w", err)
	}
	return revoked, nil
}

// ---- assertions ----

type assertions struct{ s *Store }

func (a assertions) Use(ctx context.Context, clientID, jti string, expiresAt time.Time) error {
	if clientID == "" || jti == "" || expiresAt.IsZero() {
		return errors.New("use assertion: client id, jti and expiry are required")
	}
	tag, err := a.s.pool.Exec(ctx, `INSERT INTO used_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, clientID, jti, expiresAt)
	if err != nil {
		return fmt.Errorf("use assertion: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("assertion jti: %w", model.ErrReplay)
	}
	return nil
}

// ---- refresh tokens ----

type refreshTokens struct{ s *Store }

const refreshCols = `hash, family_id, client_id, subject, scopes, audience, session_id, auth_time, acr, amr,
	profile, issued_at, expires_at, used_at, revoked_at`

func refreshArgs(t model.RefreshToken) []any {
	return []any{t.Hash[:], t.FamilyID, t.ClientID, t.Subject, arr(t.Scopes), arr(t.Audience), t.SessionID,
		ts(t.AuthTime), t.ACR, arr(t.AMR), t.Profile, ts(t.IssuedAt), ts(t.ExpiresAt), ts(t.UsedAt), ts(t.RevokedAt)}
}

const refreshValues = `$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15`

// refreshTyped is refreshValues for INSERT ... SELECT, where PostgreSQL
// does not infer parameter types from the target columns.
const refreshTyped = `$1::bytea, $2::text, $3::text, $4::text, $5::text[], $6::text[], $7::text, $8::timestamptz,
	$9::text, $10::text[], $11::text, $12::timestamptz, $13::timestamptz, $14::timestamptz, $15::timestamptz`

func (r refreshTokens) Create(ctx context.Context, t model.RefreshToken) error {
	if err := t.Validate(); err != nil {
		return err
	}
	_, err := r.s.pool.Exec(ctx, `INSERT INTO refresh_tokens (`+refreshCols+`) VALUES (`+refreshValues+`)`,
		refreshArgs(t)...)
	if isUnique(err) {
		return fmt.Errorf("create refresh token: %w", model.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create refresh token: %w", err)
	}
	return nil
}

func (r refreshTokens) Get(ctx context.Context, hash model.Hash) (model.RefreshToken, error) {
	var t model.RefreshToken
	var h []byte
	var authTime, iat, exp, used, rev *time.Time
	err := r.s.pool.QueryRow(ctx, `SELECT `+refreshCols+` FROM refresh_tokens WHERE hash = $1`, hash[:]).
		Scan(&h, &t.FamilyID, &t.ClientID, &t.Subject, &t.Scopes, &t.Audience, &t.SessionID, &authTime, &t.ACR, &t.AMR,
			&t.Profile, &iat, &exp, &used, &rev)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("refresh token: %w", model.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("get refresh token: %w", err)
	}
	t.Hash, err = toHash(h)
	t.Scopes, t.Audience, t.AMR = fromArr(t.Scopes), fromArr(t.Audience), fromArr(t.AMR)
	t.AuthTime, t.IssuedAt, t.ExpiresAt = fromTS(authTime), fromTS(iat), fromTS(exp)
	t.UsedAt, t.RevokedAt = fromTS(used), fromTS(rev)
	return t, err
}

// Rotate marks the old token and inserts the new one in one statement: the
// UPDATE's row lock makes concurrent rotations queue, and each later one
// re-checks used_at after the first commits, finds it set and inserts
// nothing.
func (r refreshTokens) Rotate(ctx context.Context, oldHash model.Hash, next model.RefreshToken) error {
	if err := next.Validate(); err != nil {
		return err
	}
	args := append(refreshArgs(next), oldHash[:], time.Now())
	tag, err := r.s.pool.Exec(ctx, `WITH old AS (
			UPDATE refresh_tokens SET used_at = $17
			WHERE hash = $16 AND used_at IS NULL AND revoked_at IS NULL AND family_id = $2
				AND NOT EXISTS (SELECT 1 FROM refresh_tokens f WHERE f.family_id = $2 AND f.revoked_at IS NOT NULL)
			RETURNING 1)
		INSERT INTO refresh_tokens (`+refreshCols+`) SELECT `+refreshTyped+` FROM old`, args...)
	if isUnique(err) {
		return fmt.Errorf("rotate refresh token: %w", model.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("rotate refresh token: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	// Nothing rotated: say why.
	var family string
	var used, revoked *time.Time
	err = r.s.pool.QueryRow(ctx, `SELECT family_id, used_at, revoked_at FROM refresh_tokens WHERE hash = $1`,
		oldHash[:]).Scan(&family, &used, &revoked)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("rotate refresh token: %w", model.ErrNotFound)
	case err != nil:
		return fmt.Errorf("rotate refresh token: %w", err)
	case used != nil:
		return fmt.Errorf("rotate refresh token: %w", model.ErrReplay)
	case revoked != nil:
		return fmt.Errorf("rotate refresh token: %w", model.ErrRevoked)
	case family != next.FamilyID:
		return fmt.Errorf("rotate refresh token: new token's family %q differs from the old token's %q", next.FamilyID, family)
	}
	// The token itself is unspent and unrevoked: a revocation of its
	// family has reached other tokens and not yet this one.
	return fmt.Errorf("rotate refresh token: %w", model.ErrRevoked)
}

// RevokeFamily repeats its UPDATE until a pass changes no row. One pass is
// not enough under READ COMMITTED: when it meets a row that a concurrent
// Rotate has locked, it waits for that rotation to commit and then revokes
// the row, but the token the rotation inserted is not in the pass's
// snapshot and stays active. The next pass, with a new snapshot, sees it.
// A pass that changes nothing saw every token of the family revoked, and
// a rotation that has not committed by then would have to rotate a
// revoked token, which Rotate refuses (ErrRevoked). Rotate also refuses
// once any token of the family is revoked, so a rotation that starts
// after the first pass commits fails: the loop ends within a few passes
// even against a client rotating in a tight loop; ctx bounds it anyway.
func (r refreshTokens) RevokeFamily(ctx context.Context, familyID string) error {
	now := time.Now()
	for {
		tag, err := r.s.pool.Exec(ctx, `UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL`,
			familyID, now)
		if err != nil {
			return fmt.Errorf("revoke refresh family: %w", err)
		}
		if tag.RowsAffected() == 0 {
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
	now := time.Now()
	families := map[string]bool{}
	for {
		rows, err := r.s.pool.Query(ctx, `WITH revoked AS (
				UPDATE refresh_tokens SET revoked_at = $2
				WHERE revoked_at IS NULL AND family_id IN (
					SELECT family_id FROM refresh_tokens WHERE session_id = $1
					GROUP BY family_id HAVING NOT bool_or($3 = ANY (scopes)))
				RETURNING family_id)
			SELECT DISTINCT family_id FROM revoked`, sessionID, now, model.ScopeOfflineAccess)
		if err != nil {
			return len(families), fmt.Errorf("revoke refresh tokens of session: %w", err)
		}
		fams, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return len(families), fmt.Errorf("revoke refresh tokens of session: %w", err)
		}
		if len(fams) == 0 {
			return len(families), nil
		}
		for _, f := range fams {
			families[f] = true
		}
	}
}

// ---- authorization codes ----

type authCodes struct{ s *Store }

const codeCols = `hash, client_id, redirect_uri, scopes, audience, subject, session_id, nonce, code_challenge,
	code_challenge_method, auth_time, acr, amr, profile, access_token_jti, refresh_family_id, issued_at, expires_at, used_at`

func (a authCodes) Create(ctx context.Context, c model.AuthCode) error {
	if err := c.Validate(); err != nil {
		return err
	}
	_, err := a.s.pool.Exec(ctx, `INSERT INTO auth_codes (`+codeCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
		c.Hash[:], c.ClientID, c.RedirectURI, arr(c.Scopes), arr(c.Audience), c.Subject, c.SessionID, c.Nonce,
		c.CodeChallenge, c.CodeChallengeMethod, ts(c.AuthTime), c.ACR, arr(c.AMR), c.Profile, c.AccessTokenJTI,
		c.RefreshFamilyID, ts(c.IssuedAt), ts(c.ExpiresAt), ts(c.UsedAt))
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
	c, err := scanCode(a.s.pool.QueryRow(ctx, `SELECT `+readCodeCols+` FROM auth_codes WHERE hash = $1`, hash[:]))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("auth code: %w", model.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("get auth code: %w", err)
	}
	return c, nil
}

func (a authCodes) Fail(ctx context.Context, hash model.Hash) error {
	if _, err := a.s.pool.Exec(ctx, `UPDATE auth_codes SET failed_attempts = failed_attempts + 1
		WHERE hash = $1 AND used_at IS NULL`, hash[:]); err != nil {
		return fmt.Errorf("count failed code exchange: %w", err)
	}
	return nil
}

// Consume: the UPDATE's row lock makes concurrent consumers (and Fail)
// queue; each later one re-checks used_at and failed_attempts after the
// first commits, so exactly one consumer matches.
func (a authCodes) Consume(ctx context.Context, hash model.Hash) (model.AuthCode, error) {
	c, err := scanCode(a.s.pool.QueryRow(ctx, `UPDATE auth_codes SET used_at = $2
		WHERE hash = $1 AND used_at IS NULL AND failed_attempts < $3 RETURNING `+readCodeCols,
		hash[:], time.Now(), model.MaxCodeFailures))
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("consume auth code: %w", err)
	}
	c, err = scanCode(a.s.pool.QueryRow(ctx, `SELECT `+readCodeCols+` FROM auth_codes WHERE hash = $1`, hash[:]))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return c, fmt.Errorf("auth code: %w", model.ErrNotFound)
	case err != nil:
		return c, fmt.Errorf("consume auth code: %w", err)
	case c.UsedAt.IsZero():
		return c, fmt.Errorf("auth code failed %d times: %w", c.FailedAttempts, model.ErrRevoked)
	}
	return c, fmt.Errorf("auth code: %w", model.ErrReplay)
}

func scanCode(row pgx.Row) (model.AuthCode, error) {
	var c model.AuthCode
	var h []byte
	var authTime, iat, exp, used *time.Time
	if err := row.Scan(&h, &c.ClientID, &c.RedirectURI, &c.Scopes, &c.Audience, &c.Subject, &c.SessionID, &c.Nonce,
		&c.CodeChallenge, &c.CodeChallengeMethod, &authTime, &c.ACR, &c.AMR, &c.Profile, &c.AccessTokenJTI,
		&c.RefreshFamilyID, &iat, &exp, &used, &c.FailedAttempts); err != nil {
		return c, err
	}
	var err error
	c.Hash, err = toHash(h)
	c.Scopes, c.Audience, c.AMR = fromArr(c.Scopes), fromArr(c.Audience), fromArr(c.AMR)
	c.AuthTime, c.IssuedAt, c.ExpiresAt, c.UsedAt = fromTS(authTime), fromTS(iat), fromTS(exp), fromTS(used)
	return c, err
}

// ---- sessions ----

type sessions struct{ s *Store }

const sessionCols = `hash, id, user_id, zone, auth_time, acr, amr, idle_timeout_us, created_at, last_seen_at, expires_at`

func (ss sessions) Create(ctx context.Context, s model.Session) error {
	if err := s.Validate(); err != nil {
		return err
	}
	var idleExp any
	if s.IdleTimeout > 0 {
		idleExp = s.LastSeenAt.Add(s.IdleTimeout)
	}
	_, err := ss.s.pool.Exec(ctx, `INSERT INTO sessions (`+sessionCols+`, idle_expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		s.Hash[:], s.ID, s.UserID, s.Zone, ts(s.AuthTime), s.ACR, arr(s.AMR), s.IdleTimeout.Microseconds(),
		ts(s.CreatedAt), ts(s.LastSeenAt), ts(s.ExpiresAt), idleExp)
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
	var idleUS int64
	var authTime, created, seen, exp *time.Time
	err := ss.s.pool.QueryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE hash = $1`, hash[:]).
		Scan(&h, &s.ID, &s.UserID, &s.Zone, &authTime, &s.ACR, &s.AMR, &idleUS, &created, &seen, &exp)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, fmt.Errorf("session: %w", model.ErrNotFound)
	}
	if err != nil {
		return s, fmt.Errorf("get session: %w", err)
	}
	s.Hash, err = toHash(h)
	s.AMR = fromArr(s.AMR)
	s.IdleTimeout = time.Duration(idleUS) * time.Microsecond
	s.AuthTime, s.CreatedAt, s.LastSeenAt, s.ExpiresAt = fromTS(authTime), fromTS(created), fromTS(seen), fromTS(exp)
	return s, err
}

func (ss sessions) Touch(ctx context.Context, hash model.Hash, now time.Time) error {
	tag, err := ss.s.pool.Exec(ctx, `UPDATE sessions SET last_seen_at = $2::timestamptz,
		idle_expires_at = CASE WHEN idle_timeout_us > 0 THEN $2::timestamptz + idle_timeout_us * interval '1 microsecond' END
		WHERE hash = $1`, hash[:], now)
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("session: %w", model.ErrNotFound)
	}
	return nil
}

func (ss sessions) Exists(ctx context.Context, id string) (bool, error) {
	var ok bool
	err := ss.s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1)`, id).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("find session: %w", err)
	}
	return ok, nil
}

func (ss sessions) Delete(ctx context.Context, hash model.Hash) error {
	if _, err := ss.s.pool.Exec(ctx, `DELETE FROM sessions WHERE hash = $1`, hash[:]); err != nil {
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
	_, err := u.s.pool.Exec(ctx, `INSERT INTO users (`+userCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		usr.ID, usr.Zone, usr.Username, usr.PasswordHash, obj(usr.Claims), usr.Status, ts(usr.CreatedAt), ts(usr.UpdatedAt))
	if isUnique(err) {
		return fmt.Errorf("create user: %w", model.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

func (u users) Get(ctx context.Context, id string) (model.User, error) {
	return scanUser(u.s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
}

func (u users) GetByUsername(ctx context.Context, zone, username string) (model.User, error) {
	return scanUser(u.s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE zone = $1 AND username = $2`, zone, username))
}

func scanUser(row pgx.Row) (model.User, error) {
	var usr model.User
	var created, updated *time.Time
	err := row.Scan(&usr.ID, &usr.Zone, &usr.Username, &usr.PasswordHash, &usr.Claims, &usr.Status, &created, &updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return usr, fmt.Errorf("user: %w", model.ErrNotFound)
	}
	if err != nil {
		return usr, fmt.Errorf("get user: %w", err)
	}
	usr.Claims = fromObj(usr.Claims)
	usr.CreatedAt, usr.UpdatedAt = fromTS(created), fromTS(updated)
	return usr, nil
}

// Update locks the row (SELECT ... FOR UPDATE) for the length of fn.
func (u users) Update(ctx context.Context, id string, fn func(old model.User) (model.User, error)) error {
	tx, err := u.s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	defer tx.Rollback(ctx)
	old, err := scanUser(tx.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1 FOR UPDATE`, id))
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
	_, err = tx.Exec(ctx, `UPDATE users SET zone = $2, username = $3, password_hash = $4, claims = $5,
		status = $6, updated_at = $7 WHERE id = $1`,
		id, nu.Zone, nu.Username, nu.PasswordHash, obj(nu.Claims), nu.Status, nu.UpdatedAt)
	if isUnique(err) {
		return fmt.Errorf("update user: %w", model.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
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
	if _, err := a.s.pool.Exec(ctx, `INSERT INTO audit_events (time, type, zone, subject, client_id, ip, details)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		e.Time, e.Type, e.Zone, e.Subject, e.ClientID, e.IP, obj(e.Details)); err != nil {
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
		add("time >= $%d", q.Since)
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
	rows, err := a.s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (model.AuditEvent, error) {
		var e model.AuditEvent
		err := r.Scan(&e.ID, &e.Time, &e.Type, &e.Zone, &e.Subject, &e.ClientID, &e.IP, &e.Details)
		e.Time, e.Details = e.Time.UTC(), fromObj(e.Details)
		return e, err
	})
	if err != nil {
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
	_, err := n.s.pool.Exec(ctx, `INSERT INTO nodes (`+nodeCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (id) DO UPDATE SET role = excluded.role, zone = excluded.zone,
			binary_version = excluded.binary_version, config_version = excluded.config_version,
			config_hash = excluded.config_hash, started_at = excluded.started_at,
			heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at, details = excluded.details`,
		ns.ID, ns.Role, ns.Zone, ns.BinaryVersion, ns.ConfigVersion, ns.ConfigHash, ts(ns.StartedAt),
		ts(ns.HeartbeatAt), ts(ns.ExpiresAt), obj(ns.Details))
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	return nil
}

func (n nodes) List(ctx context.Context) ([]model.NodeStatus, error) {
	rows, err := n.s.pool.Query(ctx, `SELECT `+nodeCols+` FROM nodes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (model.NodeStatus, error) {
		var ns model.NodeStatus
		var started, beat, exp *time.Time
		err := r.Scan(&ns.ID, &ns.Role, &ns.Zone, &ns.BinaryVersion, &ns.ConfigVersion, &ns.ConfigHash,
			&started, &beat, &exp, &ns.Details)
		ns.StartedAt, ns.HeartbeatAt, ns.ExpiresAt = fromTS(started), fromTS(beat), fromTS(exp)
		ns.Details = fromObj(ns.Details)
		return ns, err
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return out, nil
}
