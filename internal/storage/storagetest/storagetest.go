// Package storagetest is the one conformance suite every storage backend
// passes: each behaviour of the storage contract, including the atomicity
// that tokens and codes rely on under concurrency.
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/storage/model"
)

// Opener returns a new, empty, unmigrated store that no other test sees,
// and registers its cleanup (Close, dropping the database) with t.Cleanup.
type Opener func(t *testing.T) model.Store

// Run runs the whole suite; each subtest opens its own store.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"Migrate", testMigrate},
		{"AccessTokens", testAccessTokens},
		{"Revocations", testRevocations},
		{"Assertions", testAssertions},
		{"AssertionsConcurrent", testAssertionsConcurrent},
		{"DPoPProofs", testDPoPProofs},
		{"DPoPProofsConcurrent", testDPoPProofsConcurrent},
		{"RefreshTokens", testRefreshTokens},
		{"RefreshRotateConcurrent", testRefreshRotateConcurrent},
		{"RefreshRevokeFamilyDuringRotation", testRefreshRevokeFamilyDuringRotation},
		{"RefreshRevokeSession", testRefreshRevokeSession},
		{"RefreshRevokeSessionDuringRotation", testRefreshRevokeSessionDuringRotation},
		{"AuthCodes", testAuthCodes},
		{"AuthCodeConsumeConcurrent", testAuthCodesConcurrent},
		{"AuthCodeFailures", testAuthCodeFailures},
		{"PushedRequests", testPushedRequests},
		{"PushedRequestConsumeConcurrent", testPushedRequestsConcurrent},
		{"DeviceCodes", testDeviceCodes},
		{"DeviceCodesConcurrent", testDeviceCodesConcurrent},
		{"Sessions", testSessions},
		{"Users", testUsers},
		{"UsersUpdateConcurrent", testUsersUpdateConcurrent},
		{"SCIMUsers", testSCIMUsers},
		{"SCIMGroups", testSCIMGroups},
		{"AuditPrune", testAuditPrune},
		{"Audit", testAudit},
		{"Nodes", testNodes},
		{"GC", testGC},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// ConcurrentMigrate migrates stores that share one fresh database all at
// once, as nodes starting together do: every call must succeed and the
// schema end at SchemaMax.
func ConcurrentMigrate(t *testing.T, stores ...model.Store) {
	t.Helper()
	errs := parallel(len(stores), func(i int) error { return stores[i].Migrate(t.Context()) })
	for i, err := range errs {
		if err != nil {
			t.Errorf("store %d: Migrate: %v", i, err)
		}
	}
	for i, s := range stores {
		if v, err := s.SchemaVersion(t.Context()); err != nil || v != model.SchemaMax {
			t.Errorf("store %d: SchemaVersion = %d, %v; want %d", i, v, err, model.SchemaMax)
		}
	}
}

// migrated opens a store and applies the schema.
func migrated(t *testing.T, open Opener) model.Store {
	t.Helper()
	s := open(t)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

// concurrency is how many goroutines race for one single-use value.
const concurrency = 20

// parallel runs fn(0..n-1) in n goroutines released together and returns
// their errors by index.
func parallel(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// base is a fixed instant with a microsecond part, to check precision.
var base = time.Unix(1_900_000_000, 123_456_000).UTC()

func at(d time.Duration) time.Time { return base.Add(d) }

func hashOf(s string) model.Hash { return model.HashSecret(s) }

func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: err = %v, want %v", what, err, target)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func testMigrate(t *testing.T, open Opener) {
	ctx := t.Context()
	s := open(t)
	must(t, "Ping", s.Ping(ctx))
	if v, err := s.SchemaVersion(ctx); err != nil || v != 0 {
		t.Fatalf("SchemaVersion before Migrate = %d, %v; want 0", v, err)
	}
	must(t, "Migrate", s.Migrate(ctx))
	must(t, "Migrate again", s.Migrate(ctx))
	// Several Migrates on one store race for connections (and, on
	// PostgreSQL, for the advisory lock).
	for i, err := range parallel(4, func(int) error { return s.Migrate(ctx) }) {
		if err != nil {
			t.Errorf("concurrent Migrate %d: %v", i, err)
		}
	}
	v, err := s.SchemaVersion(ctx)
	if err != nil || v != model.SchemaMax {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, model.SchemaMax)
	}
	must(t, "CheckSchemaVersion", model.CheckSchemaVersion(v))
	wantErr(t, "CheckSchemaVersion(0)", model.CheckSchemaVersion(0), model.ErrSchemaTooOld)
	// The store works after migrating.
	must(t, "Heartbeat", s.Nodes().Heartbeat(ctx, model.NodeStatus{ID: "n", ExpiresAt: at(time.Hour)}))
	must(t, "Close", s.Close())
	must(t, "Close again", s.Close())
}

func testAccessTokens(t *testing.T, open Opener) {
	ctx := t.Context()
	s := migrated(t, open).AccessTokens()
	tok := model.AccessToken{
		Hash: hashOf("handle-1"), JTI: "jti-1", ClientID: "web", Subject: "alice",
		Scopes: []string{"openid", "invoices:read"}, Audience: []string{"https://api.example", "billing"},
		Profile: "token", IssuedAt: at(0), ExpiresAt: at(5 * time.Minute), JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
	}
	must(t, "Create", s.Create(ctx, tok))
	got, err := s.Get(ctx, tok.Hash)
	must(t, "Get", err)
	equal(t, "Get", got, tok)

	wantErr(t, "Create duplicate", s.Create(ctx, tok), model.ErrConflict)
	_, err = s.Get(ctx, hashOf("nope"))
	wantErr(t, "Get missing", err, model.ErrNotFound)

	bare := model.AccessToken{Hash: hashOf("handle-2"), JTI: "jti-2", ExpiresAt: at(time.Minute)}
	must(t, "Create bare", s.Create(ctx, bare))
	got, err = s.Get(ctx, bare.Hash)
	must(t, "Get bare", err)
	equal(t, "Get bare (empty lists read back nil, zero times stay zero)", got, bare)

	if err := s.Create(ctx, model.AccessToken{JTI: "x", ExpiresAt: at(0)}); err == nil {
		t.Error("Create without hash succeeded")
	}
}

func testRevocations(t *testing.T, open Opener) {
	ctx := t.Context()
	st := migrated(t, open)
	r := st.Revocations()
	if rev, err := r.IsRevoked(ctx, "jwt-1"); err != nil || rev {
		t.Fatalf("IsRevoked before = %v, %v", rev, err)
	}
	must(t, "Revoke", r.Revoke(ctx, "jwt-1", at(5*time.Minute)))
	must(t, "Revoke again", r.Revoke(ctx, "jwt-1", at(time.Minute)))
	if rev, err := r.IsRevoked(ctx, "jwt-1"); err != nil || !rev {
		t.Fatalf("IsRevoked after = %v, %v", rev, err)
	}
	if rev, err := r.IsRevoked(ctx, "jwt-2"); err != nil || rev {
		t.Fatalf("IsRevoked other = %v, %v", rev, err)
	}
	// Several ids: revoked when any is (a token's jti and its grant's id).
	for _, c := range []struct {
		ids  []string
		want bool
	}{{nil, false}, {[]string{"jwt-2", "jwt-3"}, false}, {[]string{"jwt-2", "jwt-1"}, true}, {[]string{"jwt-1", "jwt-2", "jwt-3"}, true}} {
		if rev, err := r.IsRevoked(ctx, c.ids...); err != nil || rev != c.want {
			t.Errorf("IsRevoked(%v) = %v, %v; want %v", c.ids, rev, err, c.want)
		}
	}
	// A second, earlier expiry must not shorten the record: GC at +2m keeps it.
	if _, err := st.GC(ctx, at(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if rev, _ := r.IsRevoked(ctx, "jwt-1"); !rev {
		t.Error("revocation shortened by a second Revoke with an earlier expiry")
	}

	// Revoking an opaque token's jti marks the stored token.
	tok := model.AccessToken{Hash: hashOf("opaque"), JTI: "opaque-jti", ExpiresAt: at(time.Hour)}
	must(t, "Create", st.AccessTokens().Create(ctx, tok))
	before := time.Now().Add(-time.Second)
	must(t, "Revoke opaque", r.Revoke(ctx, tok.JTI, tok.ExpiresAt))
	got, err := st.AccessTokens().Get(ctx, tok.Hash)
	must(t, "Get", err)
	if got.RevokedAt.Before(before) {
		t.Errorf("RevokedAt = %v, want set by Revoke", got.RevokedAt)
	}
}

func testAssertions(t *testing.T, open Opener) {
	ctx := t.Context()
	a := migrated(t, open).Assertions()
	must(t, "Use", a.Use(ctx, "svc", "a-1", at(time.Minute)))
	wantErr(t, "Use replayed", a.Use(ctx, "svc", "a-1", at(time.Minute)), model.ErrReplay)
	must(t, "Use same jti, other client", a.Use(ctx, "other", "a-1", at(time.Minute)))
	must(t, "Use other jti", a.Use(ctx, "svc", "a-2", at(time.Minute)))
}

func testAssertionsConcurrent(t *testing.T, open Opener) {
	a := migrated(t, open).Assertions()
	errs := parallel(concurrency, func(int) error { return a.Use(t.Context(), "svc", "race", at(time.Minute)) })
	exactlyOne(t, "Use", errs, model.ErrReplay)
}

func testDPoPProofs(t *testing.T, open Opener) {
	ctx := t.Context()
	p := migrated(t, open).DPoPProofs()
	must(t, "Use", p.Use(ctx, "jkt-a", "p-1", at(time.Minute)))
	wantErr(t, "Use replayed", p.Use(ctx, "jkt-a", "p-1", at(time.Minute)), model.ErrReplay)
	must(t, "Use same jti, other key", p.Use(ctx, "jkt-b", "p-1", at(time.Minute)))
	must(t, "Use other jti", p.Use(ctx, "jkt-a", "p-2", at(time.Minute)))
	if err := p.Use(ctx, "", "p-3", at(time.Minute)); err == nil || errors.Is(err, model.ErrReplay) {
		t.Errorf("Use without jkt: %v, want a plain error", err)
	}
}

// testDPoPProofsConcurrent: one proof sent to every node at once is
// accepted by exactly one.
func testDPoPProofsConcurrent(t *testing.T, open Opener) {
	p := migrated(t, open).DPoPProofs()
	errs := parallel(concurrency, func(int) error { return p.Use(t.Context(), "jkt", "race", at(time.Minute)) })
	exactlyOne(t, "Use", errs, model.ErrReplay)
}

// exactlyOne checks that one call succeeded and every other failed with loser.
func exactlyOne(t *testing.T, what string, errs []error, loser error) {
	t.Helper()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, loser):
			t.Errorf("%s %d: %v, want nil or %v", what, i, err, loser)
		}
	}
	if wins != 1 {
		t.Errorf("%s: %d of %d succeeded, want exactly 1", what, wins, len(errs))
	}
}

func refresh(secret, family string) model.RefreshToken {
	return model.RefreshToken{
		Hash: hashOf(secret), FamilyID: family, ClientID: "web", Subject: "alice",
		Scopes: []string{"openid", "offline_access"}, Audience: []string{"web"}, SessionID: "sid-1",
		AuthTime: at(-time.Minute), ACR: "1", AMR: []string{"pwd"}, Profile: "token",
		IssuedAt: at(0), ExpiresAt: at(720 * time.Hour), JKT: "jkt-" + family,
	}
}

func testRefreshTokens(t *testing.T, open Opener) {
	ctx := t.Context()
	r := migrated(t, open).RefreshTokens()
	first := refresh("rt-1", "fam-1")
	must(t, "Create", r.Create(ctx, first))
	got, err := r.Get(ctx, first.Hash)
	must(t, "Get", err)
	equal(t, "Get", got, first)
	wantErr(t, "Create duplicate", r.Create(ctx, first), model.ErrConflict)
	_, err = r.Get(ctx, hashOf("nope"))
	wantErr(t, "Get missing", err, model.ErrNotFound)

	// A next token whose hash exists: conflict, and the old one stays usable.
	wantErr(t, "Rotate onto an existing hash", r.Rotate(ctx, first.Hash, first), model.ErrConflict)
	if got, _ := r.Get(ctx, first.Hash); !got.UsedAt.IsZero() {
		t.Fatal("failed Rotate marked the old token used")
	}
	// The family must carry over.
	if err := r.Rotate(ctx, first.Hash, refresh("rt-x", "fam-other")); err == nil || errors.Is(err, model.ErrReplay) {
		t.Fatalf("Rotate into another family: %v, want a plain error", err)
	}
	if got, _ := r.Get(ctx, first.Hash); !got.UsedAt.IsZero() {
		t.Fatal("rejected Rotate marked the old token used")
	}

	second := refresh("rt-2", "fam-1")
	must(t, "Rotate", r.Rotate(ctx, first.Hash, second))
	got, err = r.Get(ctx, first.Hash)
	must(t, "Get old", err)
	if got.UsedAt.IsZero() {
		t.Error("old token not marked used")
	}
	got, err = r.Get(ctx, second.Hash)
	must(t, "Get new", err)
	equal(t, "Get new", got, second)

	wantErr(t, "Rotate reused", r.Rotate(ctx, first.Hash, refresh("rt-3", "fam-1")), model.ErrReplay)
	if _, err := r.Get(ctx, hashOf("rt-3")); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("replayed Rotate stored its new token: %v", err)
	}
	wantErr(t, "Rotate missing", r.Rotate(ctx, hashOf("nope"), refresh("rt-4", "fam-1")), model.ErrNotFound)

	// Reuse detected: the caller revokes the family.
	other := refresh("rt-other", "fam-2")
	must(t, "Create other family", r.Create(ctx, other))
	must(t, "RevokeFamily", r.RevokeFamily(ctx, "fam-1"))
	must(t, "RevokeFamily again", r.RevokeFamily(ctx, "fam-1"))
	for _, h := range []model.Hash{first.Hash, second.Hash} {
		if got, _ := r.Get(ctx, h); got.RevokedAt.IsZero() {
			t.Errorf("token %v of the revoked family not revoked", h)
		}
	}
	if got, _ := r.Get(ctx, other.Hash); !got.RevokedAt.IsZero() {
		t.Error("RevokeFamily revoked another family")
	}
	wantErr(t, "Rotate revoked", r.Rotate(ctx, second.Hash, refresh("rt-5", "fam-1")), model.ErrRevoked)
}

func testRefreshRotateConcurrent(t *testing.T, open Opener) {
	ctx := t.Context()
	r := migrated(t, open).RefreshTokens()
	old := refresh("race", "fam")
	must(t, "Create", r.Create(ctx, old))
	errs := parallel(concurrency, func(i int) error {
		return r.Rotate(ctx, old.Hash, refresh(fmt.Sprintf("race-next-%d", i), "fam"))
	})
	exactlyOne(t, "Rotate", errs, model.ErrReplay)
	stored := 0
	for i := range concurrency {
		_, err := r.Get(ctx, hashOf(fmt.Sprintf("race-next-%d", i)))
		switch {
		case err == nil:
			stored++
			if errs[i] != nil {
				t.Errorf("rotation %d failed but stored its token", i)
			}
		case !errors.Is(err, model.ErrNotFound):
			t.Errorf("Get %d: %v", i, err)
		}
	}
	if stored != 1 {
		t.Errorf("%d successor tokens stored, want 1", stored)
	}
}

// testRefreshRevokeFamilyDuringRotation races RevokeFamily against a
// client that rotates its family's chain as fast as it can (a stolen token
// being refreshed while reuse detection revokes the family).
func testRefreshRevokeFamilyDuringRotation(t *testing.T, open Opener) {
	r := migrated(t, open).RefreshTokens()
	revokeDuringRotation(t, r, func(i int, tok model.RefreshToken) model.RefreshToken { return tok },
		func(ctx context.Context, i int, family string) error { return r.RevokeFamily(ctx, family) })
}

// testRefreshRevokeSessionDuringRotation is the same race with
// RevokeSession (logout while the session's token is being refreshed).
func testRefreshRevokeSessionDuringRotation(t *testing.T, open Opener) {
	r := migrated(t, open).RefreshTokens()
	sid := func(i int) string { return fmt.Sprintf("sid-race-%d", i) }
	revokeDuringRotation(t, r,
		func(i int, tok model.RefreshToken) model.RefreshToken {
			tok.SessionID, tok.Scopes = sid(i), []string{"openid"}
			return tok
		},
		func(ctx context.Context, i int, family string) error {
			n, err := r.RevokeSession(ctx, sid(i))
			if err == nil && n != 1 {
				err = fmt.Errorf("RevokeSession revoked %d families, want 1", n)
			}
			return err
		})
}

// revokeDuringRotation runs iterations of: create a family; one goroutine
// rotates its chain as fast as it can until a rotation fails, another
// revokes it (revoke) after a few rotations. When revoke has returned no
// token of the family may be active: every token the rotator created must
// read back revoked, and a rotation begun after revoke returned must fail
// with ErrRevoked. On PostgreSQL, a single UPDATE under READ COMMITTED
// misses the token inserted by a rotation it waited for; this catches that
// within the first few iterations. shape adjusts each token of iteration i.
func revokeDuringRotation(t *testing.T, r model.RefreshTokens, shape func(i int, tok model.RefreshToken) model.RefreshToken,
	revoke func(ctx context.Context, i int, family string) error) {
	ctx := t.Context()
	const iterations = 100
	budget := time.Now().Add(600 * time.Millisecond) // keeps the suite fast on a slow machine
	done := 0
	for i := 0; i < iterations && time.Now().Before(budget); i++ {
		done++
		fam := fmt.Sprintf("fam-%d", i)
		token := func(n int) model.RefreshToken { return shape(i, refresh(fmt.Sprintf("chain-%d-%d", i, n), fam)) }
		first := token(0)
		must(t, "Create", r.Create(ctx, first))
		// Revoke after 1..4 rotations, so the revocation meets the chain at
		// different points of a rotation.
		after := 1 + i%4
		var (
			created   = []model.Hash{first.Hash} // tokens whose Rotate succeeded
			failed    model.Hash                 // the token of the Rotate that failed
			rotateErr error
			revoked   atomic.Bool // revoke has returned
			started   = make(chan struct{})
			wg        sync.WaitGroup
		)
		wg.Add(2)
		go func() { // the rotator
			defer wg.Done()
			defer func() {
				select {
				case <-started:
				default:
					close(started) // failed before the revoker was let go
				}
			}()
			cur := first.Hash
			for n := 1; ; n++ {
				// A rotation that begins after revoke returned must fail;
				// one attempt after that is enough to tell.
				last := revoked.Load()
				next := token(n)
				if err := r.Rotate(ctx, cur, next); err != nil {
					failed, rotateErr = next.Hash, err
					return
				}
				created = append(created, next.Hash)
				cur = next.Hash
				if n == after {
					close(started)
				}
				if last {
					return
				}
			}
		}()
		go func() { // the revoker
			defer wg.Done()
			<-started
			if err := revoke(ctx, i, fam); err != nil {
				t.Errorf("iteration %d: revoke: %v", i, err)
			}
			revoked.Store(true)
		}()
		wg.Wait()

		switch {
		case rotateErr == nil:
			t.Errorf("iteration %d: a rotation begun after the family was revoked succeeded", i)
		case !errors.Is(rotateErr, model.ErrRevoked):
			t.Errorf("iteration %d: Rotate failed with %v, want ErrRevoked", i, rotateErr)
		}
		for n, h := range created {
			got, err := r.Get(ctx, h)
			if err != nil {
				t.Errorf("iteration %d: Get token %d: %v", i, n, err)
				continue
			}
			if got.RevokedAt.IsZero() {
				t.Errorf("iteration %d: token %d of %d (revoked after %d rotations) still active after the family was revoked",
					i, n, len(created)-1, after)
			}
		}
		if got, err := r.Get(ctx, failed); err == nil && got.RevokedAt.IsZero() {
			t.Errorf("iteration %d: the failed rotation stored an active token", i)
		} else if err != nil && !errors.Is(err, model.ErrNotFound) {
			t.Errorf("iteration %d: Get token of the failed rotation: %v", i, err)
		}
		if t.Failed() {
			break
		}
	}
	t.Logf("%d iterations", done)
}

// testRefreshRevokeSession: logout revokes the session's families, except
// those with offline_access, and nothing of other sessions.
func testRefreshRevokeSession(t *testing.T, open Opener) {
	ctx := t.Context()
	r := migrated(t, open).RefreshTokens()
	tok := func(secret, family, sid string, scopes ...string) model.RefreshToken {
		x := refresh(secret, family)
		x.SessionID, x.Scopes = sid, scopes
		return x
	}
	a1 := tok("a1", "fam-a", "sid-1", "openid", "profile")
	a2 := tok("a2", "fam-a", "sid-1", "openid", "profile")
	b := tok("b", "fam-b", "sid-1", "openid")
	offline := tok("off", "fam-off", "sid-1", "openid", model.ScopeOfflineAccess)
	other := tok("other", "fam-other", "sid-2", "openid")
	none := tok("none", "fam-none", "", "openid")
	gone := tok("gone", "fam-gone", "sid-1", "openid")
	for _, x := range []model.RefreshToken{a1, b, offline, other, none, gone} {
		must(t, "Create", r.Create(ctx, x))
	}
	must(t, "Rotate", r.Rotate(ctx, a1.Hash, a2))
	must(t, "RevokeFamily", r.RevokeFamily(ctx, "fam-gone"))

	n, err := r.RevokeSession(ctx, "sid-1")
	must(t, "RevokeSession", err)
	equal(t, "families revoked (an already revoked one does not count)", n, 2)
	for _, x := range []model.RefreshToken{a1, a2, b, gone} {
		if got, _ := r.Get(ctx, x.Hash); got.RevokedAt.IsZero() {
			t.Errorf("token %s of the session not revoked", x.FamilyID)
		}
	}
	for _, x := range []model.RefreshToken{offline, other, none} {
		if got, _ := r.Get(ctx, x.Hash); !got.RevokedAt.IsZero() {
			t.Errorf("token %s (session %q, scopes %v) revoked", x.FamilyID, x.SessionID, x.Scopes)
		}
	}
	wantErr(t, "Rotate after RevokeSession", r.Rotate(ctx, a2.Hash, tok("a3", "fam-a", "sid-1", "openid")), model.ErrRevoked)
	must(t, "Rotate offline_access token", r.Rotate(ctx, offline.Hash, tok("off2", "fam-off", "sid-1", "openid", model.ScopeOfflineAccess)))

	n, err = r.RevokeSession(ctx, "sid-1")
	must(t, "RevokeSession again", err)
	equal(t, "families revoked again", n, 0)
	n, err = r.RevokeSession(ctx, "")
	must(t, "RevokeSession empty", err)
	equal(t, "families revoked for an empty session id", n, 0)
	if got, _ := r.Get(ctx, none.Hash); !got.RevokedAt.IsZero() {
		t.Error("RevokeSession(\"\") revoked a token without a session")
	}
	n, err = r.RevokeSession(ctx, "sid-unknown")
	must(t, "RevokeSession unknown", err)
	equal(t, "families revoked for an unknown session", n, 0)
}

func code(secret string) model.AuthCode {
	return model.AuthCode{
		Hash: hashOf(secret), ClientID: "web", RedirectURI: "https://app.example/cb",
		Scopes: []string{"openid", "email"}, Audience: []string{"web"}, Subject: "alice", SessionID: "sid-1",
		Nonce: "n-0S6", CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", CodeChallengeMethod: "S256",
		AuthTime: at(-time.Minute), ACR: "1", AMR: []string{"pwd", "otp"}, Profile: "token",
		AccessTokenJTI: "at-jti", RefreshFamilyID: "fam-1", IssuedAt: at(0), ExpiresAt: at(time.Minute),
		DPoPJKT: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
	}
}

func testAuthCodes(t *testing.T, open Opener) {
	ctx := t.Context()
	c := migrated(t, open).AuthCodes()
	want := code("code-1")
	must(t, "Create", c.Create(ctx, want))
	wantErr(t, "Create duplicate", c.Create(ctx, want), model.ErrConflict)

	got, err := c.Consume(ctx, want.Hash)
	must(t, "Consume", err)
	if got.UsedAt.IsZero() {
		t.Error("Consume: UsedAt not set")
	}
	used := got.UsedAt
	got.UsedAt = time.Time{}
	equal(t, "Consume", got, want)

	got, err = c.Consume(ctx, want.Hash)
	wantErr(t, "Consume again", err, model.ErrReplay)
	if got.AccessTokenJTI != want.AccessTokenJTI || got.RefreshFamilyID != want.RefreshFamilyID || !got.UsedAt.Equal(used) {
		t.Errorf("replayed Consume returned %+v, want the first exchange's record", got)
	}
	_, err = c.Consume(ctx, hashOf("nope"))
	wantErr(t, "Consume missing", err, model.ErrNotFound)
}

func testAuthCodesConcurrent(t *testing.T, open Opener) {
	ctx := t.Context()
	c := migrated(t, open).AuthCodes()
	want := code("race")
	must(t, "Create", c.Create(ctx, want))
	got := make([]model.AuthCode, concurrency)
	errs := parallel(concurrency, func(i int) error {
		var err error
		got[i], err = c.Consume(ctx, want.Hash)
		return err
	})
	exactlyOne(t, "Consume", errs, model.ErrReplay)
	for i := range got {
		if got[i].RefreshFamilyID != want.RefreshFamilyID {
			t.Errorf("Consume %d returned %+v without the record", i, got[i])
		}
	}
}

// A refused exchange leaves the code usable; MaxCodeFailures of them end
// it without marking it used, so no later exchange looks like a replay.
func testAuthCodeFailures(t *testing.T, open Opener) {
	ctx := t.Context()
	c := migrated(t, open).AuthCodes()
	want := code("failing")
	must(t, "Create", c.Create(ctx, want))
	got, err := c.Get(ctx, want.Hash)
	must(t, "Get", err)
	equal(t, "Get", got, want)
	_, err = c.Get(ctx, hashOf("nope"))
	wantErr(t, "Get missing", err, model.ErrNotFound)
	must(t, "Fail missing", c.Fail(ctx, hashOf("nope")))

	for i := 1; i < model.MaxCodeFailures; i++ {
		must(t, "Fail", c.Fail(ctx, want.Hash))
	}
	if got, _ := c.Get(ctx, want.Hash); got.FailedAttempts != model.MaxCodeFailures-1 || !got.UsedAt.IsZero() {
		t.Fatalf("after %d failures: %+v", model.MaxCodeFailures-1, got)
	}
	// One failure short of the limit the code still works, once.
	spare := code("spare")
	must(t, "Create", c.Create(ctx, spare))
	for i := 1; i < model.MaxCodeFailures; i++ {
		must(t, "Fail", c.Fail(ctx, spare.Hash))
	}
	_, err = c.Consume(ctx, spare.Hash)
	must(t, "Consume below the limit", err)
	must(t, "Fail used", c.Fail(ctx, spare.Hash))
	if got, _ := c.Get(ctx, spare.Hash); got.FailedAttempts != model.MaxCodeFailures-1 {
		t.Errorf("Fail counted on a used code: %d", got.FailedAttempts)
	}

	must(t, "Fail", c.Fail(ctx, want.Hash))
	_, err = c.Consume(ctx, want.Hash)
	wantErr(t, "Consume after the limit", err, model.ErrRevoked)
	if got, _ := c.Get(ctx, want.Hash); !got.UsedAt.IsZero() || got.FailedAttempts != model.MaxCodeFailures {
		t.Errorf("code ended by failures: %+v, want unused with %d failures", got, model.MaxCodeFailures)
	}
}

func pushed(requestURI string) model.PushedRequest {
	return model.PushedRequest{
		Hash: hashOf(requestURI), ClientID: "web", Profile: "token",
		Params: url.Values{
			"client_id": {"web"}, "response_type": {"code"}, "redirect_uri": {"https://app.example/cb?tenant=a&x=1"},
			"scope": {"openid email"}, "state": {"st=1&é"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
			"code_challenge_method": {"S256"}, "nonce": {""}, "resource": {"https://a.example", "https://b.example"},
		},
		IssuedAt: at(0), ExpiresAt: at(time.Minute),
	}
}

// A pushed request reads back as pushed, parameters byte for byte, and
// only once: Consume deletes it.
func testPushedRequests(t *testing.T, open Opener) {
	ctx := t.Context()
	p := migrated(t, open).PushedRequests()
	want := pushed("urn:ietf:params:oauth:request_uri:one")
	must(t, "Create", p.Create(ctx, want))
	wantErr(t, "Create duplicate", p.Create(ctx, want), model.ErrConflict)
	if err := p.Create(ctx, model.PushedRequest{Hash: hashOf("x"), ClientID: "web"}); err == nil {
		t.Error("Create without profile and expiry: no error")
	}
	other := pushed("urn:ietf:params:oauth:request_uri:two")
	other.Params = nil
	must(t, "Create without parameters", p.Create(ctx, other))

	got, err := p.Consume(ctx, want.Hash)
	must(t, "Consume", err)
	equal(t, "Consume", got, want)
	_, err = p.Consume(ctx, want.Hash)
	wantErr(t, "Consume again", err, model.ErrNotFound)
	_, err = p.Consume(ctx, hashOf("nope"))
	wantErr(t, "Consume missing", err, model.ErrNotFound)
	// Expiry is the caller's: an expired request is still returned (once).
	got, err = p.Consume(ctx, other.Hash)
	must(t, "Consume other", err)
	if got.ClientID != "web" || len(got.Params) != 0 {
		t.Errorf("Consume other = %+v", got)
	}
}

func testPushedRequestsConcurrent(t *testing.T, open Opener) {
	ctx := t.Context()
	p := migrated(t, open).PushedRequests()
	want := pushed("urn:ietf:params:oauth:request_uri:race")
	must(t, "Create", p.Create(ctx, want))
	got := make([]model.PushedRequest, concurrency)
	errs := parallel(concurrency, func(i int) error {
		var err error
		got[i], err = p.Consume(ctx, want.Hash)
		return err
	})
	exactlyOne(t, "Consume", errs, model.ErrNotFound)
	for i, err := range errs {
		if err == nil {
			equal(t, "the winner's record", got[i], want)
		}
	}
}

func device(code string) model.DeviceCode {
	return model.DeviceCode{
		Hash: hashOf(code), UserCode: hashOf("user-" + code), ClientID: "tv", Profile: "token",
		Scopes: []string{"openid", "offline_access"}, Audience: []string{"https://api.example"}, Status: model.DevicePending,
		Interval: 5 * time.Second, IssuedAt: at(0), ExpiresAt: at(10 * time.Minute),
	}
}

// A device request is found by either code, decided once while pending
// and unexpired, polled with a compare-and-set on its poll count, and
// consumed once decided.
func testDeviceCodes(t *testing.T, open Opener) {
	ctx := t.Context()
	d := migrated(t, open).DeviceCodes()
	want := device("dc-1")
	must(t, "Create", d.Create(ctx, want))
	wantErr(t, "Create duplicate", d.Create(ctx, want), model.ErrConflict)
	sameUser := device("dc-2")
	sameUser.UserCode = want.UserCode
	wantErr(t, "Create with a taken user code", d.Create(ctx, sameUser), model.ErrConflict)
	if err := d.Create(ctx, model.DeviceCode{Hash: hashOf("x")}); err == nil {
		t.Error("Create without user code: no error")
	}
	got, err := d.Get(ctx, want.Hash)
	must(t, "Get", err)
	equal(t, "Get", got, want)
	got, err = d.ByUserCode(ctx, want.UserCode)
	must(t, "ByUserCode", err)
	equal(t, "ByUserCode", got, want)
	_, err = d.ByUserCode(ctx, hashOf("nope"))
	wantErr(t, "ByUserCode missing", err, model.ErrNotFound)

	_, err = d.Consume(ctx, want.Hash)
	wantErr(t, "Consume pending", err, model.ErrNotFound)

	ok, err := d.Poll(ctx, want.Hash, 0, at(time.Second), 10*time.Second)
	must(t, "Poll", err)
	if again, _ := d.Poll(ctx, want.Hash, 0, at(2*time.Second), 10*time.Second); !ok || again {
		t.Errorf("Poll with count 0 twice: %v then %v, want true then false", ok, again)
	}
	got, _ = d.Get(ctx, want.Hash)
	if got.Polls != 1 || !got.LastPolledAt.Equal(at(time.Second)) || got.Interval != 10*time.Second {
		t.Errorf("after a poll: %+v", got)
	}

	decision := want
	decision.Status, decision.Subject, decision.SessionID, decision.AuthTime, decision.ACR, decision.AMR =
		model.DeviceApproved, "u1", "sid-1", at(time.Minute), "urn:acr", []string{"pwd"}
	wantErr(t, "Decide after expiry", d.Decide(ctx, decision, at(time.Hour)), model.ErrNotFound)
	must(t, "Decide", d.Decide(ctx, decision, at(time.Minute)))
	denied := decision
	denied.Status = model.DeviceDenied
	wantErr(t, "Decide twice", d.Decide(ctx, denied, at(time.Minute)), model.ErrNotFound)

	got, err = d.Consume(ctx, want.Hash)
	must(t, "Consume", err)
	if got.Status != model.DeviceApproved || got.Subject != "u1" || got.SessionID != "sid-1" || !got.AuthTime.Equal(at(time.Minute)) ||
		got.ACR != "urn:acr" || len(got.AMR) != 1 || len(got.Scopes) != 2 {
		t.Errorf("Consume = %+v", got)
	}
	_, err = d.Consume(ctx, want.Hash)
	wantErr(t, "Consume again", err, model.ErrNotFound)
}

func testDeviceCodesConcurrent(t *testing.T, open Opener) {
	ctx := t.Context()
	d := migrated(t, open).DeviceCodes()
	want := device("dc-race")
	must(t, "Create", d.Create(ctx, want))
	won := make([]bool, concurrency)
	errs := parallel(concurrency, func(i int) error {
		var err error
		won[i], err = d.Poll(ctx, want.Hash, 0, at(time.Second), want.Interval)
		return err
	})
	n := 0
	for i, err := range errs {
		must(t, "Poll", err)
		if won[i] {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d concurrent polls recorded from one count, want 1", n)
	}
	decision := want
	decision.Status = model.DeviceDenied
	must(t, "Decide", d.Decide(ctx, decision, at(time.Second)))
	errs = parallel(concurrency, func(int) error { _, err := d.Consume(ctx, want.Hash); return err })
	exactlyOne(t, "Consume", errs, model.ErrNotFound)
}

func testSessions(t *testing.T, open Opener) {
	ctx := t.Context()
	st := migrated(t, open)
	s := st.Sessions()
	want := model.Session{
		Hash: hashOf("cookie-1"), ID: "sid-1", UserID: "u1", Zone: "local", AuthTime: at(0), ACR: "1",
		AMR: []string{"pwd"}, IdleTimeout: time.Hour, CreatedAt: at(0), LastSeenAt: at(0), ExpiresAt: at(12 * time.Hour),
	}
	must(t, "Create", s.Create(ctx, want))
	got, err := s.Get(ctx, want.Hash)
	must(t, "Get", err)
	equal(t, "Get", got, want)
	equal(t, "Expiry", got.Expiry(), at(time.Hour))

	wantErr(t, "Create duplicate hash", s.Create(ctx, want), model.ErrConflict)
	dupID := want
	dupID.Hash = hashOf("cookie-2")
	wantErr(t, "Create duplicate id", s.Create(ctx, dupID), model.ErrConflict)

	must(t, "Touch", s.Touch(ctx, want.Hash, at(30*time.Minute)))
	got, err = s.Get(ctx, want.Hash)
	must(t, "Get touched", err)
	equal(t, "LastSeenAt", got.LastSeenAt, at(30*time.Minute))
	equal(t, "Expiry after Touch", got.Expiry(), at(90*time.Minute))
	// The idle deadline moved, so GC just past the old one keeps it.
	if _, err := st.GC(ctx, at(61*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, want.Hash); err != nil {
		t.Fatalf("touched session collected: %v", err)
	}
	wantErr(t, "Touch missing", s.Touch(ctx, hashOf("nope"), at(0)), model.ErrNotFound)

	exists := func(id string) bool {
		t.Helper()
		ok, err := s.Exists(ctx, id)
		must(t, "Exists", err)
		return ok
	}
	if !exists("sid-1") || exists("sid-2") || exists("") {
		t.Errorf("Exists: sid-1 %v (want true), sid-2 %v, empty %v (want false)", exists("sid-1"), exists("sid-2"), exists(""))
	}

	must(t, "Delete", s.Delete(ctx, want.Hash))
	_, err = s.Get(ctx, want.Hash)
	wantErr(t, "Get deleted", err, model.ErrNotFound)
	if exists("sid-1") {
		t.Error("Exists after Delete: true")
	}
	must(t, "Delete again", s.Delete(ctx, want.Hash))
}

func testUsers(t *testing.T, open Opener) {
	ctx := t.Context()
	u := migrated(t, open).Users()
	alice := model.User{
		ID: "u1", Zone: "local", Username: "alice", PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA",
		Claims: map[string]any{"name": "Alice", "email": "alice@example.com", "email_verified": true},
		Status: model.UserActive, CreatedAt: at(0), UpdatedAt: at(0), Version: 1,
	}
	must(t, "Create", u.Create(ctx, alice))
	got, err := u.Get(ctx, "u1")
	must(t, "Get", err)
	equal(t, "Get", got, alice)
	got, err = u.GetByUsername(ctx, "local", "alice")
	must(t, "GetByUsername", err)
	equal(t, "GetByUsername", got, alice)
	_, err = u.GetByUsername(ctx, "eu", "alice")
	wantErr(t, "GetByUsername other zone", err, model.ErrNotFound)
	_, err = u.Get(ctx, "nope")
	wantErr(t, "Get missing", err, model.ErrNotFound)

	dup := alice
	dup.ID = "u2"
	wantErr(t, "Create duplicate username", u.Create(ctx, dup), model.ErrConflict)
	dup.Username = "alice2"
	dup.ID = "u1"
	wantErr(t, "Create duplicate id", u.Create(ctx, dup), model.ErrConflict)
	otherZone := alice
	otherZone.ID, otherZone.Zone = "u3", "eu"
	must(t, "Create same username in another zone", u.Create(ctx, otherZone))
	bob := model.User{ID: "u4", Zone: "local", Username: "bob", Status: model.UserActive}
	must(t, "Create bob", u.Create(ctx, bob))

	before := time.Now().Add(-time.Second)
	must(t, "Update", u.Update(ctx, "u1", func(old model.User) (model.User, error) {
		old.Status = model.UserLocked
		old.Claims["name"] = "Alice A."
		old.ID = "changed"            // ignored
		old.CreatedAt = at(time.Hour) // ignored
		return old, nil
	}))
	got, err = u.Get(ctx, "u1")
	must(t, "Get updated", err)
	if got.Status != model.UserLocked || got.Claims["name"] != "Alice A." || !got.CreatedAt.Equal(alice.CreatedAt) ||
		got.UpdatedAt.Before(before) {
		t.Errorf("after Update: %+v", got)
	}

	boom := errors.New("boom")
	if err := u.Update(ctx, "u1", func(old model.User) (model.User, error) {
		old.Status = model.UserActive
		return old, boom
	}); err != boom {
		t.Errorf("Update returned %v, want fn's error as is", err)
	}
	if got, _ := u.Get(ctx, "u1"); got.Status != model.UserLocked {
		t.Error("failed Update changed the user")
	}
	wantErr(t, "Update missing", u.Update(ctx, "nope", func(o model.User) (model.User, error) { return o, nil }),
		model.ErrNotFound)
	wantErr(t, "Update to a taken username", u.Update(ctx, "u4", func(o model.User) (model.User, error) {
		o.Username = "alice"
		return o, nil
	}), model.ErrConflict)
}

func testUsersUpdateConcurrent(t *testing.T, open Opener) {
	ctx := t.Context()
	u := migrated(t, open).Users()
	must(t, "Create", u.Create(ctx, model.User{ID: "u1", Zone: "z", Username: "c", Claims: map[string]any{"n": 0.0}}))
	errs := parallel(concurrency, func(int) error {
		return u.Update(ctx, "u1", func(old model.User) (model.User, error) {
			old.Claims["n"] = old.Claims["n"].(float64) + 1
			return old, nil
		})
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("Update %d: %v", i, err)
		}
	}
	got, err := u.Get(ctx, "u1")
	must(t, "Get", err)
	if got.Claims["n"] != float64(concurrency) {
		t.Errorf("counter = %v after %d concurrent increments: an update was lost", got.Claims["n"], concurrency)
	}
}

func testAudit(t *testing.T, open Opener) {
	ctx := t.Context()
	a := migrated(t, open).Audit()
	events := []model.AuditEvent{
		{Time: at(0), Type: "login.failure", Zone: "local", Subject: "alice", IP: "192.0.2.1",
			Details: map[string]any{"reason": "bad password"}},
		{Time: at(time.Second), Type: "login.success", Zone: "local", Subject: "alice", ClientID: "web", IP: "192.0.2.1"},
		{Time: at(2 * time.Second), Type: "login.failure", Zone: "local", Subject: "bob", IP: "192.0.2.2"},
	}
	for _, e := range events {
		must(t, "Append", a.Append(ctx, e))
	}
	all, err := a.List(ctx, model.AuditQuery{})
	must(t, "List", err)
	if len(all) != 3 {
		t.Fatalf("List returned %d events, want 3", len(all))
	}
	for i := range all {
		if all[i].ID == 0 {
			t.Errorf("event %d: no id assigned", i)
		}
		e := all[i]
		e.ID = 0
		equal(t, fmt.Sprintf("event %d", i), e, events[i])
	}
	sel := func(q model.AuditQuery) []string {
		t.Helper()
		got, err := a.List(ctx, q)
		must(t, "List", err)
		var s []string
		for _, e := range got {
			s = append(s, e.Type+"/"+e.Subject)
		}
		return s
	}
	equal(t, "by subject", sel(model.AuditQuery{Subject: "alice"}), []string{"login.failure/alice", "login.success/alice"})
	equal(t, "by type", sel(model.AuditQuery{Type: "login.failure"}), []string{"login.failure/alice", "login.failure/bob"})
	equal(t, "since", sel(model.AuditQuery{Since: at(time.Second)}), []string{"login.success/alice", "login.failure/bob"})
	equal(t, "limit", sel(model.AuditQuery{Limit: 1}), []string{"login.failure/alice"})
	equal(t, "type and subject", sel(model.AuditQuery{Type: "login.failure", Subject: "bob"}), []string{"login.failure/bob"})
}

func testNodes(t *testing.T, open Opener) {
	ctx := t.Context()
	n := migrated(t, open).Nodes()
	b := model.NodeStatus{ID: "node-b", Role: "default", Zone: "local", BinaryVersion: "1.0.0", ConfigVersion: "7",
		ConfigHash: "abc", StartedAt: at(0), HeartbeatAt: at(time.Second), ExpiresAt: at(time.Hour),
		Details: map[string]any{"last_reload_error": "none"}}
	a := model.NodeStatus{ID: "node-a", Role: "eu-edge", Zone: "eu", StartedAt: at(0), HeartbeatAt: at(0), ExpiresAt: at(time.Hour)}
	must(t, "Heartbeat b", n.Heartbeat(ctx, b))
	must(t, "Heartbeat a", n.Heartbeat(ctx, a))
	b.HeartbeatAt, b.ConfigVersion, b.Details = at(10*time.Second), "8", nil
	must(t, "Heartbeat b again", n.Heartbeat(ctx, b))
	got, err := n.List(ctx)
	must(t, "List", err)
	equal(t, "List", got, []model.NodeStatus{a, b})
}

// testGC puts one expired and one live row in every aggregate and checks
// that GC removes exactly the expired ones, the boundary (expiry == now)
// included.
func testGC(t *testing.T, open Opener) {
	ctx := t.Context()
	st := migrated(t, open)
	now := at(time.Hour)
	expired, live := now, now.Add(time.Microsecond)

	at1 := model.AccessToken{Hash: hashOf("at-old"), JTI: "j1", ExpiresAt: expired}
	at2 := model.AccessToken{Hash: hashOf("at-new"), JTI: "j2", ExpiresAt: live}
	must(t, "AccessTokens", errors.Join(st.AccessTokens().Create(ctx, at1), st.AccessTokens().Create(ctx, at2)))
	must(t, "Revocations", errors.Join(st.Revocations().Revoke(ctx, "r-old", expired), st.Revocations().Revoke(ctx, "r-new", live)))
	must(t, "Assertions", errors.Join(st.Assertions().Use(ctx, "c", "a-old", expired), st.Assertions().Use(ctx, "c", "a-new", live)))
	must(t, "DPoPProofs", errors.Join(st.DPoPProofs().Use(ctx, "k", "p-old", expired), st.DPoPProofs().Use(ctx, "k", "p-new", live)))
	rt1, rt2 := refresh("rt-old", "f1"), refresh("rt-new", "f2")
	rt1.ExpiresAt, rt2.ExpiresAt = expired, live
	must(t, "RefreshTokens", errors.Join(st.RefreshTokens().Create(ctx, rt1), st.RefreshTokens().Create(ctx, rt2)))
	// A used but unexpired refresh token stays, for reuse detection.
	rt3 := refresh("rt-next", "f2")
	rt3.ExpiresAt = live
	must(t, "Rotate", st.RefreshTokens().Rotate(ctx, rt2.Hash, rt3))
	c1, c2 := code("c-old"), code("c-new")
	c1.ExpiresAt, c2.ExpiresAt = expired, live
	must(t, "AuthCodes", errors.Join(st.AuthCodes().Create(ctx, c1), st.AuthCodes().Create(ctx, c2)))
	pr1, pr2 := pushed("pr-old"), pushed("pr-new")
	pr1.ExpiresAt, pr2.ExpiresAt = expired, live
	must(t, "PushedRequests", errors.Join(st.PushedRequests().Create(ctx, pr1), st.PushedRequests().Create(ctx, pr2)))
	dc1, dc2 := device("dc-old"), device("dc-new")
	dc1.ExpiresAt, dc2.ExpiresAt = expired, live
	must(t, "DeviceCodes", errors.Join(st.DeviceCodes().Create(ctx, dc1), st.DeviceCodes().Create(ctx, dc2)))
	s1 := model.Session{Hash: hashOf("s-abs"), ID: "s1", ExpiresAt: expired}
	s2 := model.Session{Hash: hashOf("s-idle"), ID: "s2", ExpiresAt: now.Add(time.Hour),
		IdleTimeout: time.Minute, LastSeenAt: now.Add(-time.Minute)}
	s3 := model.Session{Hash: hashOf("s-live"), ID: "s3", ExpiresAt: now.Add(time.Hour),
		IdleTimeout: time.Minute, LastSeenAt: now.Add(-time.Second)}
	must(t, "Sessions", errors.Join(st.Sessions().Create(ctx, s1), st.Sessions().Create(ctx, s2), st.Sessions().Create(ctx, s3)))
	must(t, "Nodes", errors.Join(st.Nodes().Heartbeat(ctx, model.NodeStatus{ID: "gone", ExpiresAt: expired}),
		st.Nodes().Heartbeat(ctx, model.NodeStatus{ID: "up", ExpiresAt: live})))
	must(t, "Users", st.Users().Create(ctx, model.User{ID: "u", Zone: "z", Username: "u"}))
	must(t, "Audit", st.Audit().Append(ctx, model.AuditEvent{Time: at(-1000 * time.Hour), Type: "old"}))

	stats, err := st.GC(ctx, now)
	must(t, "GC", err)
	equal(t, "GC stats", stats, model.GCStats{AccessTokens: 1, Revocations: 1, Assertions: 1, RefreshTokens: 1,
		AuthCodes: 1, Sessions: 2, PushedRequests: 1, DeviceCodes: 1, DPoPProofs: 1, Nodes: 1})
	if stats.Total() != 11 {
		t.Errorf("Total = %d, want 11", stats.Total())
	}

	gone := func(what string, err error) {
		t.Helper()
		wantErr(t, what+" after GC", err, model.ErrNotFound)
	}
	kept := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s after GC: %v", what, err)
		}
	}
	_, err = st.AccessTokens().Get(ctx, at1.Hash)
	gone("expired access token", err)
	_, err = st.AccessTokens().Get(ctx, at2.Hash)
	kept("live access token", err)
	if r, _ := st.Revocations().IsRevoked(ctx, "r-old"); r {
		t.Error("expired revocation kept")
	}
	if r, _ := st.Revocations().IsRevoked(ctx, "r-new"); !r {
		t.Error("live revocation collected")
	}
	kept("expired assertion jti reusable", st.Assertions().Use(ctx, "c", "a-old", live))
	wantErr(t, "live assertion jti", st.Assertions().Use(ctx, "c", "a-new", live), model.ErrReplay)
	kept("expired dpop proof jti reusable", st.DPoPProofs().Use(ctx, "k", "p-old", live))
	wantErr(t, "live dpop proof jti", st.DPoPProofs().Use(ctx, "k", "p-new", live), model.ErrReplay)
	_, err = st.RefreshTokens().Get(ctx, rt1.Hash)
	gone("expired refresh token", err)
	_, err = st.RefreshTokens().Get(ctx, rt2.Hash)
	kept("used refresh token", err)
	_, err = st.RefreshTokens().Get(ctx, rt3.Hash)
	kept("live refresh token", err)
	_, err = st.AuthCodes().Consume(ctx, c1.Hash)
	gone("expired code", err)
	_, err = st.AuthCodes().Consume(ctx, c2.Hash)
	kept("live code", err)
	_, err = st.PushedRequests().Consume(ctx, pr1.Hash)
	gone("expired pushed request", err)
	_, err = st.PushedRequests().Consume(ctx, pr2.Hash)
	kept("live pushed request", err)
	_, err = st.DeviceCodes().Get(ctx, dc1.Hash)
	gone("expired device code", err)
	_, err = st.DeviceCodes().Get(ctx, dc2.Hash)
	kept("live device code", err)
	_, err = st.Sessions().Get(ctx, s1.Hash)
	gone("session past absolute expiry", err)
	_, err = st.Sessions().Get(ctx, s2.Hash)
	gone("idle session", err)
	_, err = st.Sessions().Get(ctx, s3.Hash)
	kept("live session", err)
	nodes, err := st.Nodes().List(ctx)
	must(t, "List nodes", err)
	if len(nodes) != 1 || nodes[0].ID != "up" {
		t.Errorf("nodes after GC = %+v, want only up", nodes)
	}
	_, err = st.Users().Get(ctx, "u")
	kept("user", err)
	if ev, _ := st.Audit().List(ctx, model.AuditQuery{}); len(ev) != 1 {
		t.Errorf("audit after GC has %d events, want 1 (GC never deletes audit)", len(ev))
	}

	stats, err = st.GC(ctx, now)
	must(t, "GC again", err)
	equal(t, "second GC", stats, model.GCStats{})
}

// benchParallelism × GOMAXPROCS goroutines call the store at once: 64 on
// the 2-core CI machine, the load benchmark's concurrency. With the default
// (one per core) a round-trip-bound store only ever sees two callers.
const benchParallelism = 32

// BenchCreateAccessToken measures opaque token issuance (one insert).
func BenchCreateAccessToken(b *testing.B, s model.Store) {
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	at := s.AccessTokens()
	var seq atomic.Int64
	prefix := model.NewID()
	now := time.Now()
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("%s-%d", prefix, seq.Add(1))
			err := at.Create(ctx, model.AccessToken{Hash: model.HashSecret(id), JTI: id, ClientID: "bench",
				Subject: "bench", Scopes: []string{"invoices:read"}, Audience: []string{"billing"},
				Profile: "token", IssuedAt: now, ExpiresAt: now.Add(5 * time.Minute)})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchIsRevoked measures the revocation check of JWT introspection
// against a table of revokedRows, half the lookups hitting.
func BenchIsRevoked(b *testing.B, s model.Store) {
	const revokedRows = 10000
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	r := s.Revocations()
	exp := time.Now().Add(time.Hour)
	const loaders = 32 // concurrent setup: PostgreSQL groups the commits
	for _, err := range parallel(loaders, func(g int) error {
		for i := g; i < revokedRows; i += loaders {
			if err := r.Revoke(ctx, fmt.Sprintf("jti-%d", i), exp); err != nil {
				return err
			}
		}
		return nil
	}) {
		if err != nil {
			b.Fatal(err)
		}
	}
	var seq atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1) % (2 * revokedRows)
			revoked, err := r.IsRevoked(ctx, fmt.Sprintf("jti-%d", i))
			if err != nil {
				b.Error(err)
				return
			}
			if revoked != (i < revokedRows) {
				b.Errorf("IsRevoked(jti-%d) = %v", i, revoked)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}
