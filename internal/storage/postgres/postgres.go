// Package postgres is the shared storage backend (pgx/v5 pool): runtime
// nodes that share one PostgreSQL database share tokens, sessions and users.
// The statements are storage/sqlstore's; this package opens the pool and
// says how PostgreSQL differs (dialect.go).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/storage/sqlstore"
)

// DefaultMaxConns bounds the pool when the data source does not.
const DefaultMaxConns = 10

// Store is a model.Store on a PostgreSQL pool.
type Store struct {
	*sqlstore.Store
	pool *pgxpool.Pool
}

// target names the database in errors: never the URL, host, port or user.
const target = "postgres"

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
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, redact(target, safe("connect", err), cfg.ConnConfig.Password)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, redact(target, safe("connect", err), cfg.ConnConfig.Password)
	}
	return &Store{Store: sqlstore.New(target, conns{&conn{pool}, pool}, dialect), pool: pool}, nil
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
	s.Store.Close()
	s.pool.Close()
	return nil
}

// Ping acquires a connection and round-trips.
func (s *Store) Ping(ctx context.Context) error {
	var readOnly string
	if err := s.pool.QueryRow(ctx, `SELECT current_setting('transaction_read_only')`).Scan(&readOnly); err != nil {
		return safe(target, err)
	}
	if readOnly == "on" {
		return fmt.Errorf("%s: %w", target, model.ErrReadOnly)
	}
	return nil
}

// Pool exposes the pool to tests and tools (e.g. to inspect the schema).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }
