// Package sqlstore is the storage contract (storage/model) on SQL, written
// once for SQLite and PostgreSQL. Its statements are SQL that both engines
// accept; a backend opens the database, hands it over as a DB, and says in
// a Dialect what the engines do differently: how values are stored, a few
// expressions, and the writes that take another strategy.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/storage/internal/batch"
	"github.com/keygate/keygate/internal/storage/model"
)

// Store is model.Store but for Ping and Close, which are the backend's.
type Store struct {
	db     DB
	r, w   Querier // db.Read(), db.Write()
	d      Dialect
	target string // names the database in errors, never with a URL
	// tokens group-commits opaque access tokens: one commit per batch;
	// proofs the DPoP proof ids, which every bound request writes.
	tokens *batch.Batcher[model.AccessToken]
	proofs *batch.Batcher[usedProof]
}

// New returns the store on db; target prefixes the errors of whole-store
// calls (migrate, GC).
func New(target string, db DB, d Dialect) *Store {
	s := &Store{db: db, r: db.Read(), w: db.Write(), d: d, target: target}
	s.tokens = batch.New(d.TokenWriters, tokenBatch, s.insertAccessTokens)
	s.proofs = batch.New(d.TokenWriters, tokenBatch, s.insertProofs)
	return s
}

// Close stops the token and proof writers; the backend closes the
// database after.
func (s *Store) Close() {
	s.tokens.Close()
	s.proofs.Close()
}

// failed prefixes a write's error with op; a unique violation is
// ErrConflict.
func (s *Store) failed(op string, err error) error {
	if err == nil {
		return nil
	}
	if s.d.IsUnique(err) {
		err = model.ErrConflict
	}
	return fmt.Errorf("%s: %w", op, err)
}

// found prefixes a lookup's error: ErrNotFound when there is no row.
func found(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%s: %w", what, model.ErrNotFound)
	}
	return fmt.Errorf("get %s: %w", what, err)
}

func (s *Store) AccessTokens() model.AccessTokens     { return accessTokens{s} }
func (s *Store) Revocations() model.Revocations       { return revocations{s} }
func (s *Store) Assertions() model.Assertions         { return assertions{s} }
func (s *Store) RefreshTokens() model.RefreshTokens   { return refreshTokens{s} }
func (s *Store) AuthCodes() model.AuthCodes           { return authCodes{s} }
func (s *Store) PushedRequests() model.PushedRequests { return pushedRequests{s} }
func (s *Store) DeviceCodes() model.DeviceCodes       { return deviceCodes{s} }
func (s *Store) DPoPProofs() model.DPoPProofs         { return dpopProofs{s} }
func (s *Store) Sessions() model.Sessions             { return sessions{s} }
func (s *Store) Users() model.Users                   { return users{s} }
func (s *Store) Groups() model.Groups                 { return groups{s} }
func (s *Store) Audit() model.Audit                   { return audit{s} }
func (s *Store) Nodes() model.Nodes                   { return nodes{s} }

// Migrations are the schema steps in this store's dialect.
func (s *Store) Migrations() []model.Migration { return Migrations(s.d) }

// Migrate applies each missing migration in its own write transaction,
// which re-checks the record once it holds the lock (SQLite's write lock,
// PostgreSQL's advisory lock), so nodes migrating together apply each once.
func (s *Store) Migrate(ctx context.Context) error {
	for _, m := range s.Migrations() {
		if err := s.apply(ctx, m); err != nil {
			return fmt.Errorf("%s: migration %d (%s): %w", s.target, m.Version, m.Name, err)
		}
	}
	return nil
}

func (s *Store) apply(ctx context.Context, m model.Migration) error {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range []string{s.d.MigrationLock, s.d.Types.Replace(migrationsTable)} {
		if q == "" {
			continue
		}
		if _, err := tx.Exec(ctx, q); err != nil {
			return err
		}
	}
	var done bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM keygate_schema_migrations WHERE version = $1)`,
		m.Version).Scan(&done); err != nil {
		return err
	}
	if done {
		return nil
	}
	if _, err := tx.Exec(ctx, m.SQL); err != nil { // no arguments: several statements may run
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO keygate_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
		m.Version, m.Name, s.d.Time(time.Now())); err != nil {
		return err
	}
	return tx.Commit()
}

// SchemaVersion is the newest applied migration, 0 on an empty database.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.r.QueryRow(ctx, s.d.SchemaVersion).Scan(&v)
	if err != nil {
		var exists bool
		if err2 := s.r.QueryRow(ctx, s.d.TableExists, "keygate_schema_migrations").Scan(&exists); err2 == nil && !exists {
			return 0, nil
		}
		return 0, fmt.Errorf("%s: schema version: %w", s.target, err)
	}
	return v, nil
}

// AppliedMigrations lists the recorded migrations, oldest first.
func (s *Store) AppliedMigrations(ctx context.Context) ([]model.AppliedMigration, error) {
	var out []model.AppliedMigration
	err := s.r.Query(ctx, func(row Row) error {
		var m model.AppliedMigration
		err := scan(row, &m.Version, &m.Name, s.d.ScanTime(&m.AppliedAt))
		out = append(out, m)
		return err
	}, `SELECT version, name, applied_at FROM keygate_schema_migrations ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("%s: applied migrations: %w", s.target, err)
	}
	return out, nil
}

// GC deletes expired rows in batches. The condition is repeated outside
// the subquery so that a row updated meanwhile (a touched session) is
// checked again before it is deleted.
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
		{&st.PushedRequests, "pushed_requests", "hash", "expires_at <= $1"},
		{&st.DeviceCodes, "device_codes", "hash", "expires_at <= $1"},
		{&st.DPoPProofs, "dpop_proofs", "(jkt, jti)", "expires_at <= $1"},
		{&st.Nodes, "nodes", "id", "expires_at <= $1"},
	}
	for _, j := range jobs {
		q := fmt.Sprintf(`DELETE FROM %s WHERE %s IN (SELECT %s FROM %s WHERE %s LIMIT %d) AND %s`,
			j.table, j.key, strings.Trim(j.key, "()"), j.table, j.cond, s.d.GCBatch, j.cond)
		for {
			n, err := s.w.Exec(ctx, q, s.d.Time(now))
			if err != nil {
				return st, fmt.Errorf("%s: gc %s: %w", s.target, j.table, err)
			}
			*j.n += n
			if n < int64(s.d.GCBatch) {
				break
			}
		}
	}
	return st, nil
}
