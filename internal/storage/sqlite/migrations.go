package sqlite

import "github.com/keygate/keygate/internal/storage/model"

// Migrations returns the SQLite schema steps (rules: model/migration.go).
// Times are INTEGER unix microseconds (NULL: unset); lists and maps are
// JSON text. Tables keyed by a hash are WITHOUT ROWID: one b-tree, not two.
// access_tokens has no jti index and no revoked column: revocation lives
// only in revoked_tokens and Get joins it, which keeps the issuance insert
// to two b-trees (measured: the insert's cost is the pages it dirties).
func Migrations() []model.Migration { return migrations }

var migrations = []model.Migration{
	{Version: 1, Name: "initial", SQL: `
CREATE TABLE access_tokens (
	hash       BLOB PRIMARY KEY,
	jti        TEXT NOT NULL,
	client_id  TEXT NOT NULL,
	subject    TEXT NOT NULL,
	scopes     TEXT NOT NULL,
	audience   TEXT NOT NULL,
	profile    TEXT NOT NULL,
	issued_at  INTEGER,
	expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX access_tokens_expires_at ON access_tokens (expires_at);

CREATE TABLE revoked_tokens (
	jti        TEXT PRIMARY KEY,
	revoked_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);

CREATE TABLE used_assertions (
	client_id  TEXT NOT NULL,
	jti        TEXT NOT NULL,
	expires_at INTEGER NOT NULL,
	PRIMARY KEY (client_id, jti)
) WITHOUT ROWID;
CREATE INDEX used_assertions_expires_at ON used_assertions (expires_at);

CREATE TABLE refresh_tokens (
	hash       BLOB PRIMARY KEY,
	family_id  TEXT NOT NULL,
	client_id  TEXT NOT NULL,
	subject    TEXT NOT NULL,
	scopes     TEXT NOT NULL,
	audience   TEXT NOT NULL,
	session_id TEXT NOT NULL,
	auth_time  INTEGER,
	acr        TEXT NOT NULL,
	amr        TEXT NOT NULL,
	profile    TEXT NOT NULL,
	issued_at  INTEGER,
	expires_at INTEGER NOT NULL,
	used_at    INTEGER,
	revoked_at INTEGER
) WITHOUT ROWID;
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE auth_codes (
	hash                  BLOB PRIMARY KEY,
	client_id             TEXT NOT NULL,
	redirect_uri          TEXT NOT NULL,
	scopes                TEXT NOT NULL,
	audience              TEXT NOT NULL,
	subject               TEXT NOT NULL,
	session_id            TEXT NOT NULL,
	nonce                 TEXT NOT NULL,
	code_challenge        TEXT NOT NULL,
	code_challenge_method TEXT NOT NULL,
	auth_time             INTEGER,
	acr                   TEXT NOT NULL,
	amr                   TEXT NOT NULL,
	profile               TEXT NOT NULL,
	access_token_jti      TEXT NOT NULL,
	refresh_family_id     TEXT NOT NULL,
	issued_at             INTEGER,
	expires_at            INTEGER NOT NULL,
	used_at               INTEGER
) WITHOUT ROWID;
CREATE INDEX auth_codes_expires_at ON auth_codes (expires_at);

CREATE TABLE sessions (
	hash            BLOB PRIMARY KEY,
	id              TEXT NOT NULL UNIQUE,
	user_id         TEXT NOT NULL,
	zone            TEXT NOT NULL,
	auth_time       INTEGER,
	acr             TEXT NOT NULL,
	amr             TEXT NOT NULL,
	idle_timeout_us INTEGER NOT NULL,
	created_at      INTEGER,
	last_seen_at    INTEGER,
	expires_at      INTEGER NOT NULL,
	idle_expires_at INTEGER
) WITHOUT ROWID;
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_idle_expires_at ON sessions (idle_expires_at);

CREATE TABLE users (
	id            TEXT PRIMARY KEY,
	zone          TEXT NOT NULL,
	username      TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	claims        TEXT NOT NULL,
	status        TEXT NOT NULL,
	created_at    INTEGER,
	updated_at    INTEGER,
	UNIQUE (zone, username)
);

CREATE TABLE audit_events (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	time      INTEGER NOT NULL,
	type      TEXT NOT NULL,
	zone      TEXT NOT NULL,
	subject   TEXT NOT NULL,
	client_id TEXT NOT NULL,
	ip        TEXT NOT NULL,
	details   TEXT NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_subject_time ON audit_events (subject, time);

CREATE TABLE nodes (
	id             TEXT PRIMARY KEY,
	role           TEXT NOT NULL,
	zone           TEXT NOT NULL,
	binary_version TEXT NOT NULL,
	config_version TEXT NOT NULL,
	config_hash    TEXT NOT NULL,
	started_at     INTEGER,
	heartbeat_at   INTEGER,
	expires_at     INTEGER NOT NULL,
	details        TEXT NOT NULL
);
CREATE INDEX nodes_expires_at ON nodes (expires_at);
`},
	// RefreshTokens.RevokeSession (logout) finds a session's families by
	// session_id.
	{Version: 2, Name: "refresh_tokens_session_id", SQL: `
CREATE INDEX refresh_tokens_session_id ON refresh_tokens (session_id);
`},
	// The token endpoint counts refused exchanges of a code
	// (AuthCodes.Fail) and stops accepting it after model.MaxCodeFailures.
	{Version: 3, Name: "auth_codes_failed_attempts", SQL: `
ALTER TABLE auth_codes ADD COLUMN failed_attempts INTEGER NOT NULL DEFAULT 0;
`},
}
