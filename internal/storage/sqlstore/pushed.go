package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"

	"github.com/keygate/keygate/internal/storage/model"
)

// ---- pushed authorization requests ----

type pushedRequests struct{ s *Store }

const pushedCols = `hash, client_id, profile, params, issued_at, expires_at`

// Params are stored form-encoded: one TEXT column that both engines keep
// as written, and that url.ParseQuery reads back exactly (repeated names
// and empty values included).
func (p pushedRequests) Create(ctx context.Context, r model.PushedRequest) error {
	if err := r.Validate(); err != nil {
		return err
	}
	d := p.s.d
	_, err := p.s.w.Exec(ctx, `INSERT INTO pushed_requests (`+pushedCols+`) VALUES ($1, $2, $3, $4, $5, $6)`,
		r.Hash[:], r.ClientID, r.Profile, r.Params.Encode(), d.Time(r.IssuedAt), d.Time(r.ExpiresAt))
	return p.s.failed("create pushed request", err)
}

// Consume is one DELETE ... RETURNING. Concurrent consumers queue on the
// row's write (PostgreSQL's row lock, SQLite's database lock); each later
// one finds the row gone and returns no row, so exactly one wins.
func (p pushedRequests) Consume(ctx context.Context, hash model.Hash) (model.PushedRequest, error) {
	var r model.PushedRequest
	var params string
	d := p.s.d
	err := scan(p.s.w.QueryRow(ctx, `DELETE FROM pushed_requests WHERE hash = $1 RETURNING `+pushedCols, hash[:]),
		(*hashCol)(&r.Hash), &r.ClientID, &r.Profile, &params, d.ScanTime(&r.IssuedAt), d.ScanTime(&r.ExpiresAt))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return r, fmt.Errorf("pushed request: %w", model.ErrNotFound)
	case err != nil:
		return r, fmt.Errorf("consume pushed request: %w", err)
	}
	if r.Params, err = url.ParseQuery(params); err != nil {
		return model.PushedRequest{}, fmt.Errorf("consume pushed request: stored parameters: %w", err)
	}
	return r, nil
}
