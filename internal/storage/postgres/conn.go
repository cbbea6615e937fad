package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/storage/sqlstore"
)

// conns is the pool as sqlstore reaches it: reads and writes alike.
type conns struct {
	c    *conn
	pool *pgxpool.Pool
}

func (c conns) Read() sqlstore.Querier  { return c.c }
func (c conns) Write() sqlstore.Querier { return c.c }

func (c conns) Begin(ctx context.Context) (sqlstore.Tx, error) {
	t, err := c.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &tx{conn{t}, t, ctx}, nil
}

// ExecBatch sends the runs as one pipeline, which PostgreSQL runs as one
// implicit transaction: one round trip, one commit.
func (c conns) ExecBatch(ctx context.Context, query string, args [][]any) ([]int64, error) {
	b := &pgx.Batch{}
	for _, a := range args {
		b.Queue(query, a...)
	}
	br := c.pool.SendBatch(ctx, b)
	changed := make([]int64, len(args))
	var failed error
	for i := range args {
		tag, err := br.Exec()
		if err != nil {
			failed = err
			break
		}
		changed[i] = tag.RowsAffected()
	}
	if err := br.Close(); err != nil && failed == nil {
		failed = err
	}
	return changed, failed
}

// conn runs statements on the pool or in a transaction; pgx keeps them
// prepared on each connection.
type conn struct {
	q interface { // *pgxpool.Pool or pgx.Tx
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	}
}

func (c *conn) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := c.q.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (c *conn) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return c.q.QueryRow(ctx, query, args...)
}

func (c *conn) Query(ctx context.Context, each func(sqlstore.Row) error, query string, args ...any) error {
	rows, err := c.q.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	return sqlstore.EachRow(rows, each)
}

type tx struct {
	conn
	t   pgx.Tx
	ctx context.Context // the caller's, which pgx's Commit and Rollback take
}

func (t *tx) Commit() error { return t.t.Commit(t.ctx) }
func (t *tx) Rollback()     { _ = t.t.Rollback(t.ctx) }
