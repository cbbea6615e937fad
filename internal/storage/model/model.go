// Package model defines Keygate's storage contract: the record types, one
// small interface per aggregate, the Store that bundles them, and the
// sentinel errors every backend returns.
//
// Callers and backends import it directly; datasource.Open builds the Store
// for a configured data source.
package model

import (
	"github.com/keygate/keygate/internal/scim"

	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/url"
	"time"
)

// Sentinel errors. Backends wrap them with context; match with errors.Is.
var (
	// ErrNotFound: no record with that key (or it was garbage-collected).
	ErrNotFound = errors.New("storage: not found")
	// ErrConflict: a record with the same unique key already exists.
	ErrConflict = errors.New("storage: conflict")
	// ErrReplay: a single-use value (code, refresh token, assertion jti)
	// was presented again. Callers treat it as an attack signal.
	ErrReplay = errors.New("storage: replay")
	// ErrRevoked: the record exists but was revoked.
	ErrRevoked = errors.New("storage: revoked")
	// ErrModified: a conditional write named a version the record no
	// longer has (another write came first).
	ErrModified = errors.New("storage: modified since read")
	// ErrSchemaTooOld: the database lacks migrations this binary needs;
	// run `keygate migrate`.
	ErrSchemaTooOld = errors.New("storage: database schema too old")
	// ErrReadOnly: the database answers but refuses writes (a read-only
	// replica, default_transaction_read_only, a read-only file): a node
	// on it cannot record a sign-in or issue a grant, so it is not ready.
	ErrReadOnly = errors.New("the database refuses writes (read-only)")
	// ErrFileReplaced: the SQLite file the store opened was deleted or
	// replaced; the store would go on writing to the deleted file.
	ErrFileReplaced = errors.New("the database file was deleted or replaced since it was opened; restart the node (and check what removed it)")
)

// Hash is the SHA-256 of a bearer secret (token handle, code, session
// cookie). Storage is keyed by it so that a database dump yields nothing
// usable; a distinct type keeps the plaintext from being stored by mistake.
type Hash [sha256.Size]byte

// HashSecret hashes a bearer secret for lookup.
func HashSecret(secret string) Hash { return sha256.Sum256([]byte(secret)) }

// String is hex, for logs and tests; the hash is not a secret.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is unset.
func (h Hash) IsZero() bool { return h == Hash{} }

// NewID returns a random 128-bit identifier (base64url, 22 chars) for
// record ids, jtis and family ids.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Times are stored with microsecond precision (PostgreSQL's) and read back
// in UTC; a zero time.Time means "not set" (SQL NULL). Empty slices and maps
// read back as nil.

// AccessToken is an opaque access token. JWT access tokens are never stored.
type AccessToken struct {
	Hash      Hash // SHA-256 of the handle; the handle itself is never stored
	JTI       string
	ClientID  string
	Subject   string
	Scopes    []string
	Audience  []string
	Profile   string // token profile that issued it
	IssuedAt  time.Time
	ExpiresAt time.Time
	// RevokedAt is read-only: set by Revocations.Revoke of the token's JTI
	// (one revocation path for JWT and opaque tokens); zero unless revoked.
	RevokedAt time.Time
	// JKT is the RFC 7638 thumbprint of the DPoP key the token is bound to
	// (RFC 9449 §6); "" for a bearer token.
	JKT string
}

// AccessTokens stores opaque access tokens.
type AccessTokens interface {
	// Create stores t; ErrConflict if its hash exists.
	Create(ctx context.Context, t AccessToken) error
	// Get returns the token, revoked or expired ones included (the caller
	// judges activity against its clock); ErrNotFound if absent.
	Get(ctx context.Context, hash Hash) (AccessToken, error)
}

// Revocations records revoked token ids. A JWT cannot be recalled, so
// revoking one stores its jti until the JWT would have expired anyway. An
// id may also name a grant (a refresh token family) that every access
// token issued from it refers to, so one record revokes them all, however
// many there are and whichever node issues the next one.
type Revocations interface {
	// Revoke records jti as revoked until expiresAt (pass the token's own
	// expiry); a stored opaque token with that jti then reads back with
	// RevokedAt set. Idempotent; a later call never shortens the record.
	Revoke(ctx context.Context, jti string, expiresAt time.Time) error
	// IsRevoked reports whether any of ids is revoked (false for none).
	IsRevoked(ctx context.Context, ids ...string) (bool, error)
}

// Assertions remembers used client assertion ids: RFC 7523 §3 lets the
// server reject a JWT whose jti it has seen before.
type Assertions interface {
	// Use records (clientID, jti) until expiresAt, or returns ErrReplay if
	// it is already recorded. Atomic across nodes.
	Use(ctx context.Context, clientID, jti string, expiresAt time.Time) error
}

// DPoPProofs remembers the jti of every DPoP proof accepted while its iat
// window lasts (RFC 9449 §11.1), so a proof is used once across the zone.
type DPoPProofs interface {
	// Use records (jkt, jti) until expiresAt, or returns ErrReplay if it
	// is already recorded. One insert, atomic across nodes.
	Use(ctx context.Context, jkt, jti string, expiresAt time.Time) error
}

// RefreshToken is stored hashed. Tokens rotated from one grant share a
// FamilyID, so reuse of any member can revoke the whole family
// (OAuth 2.0 Security BCP §4.14.2).
type RefreshToken struct {
	Hash      Hash
	FamilyID  string
	ClientID  string
	Subject   string
	Scopes    []string
	Audience  []string
	SessionID string // SSO session id (sid) the grant came from, if any
	AuthTime  time.Time
	ACR       string
	AMR       []string
	Profile   string
	IssuedAt  time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // set when rotated; kept until expiry to detect reuse
	RevokedAt time.Time // set when the family is revoked
	// JKT binds the token to a DPoP key (RFC 9449 §5: a public client's
	// refresh tokens); "" for an unbound token. Rotation keeps it.
	JKT string
}

// ScopeOfflineAccess is the scope that asks for refresh tokens that
// outlive the SSO session (OpenID Connect Core 1.0 §11): RevokeSession
// spares the families that have it.
const ScopeOfflineAccess = "offline_access"

// RefreshTokens stores refresh tokens.
type RefreshTokens interface {
	// Create stores the first token of a family; ErrConflict if the hash exists.
	Create(ctx context.Context, t RefreshToken) error
	// Get returns the token whatever its state; ErrNotFound if absent.
	Get(ctx context.Context, hash Hash) (RefreshToken, error)
	// Rotate atomically marks oldHash used and stores next, which must carry
	// the old token's FamilyID. Exactly one of concurrent rotations of one
	// token succeeds; the others get ErrReplay (the caller then revokes the
	// family). ErrRevoked if the family was revoked, ErrNotFound if absent.
	Rotate(ctx context.Context, oldHash Hash, next RefreshToken) error
	// RevokeFamily marks every token of the family revoked. When it
	// returns, no token of the family is active, even under concurrent
	// rotation: a Rotate racing with it either fails or its new token is
	// revoked too. Idempotent.
	RevokeFamily(ctx context.Context, familyID string) error
	// RevokeSession revokes, as RevokeFamily does (same guarantee under
	// concurrent rotation), every family that has a token with that
	// SessionID, except families whose scopes contain ScopeOfflineAccess:
	// those are meant to outlive the session (OpenID Connect Core 1.0
	// §11). It returns how many families it revoked (families already
	// revoked do not count). An empty sessionID revokes nothing.
	RevokeSession(ctx context.Context, sessionID string) (int, error)
}

// AuthCode is an authorization code (RFC 6749 §4.1), stored hashed and
// consumed once.
type AuthCode struct {
	Hash                Hash
	ClientID            string
	RedirectURI         string
	Scopes              []string
	Audience            []string
	Subject             string
	SessionID           string
	Nonce               string
	CodeChallenge       string
	CodeChallengeMethod string
	AuthTime            time.Time
	ACR                 string
	AMR                 []string
	Profile             string
	// AccessTokenJTI and RefreshFamilyID are chosen when the code is
	// created and used for the tokens its exchange issues, so a replayed
	// code names exactly what to revoke (RFC 6749 §4.1.2).
	AccessTokenJTI  string
	RefreshFamilyID string
	IssuedAt        time.Time
	ExpiresAt       time.Time
	UsedAt          time.Time // set by Consume
	// FailedAttempts counts exchanges refused before Consume (another
	// client, redirect URI or code_verifier); read-only, set by Fail.
	FailedAttempts int
	// DPoPJKT is the dpop_jkt of the authorization request (RFC 9449
	// §10): the code is exchanged only with a proof of that key.
	DPoPJKT string
}

// MaxCodeFailures is how many refused exchanges a code survives: after
// that many, Consume refuses it (ErrRevoked), so a code cannot be used as
// an oracle for guessing its code_verifier.
const MaxCodeFailures = 5

// AuthCodes stores authorization codes. The token endpoint reads a code
// with Get, checks the request against it, and only then consumes it, so
// a refused exchange does not use the code up for its legitimate client.
type AuthCodes interface {
	// Create stores c; ErrConflict if the hash exists.
	Create(ctx context.Context, c AuthCode) error
	// Get returns the code whatever its state; ErrNotFound if absent.
	Get(ctx context.Context, hash Hash) (AuthCode, error)
	// Fail counts one refused exchange of an unused code. Idempotent for
	// an absent or used code (nothing changes).
	Fail(ctx context.Context, hash Hash) error
	// Consume atomically marks the code used and returns it. A code already
	// used returns the record together with ErrReplay, so the caller can
	// revoke what the first exchange issued; exactly one of concurrent
	// Consumes succeeds, on every node. A code with MaxCodeFailures failed
	// attempts returns ErrRevoked and stays unused. Expiry is the caller's
	// check.
	Consume(ctx context.Context, hash Hash) (AuthCode, error)
}

// PushedRequest is an authorization request a client pushed to the PAR
// endpoint (RFC 9126), kept under the hash of its request_uri until the
// authorization endpoint uses it, once. The request_uri is a bearer
// reference to the request, so only its hash is stored, like a code's.
type PushedRequest struct {
	Hash     Hash   // SHA-256 of the request_uri
	ClientID string // the client that pushed it (RFC 9126 §2.2: bound to it)
	Profile  string // the token profile it was pushed to
	// Params are the authorization request's parameters, client_id
	// included, client authentication excluded.
	Params    url.Values
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// PushedRequests stores pushed authorization requests.
type PushedRequests interface {
	// Create stores r; ErrConflict if its hash exists.
	Create(ctx context.Context, r PushedRequest) error
	// Consume deletes the request and returns it, in one atomic step: of
	// concurrent Consumes of one hash, on every node, exactly one gets
	// the record and the others ErrNotFound, which is also the answer for
	// a hash never stored, already consumed or collected. Expiry is the
	// caller's check (against its clock, as for codes).
	Consume(ctx context.Context, hash Hash) (PushedRequest, error)
}

// Device authorization states (RFC 8628 §3.4, §3.5).
const (
	DevicePending  = "pending"
	DeviceApproved = "approved"
	DeviceDenied   = "denied"
)

// DeviceCode is a device authorization request (RFC 8628 §3.2): the
// device polls with the device_code while its user approves it with the
// user code on another screen. Both codes are bearer secrets, so only
// their hashes are stored. The user's part (Subject to AMR) is set when
// the user approves.
type DeviceCode struct {
	Hash     Hash // SHA-256 of the device_code
	UserCode Hash // SHA-256 of the user code, normalized
	ClientID string
	Profile  string
	Scopes   []string
	Audience []string
	Status   string // DevicePending, DeviceApproved, DeviceDenied

	Subject   string
	SessionID string
	AuthTime  time.Time
	ACR       string
	AMR       []string

	// Interval is the least time between two polls; a poll sooner gets
	// slow_down and raises it by 5 s (RFC 8628 §3.5). Polls counts the
	// polls, so that two nodes answering one device at once cannot both
	// take the same last poll time.
	Interval     time.Duration
	Polls        int
	LastPolledAt time.Time
	IssuedAt     time.Time
	ExpiresAt    time.Time
}

// DeviceCodes stores device authorization requests.
type DeviceCodes interface {
	// Create stores d; ErrConflict if either hash exists.
	Create(ctx context.Context, d DeviceCode) error
	// Get returns the request of a device_code hash; ByUserCode that of a
	// user code hash. ErrNotFound if none.
	Get(ctx context.Context, hash Hash) (DeviceCode, error)
	ByUserCode(ctx context.Context, userCode Hash) (DeviceCode, error)
	// Decide records the user's decision (DeviceApproved with the user's
	// part of d, or DeviceDenied) on the pending request of d.UserCode
	// that expires after now; ErrNotFound if there is none (decided,
	// expired or unknown).
	Decide(ctx context.Context, d DeviceCode, now time.Time) error
	// Poll records a poll of the request of hash at now with the interval
	// it now has, if no other poll was recorded since the caller read
	// polls; false if one was (the device polls from two places at once).
	Poll(ctx context.Context, hash Hash, polls int, now time.Time, interval time.Duration) (bool, error)
	// Consume deletes a decided request and returns it, in one atomic
	// step: of concurrent Consumes on every node exactly one gets it;
	// ErrNotFound for the others, a pending or an unknown request.
	Consume(ctx context.Context, hash Hash) (DeviceCode, error)
}

// Session is an SSO session. The browser cookie holds a random value; the
// store holds its Hash. ID is the public session id (the ID token's sid),
// distinct from the cookie so relying parties never learn a credential.
type Session struct {
	Hash     Hash
	ID       string
	UserID   string
	Zone     string
	AuthTime time.Time
	ACR      string
	AMR      []string
	// IdleTimeout, when positive, ends the session that long after the
	// last Touch; ExpiresAt ends it regardless (absolute lifetime).
	IdleTimeout time.Duration
	CreatedAt   time.Time
	LastSeenAt  time.Time
	ExpiresAt   time.Time
}

// Expiry is when the session ends if not touched again.
func (s Session) Expiry() time.Time {
	if s.IdleTimeout > 0 {
		if idle := s.LastSeenAt.Add(s.IdleTimeout); idle.Before(s.ExpiresAt) {
			return idle
		}
	}
	return s.ExpiresAt
}

// Sessions stores SSO sessions.
type Sessions interface {
	// Create stores s; ErrConflict if its hash or ID exists.
	Create(ctx context.Context, s Session) error
	// Get returns the session, expired ones included; ErrNotFound if absent.
	Get(ctx context.Context, hash Hash) (Session, error)
	// Touch records activity at now, extending the idle lifetime.
	Touch(ctx context.Context, hash Hash, now time.Time) error
	// Delete removes the session (logout). Idempotent.
	Delete(ctx context.Context, hash Hash) error
	// Exists reports whether the session with this ID (sid) is stored,
	// expired or not: false once it was deleted (logout).
	Exists(ctx context.Context, id string) (bool, error)
}

// User statuses.
const (
	UserActive = "active"
	UserLocked = "locked"
	// UserDisabled: deactivated through SCIM (active: false); no sign-in.
	UserDisabled = "disabled"
)

// User is a local account in its home zone's data source.
type User struct {
	ID   string
	Zone string
	// Username is unique within its zone and compared exactly; callers
	// normalise it (e.g. lower-case) before storing and looking up.
	Username     string
	PasswordHash string         // PHC string (argon2id); empty: no password
	Claims       map[string]any // standard claims: name, email, email_verified, ...
	Status       string
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// The user's SCIM representation (user-management profiles), without
	// id, meta and password: ExternalID is the provisioning client's id,
	// SCIM the attributes (nil for a user created otherwise), Version the
	// resource version (ETag), which every Update increments.
	ExternalID string
	SCIM       map[string]any
	Version    int64
}

// UserQuery selects the users of a zone for a SCIM list: Filter (nil: all)
// with the meaning scim.ResourceType.Match gives it, ordered by SortBy
// (nil: creation), Offset of them skipped and at most Limit returned.
type UserQuery struct {
	Filter     scim.Expr
	SortBy     *scim.Target
	Descending bool
	Offset     int
	Limit      int
}

// Group is a SCIM group of a zone: its representation (SCIM, with its
// members), and the member ids, kept apart so a user's groups are found.
type Group struct {
	ID, Zone    string
	DisplayName string
	ExternalID  string
	SCIM        map[string]any
	Members     []string // ids of users (or groups) of the zone
	Version     int64
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// GroupRef is a group a member belongs to.
type GroupRef struct{ ID, DisplayName string }

// Groups stores SCIM groups.
type Groups interface {
	// Create stores g; ErrConflict if its id exists.
	Create(ctx context.Context, g Group) error
	Get(ctx context.Context, id string) (Group, error)
	// Update applies fn atomically, as Users.Update; the version goes up.
	Update(ctx context.Context, id string, fn func(old Group) (Group, error)) error
	// Delete removes the group, as Users.Delete does.
	Delete(ctx context.Context, id string, version int64) error
	Query(ctx context.Context, zone string, q UserQuery) (page []Group, total int, err error)
	// Of lists the groups whose members include id, by display name.
	Of(ctx context.Context, id string) ([]GroupRef, error)
}

// Users stores local accounts.
type Users interface {
	// Create stores u; ErrConflict if its id or (zone, username) exists.
	Create(ctx context.Context, u User) error
	Get(ctx context.Context, id string) (User, error)
	GetByUsername(ctx context.Context, zone, username string) (User, error)
	// Update applies fn to the current record atomically: concurrent
	// updates of one user are serialised, none is lost. fn runs inside the
	// write transaction, so keep it fast (hash passwords before calling).
	// fn's error is returned as is. The ID cannot change; UpdatedAt is set
	// to the current time. ErrConflict if the new username is taken.
	Update(ctx context.Context, id string, fn func(old User) (User, error)) error
	// Delete removes the user; ErrNotFound if there is none. A version
	// above 0 deletes only that version, atomically: ErrModified if the
	// stored one is another (SCIM's If-Match on DELETE).
	Delete(ctx context.Context, id string, version int64) error
	// Query returns a page of the zone's users matching q and how many
	// match in all.
	Query(ctx context.Context, zone string, q UserQuery) (page []User, total int, err error)
}

// AuditEvent is one security-relevant event (login success or failure,
// lockout, token reuse, ...).
type AuditEvent struct {
	ID       int64 // assigned by the store
	Time     time.Time
	Type     string
	Zone     string
	Subject  string
	ClientID string
	IP       string
	Details  map[string]any
}

// AuditQuery selects events; zero fields do not filter.
type AuditQuery struct {
	Type     string
	Subject  string
	ClientID string
	Zone     string
	Since    time.Time // inclusive
	Until    time.Time // exclusive
	Limit    int       // default 100
	// Newest lists the newest events first (the limit keeps the newest).
	Newest bool
}

// Audit is an append-only event log. Store.GC never deletes from it;
// Prune enforces the data source's audit-retention.
type Audit interface {
	Append(ctx context.Context, e AuditEvent) error
	// List returns matching events, oldest first.
	List(ctx context.Context, q AuditQuery) ([]AuditEvent, error)
	// Prune deletes the events older than before and says how many.
	Prune(ctx context.Context, before time.Time) (int64, error)
}

// NodeStatus is a runtime node's heartbeat, read by the admin node.
type NodeStatus struct {
	ID            string
	Role          string
	Zone          string
	BinaryVersion string
	ConfigVersion string
	ConfigHash    string
	StartedAt     time.Time
	HeartbeatAt   time.Time
	// ExpiresAt is when GC may forget a node that stopped beating.
	ExpiresAt time.Time
	// Details holds extra status (last reload error, ...) without a
	// migration per field.
	Details map[string]any
}

// Nodes stores cluster heartbeats.
type Nodes interface {
	// Heartbeat inserts or replaces the node's row.
	Heartbeat(ctx context.Context, n NodeStatus) error
	// List returns every node, ordered by id.
	List(ctx context.Context) ([]NodeStatus, error)
}

// GCStats counts the rows one GC deleted, per aggregate.
type GCStats struct {
	AccessTokens  int64
	Revocations   int64
	Assertions    int64
	RefreshTokens int64
	AuthCodes     int64
	Sessions      int64
	// PushedRequests are pushed authorization requests never used.
	PushedRequests int64
	// DeviceCodes are device authorization requests past their expiry.
	DeviceCodes int64
	// DPoPProofs are DPoP proof ids past their iat window.
	DPoPProofs int64
	Nodes      int64
	// AuditEvents are those past the data source's audit-retention
	// (Audit.Prune, which the node's GC runs after Store.GC).
	AuditEvents int64
}

// Total is the sum of every count.
func (s GCStats) Total() int64 {
	return s.AccessTokens + s.Revocations + s.Assertions + s.RefreshTokens + s.AuthCodes + s.Sessions +
		s.PushedRequests + s.DeviceCodes + s.DPoPProofs + s.Nodes + s.AuditEvents
}

// Store is one data source: every aggregate plus lifecycle. It is safe
// for concurrent use; Close releases its connections.
type Store interface {
	AccessTokens() AccessTokens
	Revocations() Revocations
	Assertions() Assertions
	RefreshTokens() RefreshTokens
	AuthCodes() AuthCodes
	PushedRequests() PushedRequests
	DeviceCodes() DeviceCodes
	DPoPProofs() DPoPProofs
	Sessions() Sessions
	Users() Users
	Groups() Groups
	Audit() Audit
	Nodes() Nodes

	// GC deletes rows whose expiry is at or before now, in batches, from
	// every aggregate that expires (not Users, not Audit).
	GC(ctx context.Context, now time.Time) (GCStats, error)
	// Ping checks that the database answers, accepts writes (ErrReadOnly)
	// and, for a file, is still the file that was opened (ErrFileReplaced).
	Ping(ctx context.Context) error
	// Migrate applies every migration this binary knows that the database
	// lacks. Safe to run from several nodes at once.
	Migrate(ctx context.Context) error
	// SchemaVersion is the newest applied migration (0: none).
	SchemaVersion(ctx context.Context) (int, error)
	// Close releases the connections. Idempotent.
	Close() error
}
