// Package postgres is the shared storage backend (pgx/v5 pool): runtime
// nodes that share one PostgreSQL database share tokens, sessions and users.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/storage/internal/batch"
	"github.com/keygate/keygate/internal/storage/model"
)

// DefaultMaxConns bounds the pool when the data source does not.
const DefaultMaxConns = 10

// Store is a model.Store on a PostgreSQL pool.
type Store struct {
	pool   *pgxpool.Pool
	target string // "postgres", for errors: never the URL, host, port or user
	// tokens group-commits opaque access tokens: one WAL flush per batch.
	tokens *batch.Batcher[model.AccessToken]
}

var _ model.Store = (*Store)(nil)

// Open parses rawURL, opens a pool of at most maxConns (default
// DefaultMaxConns) and pings it. Errors never contain the URL: pgx's
// messages can, so they are rewritten (see redact).
func Open(ctx context.Context, rawURL string, maxConns int) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, redact("postgres: invalid data source url", parseDetail(err), secretsOf(rawURL)...)
	}
	if maxConns > 0 {
		cfg.MaxConns = int32(maxConns)
	} else {
		cfg.MaxConns = DefaultMaxConns
	}
	s, err := New(ctx, cfg)
	if err != nil {
		return nil, redact("", err, secretsOf(rawURL)...)
	}
	return s, nil
}

// New opens a pool from a parsed config (tests set RuntimeParams such as
// search_path through it) and pings it.
func New(ctx context.Context, cfg *pgxpool.Config) (*Store, error) {
	const target = "postgres"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, redact(target, safe("connect", err), cfg.ConnConfig.Password)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, redact(target, safe("connect", err), cfg.ConnConfig.Password)
	}
	s := &Store{pool: pool, target: target}
	s.tokens = batch.New(tokenWriters, tokenBatch, s.insertAccessTokens)
	return s, nil
}

// redactedError carries a message scrubbed of secrets; errors.Is still
// sees the original chain (context.DeadlineExceeded, ...), errors.As does
// not, since the original may print the URL.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string        { return e.msg }
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }

// redact builds "prefix: err" with every occurrence of each non-empty
// secret (the URL, the password) replaced.
func redact(prefix string, err error, secrets ...string) error {
	msg := err.Error()
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "<redacted>")
		}
	}
	if prefix != "" {
		msg = prefix + ": " + msg
	}
	return &redactedError{msg: msg, err: err}
}

// parseDetail keeps the cause of a parse error (bad port, unknown
// sslmode) without pgconn.ParseConfigError's own text, which quotes the
// connection string with only best-effort password redaction.
func parseDetail(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		if inner := errors.Unwrap(pe); inner != nil {
			return inner
		}
	}
	return errors.New("not a valid postgres:// URL or key=value connection string")
}

// secretsOf returns what must not appear in an error about raw: raw
// itself, and its userinfo and password in either URL or key=value form.
func secretsOf(raw string) []string {
	out := []string{raw}
	if _, rest, ok := strings.Cut(raw, "://"); ok {
		if host, _, _ := strings.Cut(rest, "/"); strings.Contains(host, "@") {
			userinfo := host[:strings.LastIndex(host, "@")]
			out = append(out, userinfo)
			if _, pw, ok := strings.Cut(userinfo, ":"); ok {
				out = append(out, pw)
			}
		}
	}
	for _, f := range strings.Fields(raw) {
		if pw, ok := strings.CutPrefix(f, "password="); ok {
			out = append(out, strings.Trim(pw, "'"))
		}
	}
	return out
}

// Close stops the token writers and closes the pool. Idempotent.
func (s *Store) Close() error {
	s.tokens.Close()
	s.pool.Close()
	return nil
}

// Ping acquires a connection and round-trips.
func (s *Store) Ping(ctx context.Context) error {
	var readOnly string
	if err := s.pool.QueryRow(ctx, `SELECT current_setting('transaction_read_only')`).Scan(&readOnly); err != nil {
		return safe(s.target, err)
	}
	if readOnly == "on" {
		return fmt.Errorf("%s: %w", s.target, model.ErrReadOnly)
	}
	return nil
}

// Pool exposes the pool to tests and tools (e.g. to inspect the schema).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// lockSQL serialises migrations per schema: nodes migrating one database
// queue here; tests in separate schemas do not.
const lockSQL = `SELECT pg_advisory_xact_lock(hashtext('keygate_schema_migrations:' || current_schema()))`

// Migrate applies each missing migration in its own transaction, under a
// transaction-level advisory lock, re-checking the record under the lock.
func (s *Store) Migrate(ctx context.Context) error {
	for _, m := range migrations {
		if err := s.apply(ctx, m); err != nil {
			return fmt.Errorf("%s: migration %d (%s): %w", s.target, m.Version, m.Name, err)
		}
	}
	return nil
}

func (s *Store) apply(ctx context.Context, m model.Migration) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lockSQL); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS keygate_schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL)`); err != nil {
			return err
		}
		var done bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM keygate_schema_migrations WHERE version = $1)`,
			m.Version).Scan(&done); err != nil {
			return err
		}
		if done {
			return nil
		}
		if _, err := tx.Exec(ctx, m.SQL); err != nil { // no arguments: simple protocol, several statements
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO keygate_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
			m.Version, m.Name, time.Now())
		return err
	})
}

// SchemaVersion is the newest applied migration, 0 on an empty schema.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.pool.QueryRow(ctx, `SELECT CASE WHEN to_regclass('keygate_schema_migrations') IS NULL THEN 0
		ELSE (SELECT COALESCE(MAX(version), 0) FROM keygate_schema_migrations) END`).Scan(&v)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table: dropped between the two checks
			return 0, nil
		}
		return 0, fmt.Errorf("%s: schema version: %w", s.target, err)
	}
	return v, nil
}

// AppliedMigrations lists the recorded migrations, oldest first.
func (s *Store) AppliedMigrations(ctx context.Context) ([]model.AppliedMigration, error) {
	rows, err := s.pool.Query(ctx, `SELECT version, name, applied_at FROM keygate_schema_migrations ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("%s: applied migrations: %w", s.target, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (model.AppliedMigration, error) {
		var m model.AppliedMigration
		err := r.Scan(&m.Version, &m.Name, &m.AppliedAt)
		m.AppliedAt = m.AppliedAt.UTC()
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: applied migrations: %w", s.target, err)
	}
	return out, nil
}

// gcBatch bounds one DELETE so GC never holds many row locks at once.
const gcBatch = 5000

// GC deletes expired rows in batches. The condition is repeated outside
// the subquery so that a row updated meanwhile (a touched session) is
// re-checked before it is deleted.
func (s *Store) GC(ctx context.Context, now time.Time) (model.GCStats, error) {
	var st model.GCStats
	jobs := []struct {
		n          *int64
		table, key string
		cond       string
	}{
		{&st.AccessTokens, "access_tokens", "hash", "expires_at <= $1"},
		{&st.Revocations, "revoked_tokens", "jti", "expires_at <= $1"},
		{&st.Assertions, "used_assertions", "(client_id, jti)", "expires_at <= $1"},
		{&st.RefreshTokens, "refresh_tokens", "hash", "expires_at <= $1"},
		{&st.AuthCodes, "auth_codes", "hash", "expires_at <= $1"},
		{&st.Sessions, "sessions", "hash", "(expires_at <= $1 OR idle_expires_at <= $1)"},
		{&st.Nodes, "nodes", "id", "expires_at <= $1"},
	}
	for _, j := range jobs {
		cols := strings.Trim(j.key, "()")
		q := fmt.Sprintf(`DELETE FROM %s WHERE %s IN (SELECT %s FROM %s WHERE %s LIMIT %d) AND %s`,
			j.table, j.key, cols, j.table, j.cond, gcBatch, j.cond)
		for {
			tag, err := s.pool.Exec(ctx, q, now)
			if err != nil {
				return st, fmt.Errorf("%s: gc %s: %w", s.target, j.table, err)
			}
			*j.n += tag.RowsAffected()
			if tag.RowsAffected() < gcBatch {
				break
			}
		}
	}
	return st, nil
}

func (s *Store) AccessTokens() model.AccessTokens   { return accessTokens{s} }
func (s *Store) Revocations() model.Revocations     { return revocations{s} }
func (s *Store) Assertions() model.Assertions       { return assertions{s} }
func (s *Store) RefreshTokens() model.RefreshTokens { return refreshTokens{s} }
func (s *Store) AuthCodes() model.AuthCodes         { return authCodes{s} }
func (s *Store) Sessions() model.Sessions           { return sessions{s} }
func (s *Store) Users() model.Users                 { return users{s} }
func (s *Store) Audit() model.Audit                 { return audit{s} }
func (s *Store) Nodes() model.Nodes                 { return nodes{s} }

// isUnique reports a unique_violation.
func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}
