package sqlstore

import "github.com/keygate/keygate/internal/storage/model"

// Migrations returns the schema steps (rules: model/migration.go) in the
// dialect's column types: {bytes} a hash, {time} a time (NULL: unset),
// {int64}, {list} a string list, {json} a map, {serial} a generated key;
// {norowid} follows the tables keyed by a hash (SQLite: one b-tree, not
// two). Tables are created unqualified (PostgreSQL: in the first schema of
// search_path).
//
// access_tokens has no jti index and no revoked column: revocation lives
// only in revoked_tokens and Get joins it, which keeps the issuance insert
// to two b-trees (measured: the insert's cost is the pages it dirties).
func Migrations(d Dialect) []model.Migration {
	out := make([]model.Migration, len(migrations))
	for i, m := range migrations {
		m.SQL = d.Types.Replace(m.SQL)
		out[i] = m
	}
	return out
}

// migrationsTable records the applied migrations.
const migrationsTable = `CREATE TABLE IF NOT EXISTS keygate_schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at {time} NOT NULL)`

var migrations = []model.Migration{
	{Version: 1, Name: "initial", SQL: `
CREATE TABLE access_tokens (
	hash       {bytes} PRIMARY KEY,
	jti        TEXT NOT NULL,
	client_id  TEXT NOT NULL,
	subject    TEXT NOT NULL,
	scopes     {list} NOT NULL,
	audience   {list} NOT NULL,
	profile    TEXT NOT NULL,
	issued_at  {time},
	expires_at {time} NOT NULL
){norowid};
CREATE INDEX access_tokens_expires_at ON access_tokens (expires_at);

CREATE TABLE revoked_tokens (
	jti        TEXT PRIMARY KEY,
	revoked_at {time} NOT NULL,
	expires_at {time} NOT NULL
){norowid};
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);

CREATE TABLE used_assertions (
	client_id  TEXT NOT NULL,
	jti        TEXT NOT NULL,
	expires_at {time} NOT NULL,
	PRIMARY KEY (client_id, jti)
){norowid};
CREATE INDEX used_assertions_expires_at ON used_assertions (expires_at);

CREATE TABLE refresh_tokens (
	hash       {bytes} PRIMARY KEY,
	family_id  TEXT NOT NULL,
	client_id  TEXT NOT NULL,
	subject    TEXT NOT NULL,
	scopes     {list} NOT NULL,
	audience   {list} NOT NULL,
	session_id TEXT NOT NULL,
	auth_time  {time},
	acr        TEXT NOT NULL,
	amr        {list} NOT NULL,
	profile    TEXT NOT NULL,
	issued_at  {time},
	expires_at {time} NOT NULL,
	used_at    {time},
	revoked_at {time}
){norowid};
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE auth_codes (
	hash                  {bytes} PRIMARY KEY,
	client_id             TEXT NOT NULL,
	redirect_uri          TEXT NOT NULL,
	scopes                {list} NOT NULL,
	audience              {list} NOT NULL,
	subject               TEXT NOT NULL,
	session_id            TEXT NOT NULL,
	nonce                 TEXT NOT NULL,
	code_challenge        TEXT NOT NULL,
	code_challenge_method TEXT NOT NULL,
	auth_time             {time},
	acr                   TEXT NOT NULL,
	amr                   {list} NOT NULL,
	profile               TEXT NOT NULL,
	access_token_jti      TEXT NOT NULL,
	refresh_family_id     TEXT NOT NULL,
	issued_at             {time},
	expires_at            {time} NOT NULL,
	used_at               {time}
){norowid};
CREATE INDEX auth_codes_expires_at ON auth_codes (expires_at);

CREATE TABLE sessions (
	hash            {bytes} PRIMARY KEY,
	id              TEXT NOT NULL UNIQUE,
	user_id         TEXT NOT NULL,
	zone            TEXT NOT NULL,
	auth_time       {time},
	acr             TEXT NOT NULL,
	amr             {list} NOT NULL,
	idle_timeout_us {int64} NOT NULL,
	created_at      {time},
	last_seen_at    {time},
	expires_at      {time} NOT NULL,
	idle_expires_at {time}
){norowid};
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_idle_expires_at ON sessions (idle_expires_at);

CREATE TABLE users (
	id            TEXT PRIMARY KEY,
	zone          TEXT NOT NULL,
	username      TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	claims        {json} NOT NULL,
	status        TEXT NOT NULL,
	created_at    {time},
	updated_at    {time},
	UNIQUE (zone, username)
);

CREATE TABLE audit_events (
	id        {serial},
	time      {time} NOT NULL,
	type      TEXT NOT NULL,
	zone      TEXT NOT NULL,
	subject   TEXT NOT NULL,
	client_id TEXT NOT NULL,
	ip        TEXT NOT NULL,
	details   {json} NOT NULL
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
	started_at     {time},
	heartbeat_at   {time},
	expires_at     {time} NOT NULL,
	details        {json} NOT NULL
);
CREATE INDEX nodes_expires_at ON nodes (expires_at);
`},
	// RefreshTokens.RevokeSession (logout) finds a session's families by
	// session_id. On PostgreSQL a plain CREATE INDEX: migrations run in a
	// transaction, which CONCURRENTLY cannot; it blocks writes to
	// refresh_tokens (refreshes, code exchanges) while it builds.
	{Version: 2, Name: "refresh_tokens_session_id", SQL: `
CREATE INDEX refresh_tokens_session_id ON refresh_tokens (session_id);
`},
	// The token endpoint counts refused exchanges of a code
	// (AuthCodes.Fail) and stops accepting it after model.MaxCodeFailures.
	// A constant default: PostgreSQL adds the column without rewriting the
	// table.
	{Version: 3, Name: "auth_codes_failed_attempts", SQL: `
ALTER TABLE auth_codes ADD COLUMN failed_attempts INTEGER NOT NULL DEFAULT 0;
`},
	// SCIM (user-management profiles): a user's representation, and the
	// same with case-insensitive values folded, which filters compare
	// (so both engines fold as Go does); the version is the ETag. Lists
	// page by creation: (zone, created_at, id).
	{Version: 4, Name: "users_scim", SQL: `
ALTER TABLE users ADD COLUMN external_id TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN scim {json};
ALTER TABLE users ADD COLUMN scim_folded {json};
ALTER TABLE users ADD COLUMN version {int64} NOT NULL DEFAULT 1;
CREATE INDEX users_zone_external_id ON users (zone, external_id);
CREATE INDEX users_zone_created ON users (zone, created_at, id);
`},
	// SCIM groups; group_members finds a user's groups (the readOnly
	// "groups" attribute) without reading every group.
	{Version: 5, Name: "groups", SQL: `
CREATE TABLE groups (
	id           TEXT PRIMARY KEY,
	zone         TEXT NOT NULL,
	display_name TEXT NOT NULL,
	external_id  TEXT NOT NULL DEFAULT '',
	scim         {json},
	scim_folded  {json},
	version      {int64} NOT NULL DEFAULT 1,
	created_at   {time},
	updated_at   {time}
);
CREATE INDEX groups_zone_created ON groups (zone, created_at, id);
CREATE TABLE group_members (
	group_id  TEXT NOT NULL,
	member_id TEXT NOT NULL,
	PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_members_member ON group_members (member_id);
`},
	// Pushed authorization requests (RFC 9126): short-lived, keyed by the
	// hash of the request_uri, deleted by the authorization endpoint's
	// first use (DELETE ... RETURNING, one winner across nodes) or by GC.
	{Version: 6, Name: "pushed_requests", SQL: `
CREATE TABLE pushed_requests (
	hash       {bytes} PRIMARY KEY,
	client_id  TEXT NOT NULL,
	profile    TEXT NOT NULL,
	params     TEXT NOT NULL,
	issued_at  {time},
	expires_at {time} NOT NULL
){norowid};
CREATE INDEX pushed_requests_expires_at ON pushed_requests (expires_at);
`},
	// Device authorization requests (RFC 8628): keyed by the hash of the
	// device_code, found by the hash of the user code, deleted by the
	// token endpoint once decided (DELETE ... RETURNING) or by GC.
	{Version: 7, Name: "device_codes", SQL: `
CREATE TABLE device_codes (
	hash           {bytes} PRIMARY KEY,
	user_code      {bytes} NOT NULL UNIQUE,
	client_id      TEXT NOT NULL,
	profile        TEXT NOT NULL,
	scopes         {list} NOT NULL,
	audience       {list} NOT NULL,
	status         TEXT NOT NULL,
	subject        TEXT NOT NULL,
	session_id     TEXT NOT NULL,
	auth_time      {time},
	acr            TEXT NOT NULL,
	amr            {list} NOT NULL,
	interval_ms    BIGINT NOT NULL,
	polls          INTEGER NOT NULL,
	last_polled_at {time},
	issued_at      {time},
	expires_at     {time} NOT NULL
){norowid};
CREATE INDEX device_codes_expires_at ON device_codes (expires_at);
`},
	// DPoP (RFC 9449): the key an opaque access token, a refresh token or
	// a code is bound to ('' = unbound; constant defaults, so PostgreSQL
	// adds the columns without rewriting the tables and older binaries
	// keep inserting), and the ids of accepted proofs, kept for their iat
	// window so a proof is used once across the zone.
	{Version: 8, Name: "dpop", SQL: `
ALTER TABLE access_tokens ADD COLUMN jkt TEXT NOT NULL DEFAULT '';
ALTER TABLE refresh_tokens ADD COLUMN jkt TEXT NOT NULL DEFAULT '';
ALTER TABLE auth_codes ADD COLUMN dpop_jkt TEXT NOT NULL DEFAULT '';
CREATE TABLE dpop_proofs (
	jkt        TEXT NOT NULL,
	jti        TEXT NOT NULL,
	expires_at {time} NOT NULL,
	PRIMARY KEY (jkt, jti)
){norowid};
CREATE INDEX dpop_proofs_expires_at ON dpop_proofs (expires_at);
`},
}
