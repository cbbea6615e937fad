// Package sqlite is the embedded storage backend (modernc.org/sqlite, no
// cgo): a single node runs with nothing else installed.
//
// SQLite admits one writer at a time. Every write goes through one
// connection, so writers queue in Go instead of spinning on SQLITE_BUSY,
// and reads use a pool of query_only connections, which WAL lets run beside
// the writer. Write transactions begin IMMEDIATE (_txlock) so that a
// read-then-write takes the lock up front instead of failing to upgrade;
// busy_timeout covers other processes on the same file (keygate migrate
// beside a running node).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keygate/keygate/internal/storage/internal/batch"
	"github.com/keygate/keygate/internal/storage/model"
)

// Options tune a Store.
type Options struct {
	// Readers bounds the read pool; default max(4, GOMAXPROCS).
	Readers int
}

// Store is a model.Store on one SQLite file.
type Store struct {
	path string
	w    *sql.DB // exactly one connection: all writes
	r    *sql.DB // query_only pool: all reads outside write transactions

	// file is the database file as opened: Ping compares it with what is
	// at path now, since a deleted file goes on taking writes unnoticed.
	file os.FileInfo

	hot atomic.Pointer[hotStmts] // nil until the schema exists
	mu  sync.Mutex               // serialises prepare
	// tokens group-commits opaque access tokens: one commit per batch.
	tokens *batch.Batcher[model.AccessToken]

	closeOnce sync.Once
	closeErr  error
}

var _ model.Store = (*Store)(nil)

// busy_timeout in ms: only cross-process waits reach it (in-process writes
// queue on the single writer connection).
const busyTimeout = 10000

// Open opens (creating if needed) the database at path and its parent
// directories. It does not migrate.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty path")
	}
	if strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite %s: path must be a plain file name (no '?', '#' or file: prefix)", path)
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("sqlite %s: create directory: %w", path, err)
		}
	}
	readers := opts.Readers
	if readers <= 0 {
		readers = max(4, runtime.GOMAXPROCS(0))
	}
	// mmap lets reads touch pages without a syscall each; on this kind of
	// VM syscalls dominate SQLite's profile.
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=mmap_size(%d)", busyTimeout, 256<<20)

	// The writer opens first: it creates the file and switches it to WAL
	// (persistent), which the query_only readers could not do. NORMAL
	// synchronisation in WAL mode is durable against process crashes and
	// loses at most the last commits on power loss, never consistency. Its
	// larger page cache (32 MiB) keeps the token tables' index pages hot.
	w, err := sql.Open("sqlite", path+"?"+common+
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=cache_size(-32768)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &Store{path: path, w: w}
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	if s.file, err = os.Stat(path); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	s.r, err = sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	s.r.SetMaxOpenConns(readers)
	s.r.SetMaxIdleConns(readers)
	s.r.SetConnMaxLifetime(0)
	s.r.SetConnMaxIdleTime(0)
	if err := s.r.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	_ = s.prepare(ctx) // fails harmlessly on a database not yet migrated
	s.tokens = batch.New(1, tokenBatch, s.insertAccessTokens)
	return s, nil
}

// hotStmts are the token hot path's statements, prepared once per
// connection (parsing SQL costs more than running these lookups).
type hotStmts struct {
	insertAccessToken, getAccessToken, isRevoked, useAssertion *sql.Stmt
}

func (h *hotStmts) close() {
	for _, st := range []*sql.Stmt{h.insertAccessToken, h.getAccessToken, h.isRevoked, h.useAssertion} {
		if st != nil {
			st.Close()
		}
	}
}

// stmts returns the hot statements, preparing them on first use after
// the schema exists (another node may have migrated it); nil until then,
// and callers fall back to unprepared queries.
func (s *Store) stmts(ctx context.Context) *hotStmts {
	if h := s.hot.Load(); h != nil {
		return h
	}
	_ = s.prepare(ctx)
	return s.hot.Load()
}

// prepare prepares the hot statements; it fails until the schema exists.
func (s *Store) prepare(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hot.Load() != nil {
		return nil
	}
	var h hotStmts
	var err error
	p := func(db *sql.DB, q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = db.PrepareContext(ctx, q)
		return st
	}
	h.insertAccessToken = p(s.w, insertAccessTokenSQL)
	h.getAccessToken = p(s.r, getAccessTokenSQL)
	h.isRevoked = p(s.r, isRevokedSQL)
	h.useAssertion = p(s.w, useAssertionSQL)
	if err != nil {
		h.close()
		return err
	}
	s.hot.Store(&h)
	return nil
}

// Close releases both pools. Idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.tokens != nil {
			s.tokens.Close()
		}
		if h := s.hot.Load(); h != nil {
			h.close()
		}
		var errs []error
		if s.r != nil {
			errs = append(errs, s.r.Close())
		}
		errs = append(errs, s.w.Close())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Ping checks both pools.
func (s *Store) Ping(ctx context.Context) error {
	if fi, err := os.Stat(s.path); err != nil || !os.SameFile(fi, s.file) {
		return fmt.Errorf("sqlite %s: %w", s.path, model.ErrFileReplaced)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&n); err != nil {
		return fmt.Errorf("sqlite %s: %w", s.path, err)
	}
	// Taking the write lock and letting go shows that writes would go
	// through (a read-only file or mount fails here).
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		if isReadOnly(err) {
			return fmt.Errorf("sqlite %s: %w", s.path, model.ErrReadOnly)
		}
		return fmt.Errorf("sqlite %s: %w", s.path, err)
	}
	return tx.Rollback()
}

func isReadOnly(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_READONLY
}

// Migrate applies the missing migrations, each in its own IMMEDIATE
// transaction that re-checks the record under the write lock.
func (s *Store) Migrate(ctx context.Context) error {
	for _, m := range migrations {
		if err := s.apply(ctx, m); err != nil {
			return fmt.Errorf("sqlite %s: migration %d (%s): %w", s.path, m.Version, m.Name, err)
		}
	}
	if err := s.prepare(ctx); err != nil {
		return fmt.Errorf("sqlite %s: prepare: %w", s.path, err)
	}
	return nil
}

func (s *Store) apply(ctx context.Context, m model.Migration) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS keygate_schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL)`); err != nil {
		return err
	}
	var done bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM keygate_schema_migrations WHERE version = $1)`,
		m.Version).Scan(&done); err != nil {
		return err
	}
	if done {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO keygate_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
		m.Version, m.Name, time.Now().UnixMicro()); err != nil {
		return err
	}
	return tx.Commit()
}

// SchemaVersion is the newest applied migration, 0 on an empty database.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM keygate_schema_migrations`).Scan(&v)
	if err != nil {
		var exists bool
		if err2 := s.r.QueryRowContext(ctx,
			`SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'keygate_schema_migrations')`).
			Scan(&exists); err2 == nil && !exists {
			return 0, nil
		}
		return 0, fmt.Errorf("sqlite %s: schema version: %w", s.path, err)
	}
	return v, nil
}

// AppliedMigrations lists the recorded migrations, oldest first.
func (s *Store) AppliedMigrations(ctx context.Context) ([]model.AppliedMigration, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT version, name, applied_at FROM keygate_schema_migrations ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: applied migrations: %w", s.path, err)
	}
	defer rows.Close()
	var out []model.AppliedMigration
	for rows.Next() {
		var m model.AppliedMigration
		var at int64
		if err := rows.Scan(&m.Version, &m.Name, &at); err != nil {
			return nil, err
		}
		m.AppliedAt = time.UnixMicro(at).UTC()
		out = append(out, m)
	}
	return out, rows.Err()
}

// gcBatch bounds one DELETE so the single writer is never held long.
const gcBatch = 1000

// GC deletes expired rows in batches.
func (s *Store) GC(ctx context.Context, now time.Time) (model.GCStats, error) {
	var st model.GCStats
	t := now.UnixMicro()
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
		{&st.Sessions, "sessions", "hash", "expires_at <= $1 OR idle_expires_at <= $1"},
		{&st.Nodes, "nodes", "id", "expires_at <= $1"},
	}
	for _, j := range jobs {
		cols := strings.Trim(j.key, "()")
		q := fmt.Sprintf(`DELETE FROM %s WHERE %s IN (SELECT %s FROM %s WHERE %s LIMIT %d)`,
			j.table, j.key, cols, j.table, j.cond, gcBatch)
		for {
			res, err := s.w.ExecContext(ctx, q, t)
			if err != nil {
				return st, fmt.Errorf("sqlite %s: gc %s: %w", s.path, j.table, err)
			}
			n, _ := res.RowsAffected()
			*j.n += n
			if n < gcBatch {
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

// isUnique reports a primary-key or unique-constraint violation.
func isUnique(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
	}
	return false
}
