// Package storage is Keygate's persistence: one small interface per
// aggregate (tokens, codes, sessions, users, audit, nodes), sentinel
// errors, and WithDeadline, which bounds every call of the stores that
// datasource.Open builds.
//
// The contract is defined in storage/model and re-exported here under the
// same names; callers import only this package. Backends live in
// storage/sqlite and storage/postgres; storage/storagetest is the one
// conformance suite both pass.
package storage

import (
	"github.com/keygate/keygate/internal/storage/model"
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
