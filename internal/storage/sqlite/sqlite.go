// Package sqlite is the embedded storage backend (modernc.org/sqlite, no
// cgo): a single node runs with nothing else installed. The statements are
// storage/sqlstore's; this package opens the file and says how SQLite
// differs (dialect.go).
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

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/storage/sqlstore"
)

// Options tune a Store.
type Options struct {
	// Readers bounds the read pool; default max(4, GOMAXPROCS).
	Readers int
}

// Store is a model.Store on one SQLite file.
type Store struct {
	*sqlstore.Store
	path string
	// db.w is exactly one connection: all writes. db.r is a pool of
	// query_only connections: all reads outside write transactions.
	db conns

	// file is the database file as opened: Ping compares it with what is
	// at path now, since a deleted file goes on taking writes unnoticed.
	file os.FileInfo

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
	w, err := openPool(ctx, path+"?"+common+
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=cache_size(-32768)&_txlock=immediate", 1)
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	file, err := os.Stat(path)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	r, err := openPool(ctx, path+"?"+common+"&_pragma=query_only(1)", readers)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	s := &Store{path: path, file: file, db: conns{r: newConn(r), w: newConn(w)}}
	s.Store = sqlstore.New("sqlite "+path, s.db, dialect)
	return s, nil
}

// openPool opens a pool of n connections, kept open, and pings it.
func openPool(ctx context.Context, dsn string, n int) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Close releases both pools. Idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.Store.Close() // the token writers write through the writer
		s.closeErr = errors.Join(s.db.r.close(), s.db.w.close())
	})
	return s.closeErr
}

// Ping checks both pools.
func (s *Store) Ping(ctx context.Context) error {
	if fi, err := os.Stat(s.path); err != nil || !os.SameFile(fi, s.file) {
		return fmt.Errorf("sqlite %s: %w", s.path, model.ErrFileReplaced)
	}
	var n int
	if err := s.db.r.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&n); err != nil {
		return fmt.Errorf("sqlite %s: %w", s.path, err)
	}
	// Taking the write lock and letting go shows that writes would go
	// through (a read-only file or mount fails here).
	tx, err := s.db.w.db.BeginTx(ctx, nil)
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
