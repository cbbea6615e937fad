// Package storage bounds every call of a store: WithDeadline gives each
// call the data source's timeout and marks the failures that are the
// database's, not the request's, with ErrUnavailable.
//
// The contract itself (records, aggregates, sentinel errors) is
// storage/model; storage/sqlstore implements it on SQL for the
// storage/sqlite and storage/postgres backends, which datasource.Open
// opens; storage/storagetest is the one conformance suite both pass.
package storage

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	sqlite3 "modernc.org/sqlite"
	sqlitelib "modernc.org/sqlite/lib"

	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/storage/postgres"
)

// ErrUnavailable marks a failure of the database rather than of the
// request: it did not answer within its timeout, the connection failed,
// or it refuses writes (a read-only replica, a full disk). Callers answer
// 503 with Retry-After. Match with errors.Is.
var ErrUnavailable = errors.New("storage: data source unavailable")

// unavailableError is a failure classified as ErrUnavailable. Its text says
// why without the driver's own, which for PostgreSQL names the host, port
// and user; the driver's error stays in the chain for errors.Is and As.
type unavailableError struct {
	why string
	err error
}

func (e *unavailableError) Error() string {
	if e.why == "" {
		return ErrUnavailable.Error()
	}
	return ErrUnavailable.Error() + ": " + e.why
}
func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// Unavailable lets packages that do not import storage (oauth) tell this
// error apart without a dependency.
func (e *unavailableError) Unavailable() bool { return true }

// classify marks err with ErrUnavailable when the database, not the
// request, is at fault; other errors (not found, conflict, replay) pass
// unchanged.
func classify(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || !unavailable(ctx, err) {
		return err
	}
	why := postgres.Describe(err)
	var sqliteErr *sqlite3.Error
	if why == "" && errors.As(err, &sqliteErr) {
		why = "sqlite: " + sqlite3.ErrorCodeString[sqliteErr.Code()]
	}
	return &unavailableError{why: why, err: err}
}

func unavailable(ctx context.Context, err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "25006": // read_only_sql_transaction: a replica, or the database was made read-only
			return true
		case len(pgErr.Code) == 5 && (pgErr.Code[:2] == "08" || pgErr.Code[:2] == "53" || pgErr.Code[:2] == "57"):
			return true // connection exception, insufficient resources, operator intervention
		}
		return false
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) {
		return true
	}
	var sqliteErr *sqlite3.Error
	if errors.As(err, &sqliteErr) {
		switch sqliteErr.Code() & 0xff { // primary result code
		case sqlitelib.SQLITE_BUSY, sqlitelib.SQLITE_LOCKED, sqlitelib.SQLITE_READONLY, sqlitelib.SQLITE_IOERR,
			sqlitelib.SQLITE_FULL, sqlitelib.SQLITE_CANTOPEN:
			return true
		}
	}
	return false
}

// WithDeadline gives every call to a store its own deadline (the data
// source's timeout, or the caller's if sooner) and marks the failures that
// are the database's with ErrUnavailable. Without it a hung database holds
// each request until TCP gives up, minutes later. datasource.Open applies
// it to every store it opens.
func WithDeadline(s model.Store, timeout time.Duration) model.Store {
	return &deadlineStore{s: s, d: timeout}
}

type deadlineStore struct {
	s model.Store
	d time.Duration
}

// Backend returns the backend's own Store under WithDeadline's deadlines (for
// tests and diagnostics that need the concrete type).
func Backend(s model.Store) model.Store {
	if d, ok := s.(*deadlineStore); ok {
		return d.s
	}
	return s
}

// do runs fn under the deadline.
func do(d time.Duration, ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return classify(ctx, fn(ctx))
}

// get runs fn under the deadline and returns its value.
func get[T any](d time.Duration, ctx context.Context, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	v, err := fn(ctx)
	return v, classify(ctx, err)
}

func (s *deadlineStore) AccessTokens() model.AccessTokens {
	return dAccessTokens{dByHash[model.AccessToken]{s.s.AccessTokens(), s.d}}
}
func (s *deadlineStore) Revocations() model.Revocations { return dRevocations{s.s.Revocations(), s.d} }
func (s *deadlineStore) Assertions() model.Assertions   { return dAssertions{s.s.Assertions(), s.d} }
func (s *deadlineStore) RefreshTokens() model.RefreshTokens {
	r := s.s.RefreshTokens()
	return dRefreshTokens{dByHash[model.RefreshToken]{r, s.d}, r}
}
func (s *deadlineStore) AuthCodes() model.AuthCodes {
	c := s.s.AuthCodes()
	return dAuthCodes{dByHash[model.AuthCode]{c, s.d}, c}
}
func (s *deadlineStore) PushedRequests() model.PushedRequests {
	return dPushedRequests{s.s.PushedRequests(), s.d}
}
func (s *deadlineStore) DeviceCodes() model.DeviceCodes { return dDeviceCodes{s.s.DeviceCodes(), s.d} }
func (s *deadlineStore) DPoPProofs() model.DPoPProofs   { return dDPoPProofs{s.s.DPoPProofs(), s.d} }
func (s *deadlineStore) Sessions() model.Sessions {
	ss := s.s.Sessions()
	return dSessions{dByHash[model.Session]{ss, s.d}, ss}
}
func (s *deadlineStore) Users() model.Users {
	u := s.s.Users()
	return dUsers{dResources[model.User]{u, s.d}, u}
}
func (s *deadlineStore) Groups() model.Groups {
	g := s.s.Groups()
	return dGroups{dResources[model.Group]{g, s.d}, g}
}
func (s *deadlineStore) Audit() model.Audit { return dAudit{s.s.Audit(), s.d} }
func (s *deadlineStore) Nodes() model.Nodes { return dNodes{s.s.Nodes(), s.d} }

func (s *deadlineStore) GC(ctx context.Context, now time.Time) (model.GCStats, error) {
	// GC deletes in batches for as long as it takes; each batch is a call
	// of the backend's own, so the whole run gets a longer bound.
	return get(10*s.d, ctx, func(ctx context.Context) (model.GCStats, error) { return s.s.GC(ctx, now) })
}
func (s *deadlineStore) Ping(ctx context.Context) error { return do(s.d, ctx, s.s.Ping) }

// Migrate is not bounded by the call timeout: an index build on a large
// table takes as long as it takes, and the caller sets its own deadline.
func (s *deadlineStore) Migrate(ctx context.Context) error { return classify(ctx, s.s.Migrate(ctx)) }
func (s *deadlineStore) SchemaVersion(ctx context.Context) (int, error) {
	return get(s.d, ctx, s.s.SchemaVersion)
}
func (s *deadlineStore) Close() error { return s.s.Close() }

// byHash is what the records found by the hash of their secret (access
// and refresh tokens, codes, sessions) have in common: one wrapper bounds
// their Create and Get.
type byHash[T any] interface {
	Create(ctx context.Context, r T) error
	Get(ctx context.Context, h model.Hash) (T, error)
}

type dByHash[T any] struct {
	a byHash[T]
	d time.Duration
}

func (a dByHash[T]) Create(ctx context.Context, r T) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.Create(ctx, r) })
}
func (a dByHash[T]) Get(ctx context.Context, h model.Hash) (T, error) {
	return get(a.d, ctx, func(ctx context.Context) (T, error) { return a.a.Get(ctx, h) })
}

type dAccessTokens struct{ dByHash[model.AccessToken] }

type dRevocations struct {
	a model.Revocations
	d time.Duration
}

func (a dRevocations) Revoke(ctx context.Context, jti string, exp time.Time) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.Revoke(ctx, jti, exp) })
}
func (a dRevocations) IsRevoked(ctx context.Context, ids ...string) (bool, error) {
	return get(a.d, ctx, func(ctx context.Context) (bool, error) { return a.a.IsRevoked(ctx, ids...) })
}

type dAssertions struct {
	a model.Assertions
	d time.Duration
}

func (a dAssertions) Use(ctx context.Context, clientID, jti string, exp time.Time) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.Use(ctx, clientID, jti, exp) })
}

type dDPoPProofs struct {
	a model.DPoPProofs
	d time.Duration
}

func (a dDPoPProofs) Use(ctx context.Context, jkt, jti string, exp time.Time) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.Use(ctx, jkt, jti, exp) })
}

type dRefreshTokens struct {
	dByHash[model.RefreshToken]
	a model.RefreshTokens
}

func (a dRefreshTokens) Rotate(ctx context.Context, old model.Hash, next model.RefreshToken) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.Rotate(ctx, old, next) })
}
func (a dRefreshTokens) RevokeFamily(ctx context.Context, family string) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.RevokeFamily(ctx, family) })
}
func (a dRefreshTokens) RevokeSession(ctx context.Context, sid string) (int, error) {
	return get(a.d, ctx, func(ctx context.Context) (int, error) { return a.a.RevokeSession(ctx, sid) })
}

type dAuthCodes struct {
	dByHash[model.AuthCode]
	a model.AuthCodes
}

func (a dAuthCodes) Fail(ctx context.Context, h model.Hash) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.Fail(ctx, h) })
}
func (a dAuthCodes) Consume(ctx context.Context, h model.Hash) (model.AuthCode, error) {
	return get(a.d, ctx, func(ctx context.Context) (model.AuthCode, error) { return a.a.Consume(ctx, h) })
}

type dPushedRequests struct {
	a model.PushedRequests
	d time.Duration
}

func (a dPushedRequests) Create(ctx context.Context, r model.PushedRequest) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.Create(ctx, r) })
}
func (a dPushedRequests) Consume(ctx context.Context, h model.Hash) (model.PushedRequest, error) {
	return get(a.d, ctx, func(ctx context.Context) (model.PushedRequest, error) { return a.a.Consume(ctx, h) })
}

type dDeviceCodes struct {
	a model.DeviceCodes
	d time.Duration
}

func (a dDeviceCodes) Create(ctx context.Context, c model.DeviceCode) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.Create(ctx, c) })
}
func (a dDeviceCodes) Get(ctx context.Context, h model.Hash) (model.DeviceCode, error) {
	return get(a.d, ctx, func(ctx context.Context) (model.DeviceCode, error) { return a.a.Get(ctx, h) })
}
func (a dDeviceCodes) ByUserCode(ctx context.Context, h model.Hash) (model.DeviceCode, error) {
	return get(a.d, ctx, func(ctx context.Context) (model.DeviceCode, error) { return a.a.ByUserCode(ctx, h) })
}
func (a dDeviceCodes) Decide(ctx context.Context, c model.DeviceCode, now time.Time) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.Decide(ctx, c, now) })
}
func (a dDeviceCodes) Poll(ctx context.Context, h model.Hash, polls int, now time.Time, interval time.Duration) (bool, error) {
	return get(a.d, ctx, func(ctx context.Context) (bool, error) { return a.a.Poll(ctx, h, polls, now, interval) })
}
func (a dDeviceCodes) Consume(ctx context.Context, h model.Hash) (model.DeviceCode, error) {
	return get(a.d, ctx, func(ctx context.Context) (model.DeviceCode, error) { return a.a.Consume(ctx, h) })
}

type dSessions struct {
	dByHash[model.Session]
	a model.Sessions
}

func (a dSessions) Touch(ctx context.Context, h model.Hash, now time.Time) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.Touch(ctx, h, now) })
}
func (a dSessions) Delete(ctx context.Context, h model.Hash) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.Delete(ctx, h) })
}
func (a dSessions) Exists(ctx context.Context, id string) (bool, error) {
	return get(a.d, ctx, func(ctx context.Context) (bool, error) { return a.a.Exists(ctx, id) })
}

// resources is what Users and Groups have in common: SCIM resources kept
// by id, updated atomically, listed by a SCIM filter. One wrapper bounds
// those calls for both.
type resources[T any] interface {
	Create(ctx context.Context, r T) error
	Get(ctx context.Context, id string) (T, error)
	Update(ctx context.Context, id string, fn func(old T) (T, error)) error
	Delete(ctx context.Context, id string, version int64) error
	Query(ctx context.Context, zone string, q model.UserQuery) ([]T, int, error)
}

type dResources[T any] struct {
	a resources[T]
	d time.Duration
}

func (a dResources[T]) Create(ctx context.Context, r T) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.Create(ctx, r) })
}
func (a dResources[T]) Get(ctx context.Context, id string) (T, error) {
	return get(a.d, ctx, func(ctx context.Context) (T, error) { return a.a.Get(ctx, id) })
}
func (a dResources[T]) Update(ctx context.Context, id string, fn func(T) (T, error)) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.Update(ctx, id, fn) })
}
func (a dResources[T]) Delete(ctx context.Context, id string, version int64) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.Delete(ctx, id, version) })
}
func (a dResources[T]) Query(ctx context.Context, zone string, q model.UserQuery) ([]T, int, error) {
	var total int
	page, err := get(a.d, ctx, func(ctx context.Context) ([]T, error) {
		p, n, err := a.a.Query(ctx, zone, q)
		total = n
		return p, err
	})
	return page, total, err
}

type dUsers struct {
	dResources[model.User]
	u model.Users
}

func (a dUsers) GetByUsername(ctx context.Context, zone, username string) (model.User, error) {
	return get(a.d, ctx, func(ctx context.Context) (model.User, error) { return a.u.GetByUsername(ctx, zone, username) })
}

type dGroups struct {
	dResources[model.Group]
	g model.Groups
}

func (a dGroups) Of(ctx context.Context, id string) ([]model.GroupRef, error) {
	return get(a.d, ctx, func(ctx context.Context) ([]model.GroupRef, error) { return a.g.Of(ctx, id) })
}

type dAudit struct {
	a model.Audit
	d time.Duration
}

func (a dAudit) Append(ctx context.Context, e model.AuditEvent) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.Append(ctx, e) })
}
func (a dAudit) List(ctx context.Context, q model.AuditQuery) ([]model.AuditEvent, error) {
	return get(a.d, ctx, func(ctx context.Context) ([]model.AuditEvent, error) { return a.a.List(ctx, q) })
}
func (a dAudit) Prune(ctx context.Context, before time.Time) (int64, error) {
	return get(a.d, ctx, func(ctx context.Context) (int64, error) { return a.a.Prune(ctx, before) })
}

type dNodes struct {
	a model.Nodes
	d time.Duration
}

func (a dNodes) Heartbeat(ctx context.Context, n model.NodeStatus) error {
	return do(a.d, ctx, func(ctx context.Context) error { return a.a.Heartbeat(ctx, n) })
}
func (a dNodes) List(ctx context.Context) ([]model.NodeStatus, error) {
	return get(a.d, ctx, a.a.List)
}
