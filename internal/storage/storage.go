// Package storage is Keygate's persistence: one small interface per
// aggregate (tokens, codes, sessions, users, audit, nodes), sentinel
// errors, and Open, which builds a Store for a configured data source.
//
// The contract is defined in storage/model and re-exported here under the
// same names; callers import only this package. Backends live in
// storage/sqlite and storage/postgres; storage/storagetest is the one
// conformance suite both pass.
package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/storage/postgres"
	"github.com/keygate/keygate/internal/storage/sqlite"
)

// Records and aggregates (documented in storage/model).
type (
	Hash             = model.Hash
	AccessToken      = model.AccessToken
	AccessTokens     = model.AccessTokens
	Revocations      = model.Revocations
	Assertions       = model.Assertions
	RefreshToken     = model.RefreshToken
	RefreshTokens    = model.RefreshTokens
	AuthCode         = model.AuthCode
	AuthCodes        = model.AuthCodes
	Session          = model.Session
	Sessions         = model.Sessions
	User             = model.User
	Users            = model.Users
	AuditEvent       = model.AuditEvent
	AuditQuery       = model.AuditQuery
	Audit            = model.Audit
	NodeStatus       = model.NodeStatus
	Nodes            = model.Nodes
	GCStats          = model.GCStats
	Store            = model.Store
	Migration        = model.Migration
	AppliedMigration = model.AppliedMigration
)

// ScopeOfflineAccess is the scope whose refresh tokens outlive the SSO
// session (documented in storage/model).
const ScopeOfflineAccess = model.ScopeOfflineAccess

// MaxCodeFailures is how many refused exchanges a code survives
// (documented in storage/model).
const MaxCodeFailures = model.MaxCodeFailures

// Sentinel errors (documented in storage/model).
var (
	ErrNotFound     = model.ErrNotFound
	ErrConflict     = model.ErrConflict
	ErrReplay       = model.ErrReplay
	ErrRevoked      = model.ErrRevoked
	ErrSchemaTooOld = model.ErrSchemaTooOld
	ErrReadOnly     = model.ErrReadOnly
	ErrFileReplaced = model.ErrFileReplaced
)

// User statuses.
const (
	UserActive = model.UserActive
	UserLocked = model.UserLocked
)

// The schema versions this binary supports (see model.SchemaMin): for
// `keygate version` and start-up checks.
const (
	SchemaMin = model.SchemaMin
	SchemaMax = model.SchemaMax
)

// HashSecret hashes a bearer secret (token handle, code, cookie) for lookup.
func HashSecret(secret string) Hash { return model.HashSecret(secret) }

// NewID returns a random 128-bit identifier.
func NewID() string { return model.NewID() }

// CheckSchemaVersion reports ErrSchemaTooOld when applied version v is
// older than this binary needs.
func CheckSchemaVersion(v int) error { return model.CheckSchemaVersion(v) }

// timeout is the data source's call timeout, defaulted for data sources
// built in code rather than loaded.
func timeout(ds *config.DataSource) time.Duration {
	if ds.Timeout > 0 {
		return ds.Timeout.D()
	}
	return config.DefaultDataSourceTimeout
}

// Open builds the Store for a data source and checks that it answers, so a
// reload with an unreachable database fails before it is swapped in. It
// does not migrate. For sqlite, parent directories are created and
// MaxConnections bounds the read pool (writes always use one connection);
// for postgres it bounds the pool (default 10). Errors name the data
// source, never its URL. Every call gets the data source's timeout as its
// deadline, and the failures that are the database's (it hung, the
// connection failed, it refuses writes) wrap ErrUnavailable.
func Open(ctx context.Context, ds *config.DataSource) (Store, error) {
	switch ds.Type {
	case config.DataSourceSQLite:
		s, err := sqlite.Open(ctx, ds.Path, sqlite.Options{Readers: ds.MaxConnections})
		if err != nil {
			return nil, fmt.Errorf("data source %s: %w", ds.Name, err)
		}
		return withDeadline(s, timeout(ds)), nil
	case config.DataSourcePostgres:
		if ds.URL.IsZero() {
			return nil, fmt.Errorf("data source %s: url is required", ds.Name)
		}
		s, err := postgres.Open(ctx, ds.URL.Reveal(), ds.MaxConnections)
		if err != nil {
			return nil, fmt.Errorf("data source %s: %w", ds.Name, err)
		}
		return withDeadline(s, timeout(ds)), nil
	default:
		return nil, fmt.Errorf("data source %s: unknown type %q (want %s or %s)",
			ds.Name, ds.Type, config.DataSourceSQLite, config.DataSourcePostgres)
	}
}
