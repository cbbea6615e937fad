package authn

import (
	"context"
	"fmt"
	goruntime "runtime"
	"slices"
	"sync"
	"time"

	"github.com/keygate/keygate/internal/storage/model"
)

// Audit event types written by the authentication profile.
const (
	AuditLoginSuccess = "login_success"
	AuditLoginFailure = "login_failure"
	AuditLockout      = "lockout"
	// AuditLoginAttempt is written before a password is checked, and is
	// what the lockout counts: a password is only ever checked once its
	// attempt is on record, so a database that refuses writes cannot
	// give an attacker unlimited, uncounted guesses.
	AuditLoginAttempt = "login_attempt"
)

// IPLimiter counts failed logins per client IP, in memory, on one node: an
// attacker spreading attempts over n nodes gets n times the budget. Share
// one IPLimiter across reloads (served.Deps) so a reload does not reset
// it. Safe for concurrent use.
type IPLimiter struct {
	mu        sync.Mutex
	failures  map[string][]time.Time // oldest first, within the last window seen
	lastSweep time.Time
}

// maxTrackedIPs bounds the limiter's memory; past it, the oldest state is
// swept early.
const maxTrackedIPs = 100_000

// NewIPLimiter returns an empty limiter.
func NewIPLimiter() *IPLimiter { return &IPLimiter{failures: map[string][]time.Time{}} }

// Fail records a failed login from ip.
func (l *IPLimiter) Fail(ip string, max int, window time.Duration, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.record(ip, max, window, now)
}

// record appends a failure at now; l.mu must be held.
func (l *IPLimiter) record(ip string, max int, window time.Duration, now time.Time) {
	f := append(trim(l.failures[ip], now.Add(-window)), now)
	if len(f) > max {
		f = f[len(f)-max:] // only the newest max decide the block
	}
	l.failures[ip] = f
	if now.Sub(l.lastSweep) > time.Minute || len(l.failures) > maxTrackedIPs {
		l.lastSweep = now
		for k, v := range l.failures {
			if v = trim(v, now.Add(-window)); len(v) == 0 {
				delete(l.failures, k)
			} else {
				l.failures[k] = v
			}
		}
	}
}

// Attempt atomically checks ip against max failures per window and, if
// it is not blocked, records this attempt as a failure up front (Forgive
// takes it back on success), so parallel guesses cannot all slip past the
// check before any failure is counted. It returns the wait when blocked.
func (l *IPLimiter) Attempt(ip string, max int, window time.Duration, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Check and record under one lock: between the two, a parallel guess
	// would see the old count.
	if f := trim(l.failures[ip], now.Add(-window)); len(f) >= max {
		return f[len(f)-max].Add(window).Sub(now)
	}
	l.record(ip, max, window, now)
	return 0
}

// Forgive removes the attempt recorded at `at` (by Fail before a password
// check) once the check succeeded.
func (l *IPLimiter) Forgive(ip string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.failures[ip]
	for i := len(f) - 1; i >= 0; i-- {
		if f[i].Equal(at) {
			l.failures[ip] = append(f[:i:i], f[i+1:]...)
			return
		}
	}
}

// hashSlots bounds the password checks running at once in this process.
// Each argon2id check holds its memory cost (19 MiB by default) and a core,
// so unbounded parallel logins could exhaust memory; beyond a few per core
// more checks only queue. It is process-wide on purpose: the memory and the
// cores are, whatever the number of profiles or served sets.
var hashSlots = make(chan struct{}, 2*goruntime.GOMAXPROCS(0))

// hashSlotWait is how long a login waits for a slot before it is told to
// try again.
const hashSlotWait = 3 * time.Second

// acquireHashSlot waits for a slot; false means the node is saturated.
func acquireHashSlot(ctx context.Context) (release func(), ok bool) {
	t := time.NewTimer(hashSlotWait)
	defer t.Stop()
	select {
	case hashSlots <- struct{}{}:
		return func() { <-hashSlots }, true
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, false
}

// inFlight counts, per key, the attempts that have started and are not
// decided yet. Safe for concurrent use.
type inFlight struct {
	mu  sync.Mutex
	n   map[string]int // only keys with attempts in flight
	max int            // distinct keys tracked at most
}

// acquire counts one more attempt for key and returns how many are in
// flight for it, this one included. ok is false, and nothing is counted,
// when max other keys are in flight: memory stays bounded.
func (f *inFlight) acquire(key string) (n int, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n = f.n[key]
	if n == 0 && len(f.n) >= f.max {
		return 0, false
	}
	f.n[key] = n + 1
	return n + 1, true
}

// release takes back one attempt counted by acquire.
func (f *inFlight) release(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.n[key]; n > 1 {
		f.n[key] = n - 1
	} else {
		delete(f.n, key)
	}
}

// accountsInFlight counts, per zone and username, the password logins
// between their account check and the moment their outcome is decided (a
// success, or a failure written to the audit log). accountWait counts
// them with the audited failures, so parallel guesses at one account
// cannot all pass the check before any failure is written: on one node,
// in-flight attempts plus audited failures never exceed max-failures.
//
// It is process-wide on purpose, like hashSlots: attempts in flight are a
// property of the process, so every profile and served set of the node must
// see the same ones (a request still served by a retired set counts
// for the set that replaced it).
//
// Across nodes it is not shared: each node admits up to max-failures
// minus the audited failures at once, so a burst spread over N nodes can
// have up to N × (max-failures − audited failures) passwords checked
// before the failures are written, at most (N − 1) × max-failures beyond
// the limit per window; once written, every node of the zone sees them.
var accountsInFlight = &inFlight{n: map[string]int{}, max: maxTrackedIPs}

func trim(f []time.Time, since time.Time) []time.Time {
	i := 0
	for i < len(f) && f[i].Before(since) {
		i++
	}
	return f[i:]
}

// accountWait returns how long the account username must wait before its
// next attempt (0: not locked). It counts login_attempt events of the zone
// after the later of window ago and the last successful login, from the
// audit log, so every node of the zone sees the same count, plus pending:
// this node's other attempts at the account still in flight, counted as
// failing now (see accountsInFlight).
func (p *Profile) accountWait(ctx context.Context, username string, now time.Time, pending int) (time.Duration, error) {
	since := now.Add(-p.lockout.window)
	audit := p.store.Audit()
	limit := 4*p.lockout.max + 16
	// The newest events first: the limit must keep the latest success and
	// the latest attempts, or a busy account's old rows would push them out.
	succ, err := audit.List(ctx, model.AuditQuery{Type: AuditLoginSuccess, Subject: username, Since: since, Limit: limit, Newest: true})
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	for _, e := range succ {
		if e.Zone == p.zone && e.Time.After(since) {
			since = e.Time
		}
	}
	fails, err := audit.List(ctx, model.AuditQuery{Type: AuditLoginAttempt, Subject: username, Since: since, Limit: limit, Newest: true})
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	slices.Reverse(fails) // oldest first, as the count below reads them
	var times []time.Time
	for _, e := range fails {
		// An attempt recorded at the instant of a success is that success's own.
		if e.Zone == p.zone && !e.Time.Before(since) && (len(succ) == 0 || e.Time.After(since)) {
			times = append(times, e.Time)
		}
	}
	n := len(times) + pending
	if n < p.lockout.max {
		return 0, nil
	}
	// The oldest of the newest max counted attempts leaves the window
	// first; pending ones count as failing now.
	oldest := now
	if i := n - p.lockout.max; i < len(times) {
		oldest = times[i]
	}
	wait := oldest.Add(p.lockout.window).Sub(now)
	return max(wait, time.Second), nil
}

// lockoutMessage is the text shown to a throttled user.
func lockoutMessage(wait time.Duration) string {
	m := int((wait + time.Minute - 1) / time.Minute)
	if m <= 1 {
		return "Too many failed sign-in attempts. Try again in 1 minute."
	}
	return fmt.Sprintf("Too many failed sign-in attempts. Try again in %d minutes.", m)
}
