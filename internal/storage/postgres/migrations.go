package postgres

import "github.com/keygate/keygate/internal/storage/model"

// Migrations returns the PostgreSQL schema steps (rules: model/migration.go).
// Tables are created unqualified, in the first schema of search_path.
// access_tokens has no jti index and no revoked column: revocation lives
// only in revoked_tokens and Get joins it, which keeps issuance to one
// insert into two indexes.
func Migrations() []model.Migration { return migrations }

var migrations = []model.Migration{
	{Version: 1, Name: "initial", SQL: `
CREATE TABLE access_tokens (
	hash       bytea PRIMARY KEY,
	jti        text NOT NULL,
	client_id  text NOT NULL,
	subject    text NOT NULL,
	scopes     text[] NOT NULL,
	audience   text[] NOT NULL,
	profile    text NOT NULL,
	issued_at  timestamptz,
	expires_at timestamptz NOT NULL
);
CREATE INDEX access_tokens_expires_at ON access_tokens (expires_at);

CREATE TABLE revoked_tokens (
	jti        text PRIMARY KEY,
	revoked_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);

CREATE TABLE used_assertions (
	client_id  text NOT NULL,
	jti        text NOT NULL,
	expires_at timestamptz NOT NULL,
	PRIMARY KEY (client_id, jti)
);
CREATE INDEX used_assertions_expires_at ON used_assertions (expires_at);

CREATE TABLE refresh_tokens (
	hash       bytea PRIMARY KEY,
	family_id  text NOT NULL,
	client_id  text NOT NULL,
	subject    text NOT NULL,
	scopes     text[] NOT NULL,
	audience   text[] NOT NULL,
	session_id text NOT NULL,
	auth_time  timestamptz,
	acr        text NOT NULL,
	amr        text[] NOT NULL,
	profile    text NOT NULL,
	issued_at  timestamptz,
	expires_at timestamptz NOT NULL,
	used_at    timestamptz,
	revoked_at timestamptz
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE auth_codes (
	hash                  bytea PRIMARY KEY,
	client_id             text NOT NULL,
	redirect_uri          text NOT NULL,
	scopes                text[] NOT NULL,
	audience              text[] NOT NULL,
	subject               text NOT NULL,
	session_id            text NOT NULL,
	nonce                 text NOT NULL,
	code_challenge        text NOT NULL,
	code_challenge_method text NOT NULL,
	auth_time             timestamptz,
	acr                   text NOT NULL,
	amr                   text[] NOT NULL,
	profile               text NOT NULL,
	access_token_jti      text NOT NULL,
	refresh_family_id     text NOT NULL,
	issued_at             timestamptz,
	expires_at            timestamptz NOT NULL,
	used_at               timestamptz
);
CREATE INDEX auth_codes_expires_at ON auth_codes (expires_at);

CREATE TABLE sessions (
	hash            bytea PRIMARY KEY,
	id              text NOT NULL UNIQUE,
	user_id         text NOT NULL,
	zone            text NOT NULL,
	auth_time       timestamptz,
	acr             text NOT NULL,
	amr             text[] NOT NULL,
	idle_timeout_us bigint NOT NULL,
	created_at      timestamptz,
	last_seen_at    timestamptz,
	expires_at      timestamptz NOT NULL,
	idle_expires_at timestamptz
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_idle_expires_at ON sessions (idle_expires_at);

CREATE TABLE users (
	id            text PRIMARY KEY,
	zone          text NOT NULL,
	username      text NOT NULL,
	password_hash text NOT NULL,
	claims        jsonb NOT NULL,
	status        text NOT NULL,
	created_at    timestamptz,
	updated_at    timestamptz,
	UNIQUE (zone, username)
);

CREATE TABLE audit_events (
	id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	time      timestamptz NOT NULL,
	type      text NOT NULL,
	zone      text NOT NULL,
	subject   text NOT NULL,
	client_id text NOT NULL,
	ip        text NOT NULL,
	details   jsonb NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_subject_time ON audit_events (subject, time);

CREATE TABLE nodes (
	id             text PRIMARY KEY,
	role           text NOT NULL,
	zone           text NOT NULL,
	binary_version text NOT NULL,
	config_version text NOT NULL,
	config_hash    text NOT NULL,
	started_at     timestamptz,
	heartbeat_at   timestamptz,
	expires_at     timestamptz NOT NULL,
	details        jsonb NOT NULL
);
CREATE INDEX nodes_expires_at ON nodes (expires_at);
`},
	// RefreshTokens.RevokeSession (logout) finds a session's families by
	// session_id. A plain CREATE INDEX: migrations run in a transaction,
	// which CONCURRENTLY cannot; it blocks writes to refresh_tokens
	// (refreshes, code exchanges) while it builds.
	{Version: 2, Name: "refresh_tokens_session_id", SQL: `
CREATE INDEX refresh_tokens_session_id ON refresh_tokens (session_id);
`},
	// The token endpoint counts refused exchanges of a code
	// (AuthCodes.Fail) and stops accepting it after model.MaxCodeFailures.
	// A constant default: PostgreSQL adds the column without rewriting
	// the table.
	{Version: 3, Name: "auth_codes_failed_attempts", SQL: `
ALTER TABLE auth_codes ADD COLUMN failed_attempts integer NOT NULL DEFAULT 0;
`},
}
