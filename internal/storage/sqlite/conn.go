package sqlite

import (
	"context"
	"database/sql"
	"sync"

	"github.com/keygate/keygate/internal/storage/sqlstore"
)

// conns are the two pools as sqlstore reaches them.
type conns struct{ r, w conn }

func (c conns) Read() sqlstore.Querier  { return c.r }
func (c conns) Write() sqlstore.Querier { return c.w }

func (c conns) Begin(ctx context.Context) (sqlstore.Tx, error) {
	t, err := c.w.db.BeginTx(ctx, nil) // IMMEDIATE: the write lock is ours until commit
	if err != nil {
		return nil, err
	}
	return conn{c.w.db, t, c.w.stmts}, nil
}

// ExecBatch runs the batch in one IMMEDIATE transaction on the writer.
func (c conns) ExecBatch(ctx context.Context, query string, args [][]any) ([]int64, error) {
	prepared, err := c.w.stmt(ctx, query) // before Begin takes the one connection
	if err != nil {
		return nil, err
	}
	t, err := c.w.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer t.Rollback()
	st := t.StmtContext(ctx, prepared)
	out := make([]int64, len(args))
	for i, a := range args {
		res, err := st.ExecContext(ctx, a...)
		if err == nil {
			out[i], err = res.RowsAffected()
		}
		if err != nil {
			return nil, err
		}
	}
	return out, t.Commit()
}

// conn runs statements prepared: SQLite parses an unprepared statement on
// every call, which costs more than running the token lookups. A pool
// keeps each statement once prepared (sqlstore's are a fixed set); a
// transaction uses those, or prepares its own.
type conn struct {
	db    *sql.DB
	tx    *sql.Tx   // nil outside a transaction
	stmts *sync.Map // query → *sql.Stmt on db
}

func newConn(db *sql.DB) conn { return conn{db, nil, new(sync.Map)} }

func (c conn) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	st, ok := c.stmts.Load(query)
	switch {
	case ok && c.tx != nil:
		return c.tx.StmtContext(ctx, st.(*sql.Stmt)), nil
	case ok:
		return st.(*sql.Stmt), nil
	case c.tx != nil:
		return c.tx.PrepareContext(ctx, query) // db's one connection is the transaction's
	}
	prepared, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err // no schema yet, say
	}
	if st, loaded := c.stmts.LoadOrStore(query, prepared); loaded {
		prepared.Close()
		return st.(*sql.Stmt), nil
	}
	return prepared, nil
}

func (c conn) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return 0, err
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c conn) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return failedRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

func (c conn) Query(ctx context.Context, each func(sqlstore.Row) error, query string, args ...any) error {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	return sqlstore.EachRow(rows, each)
}

func (c conn) Commit() error { return c.tx.Commit() }
func (c conn) Rollback()     { _ = c.tx.Rollback() }

// close closes the pool and its statements.
func (c conn) close() error {
	c.stmts.Range(func(_, st any) bool {
		st.(*sql.Stmt).Close()
		return true
	})
	return c.db.Close()
}

type failedRow struct{ err error }

func (r failedRow) Scan(...any) error { return r.err }
