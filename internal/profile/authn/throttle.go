package authn

import (
	"context"
	"fmt"
	goruntime "runtime"
	"sync"
	"time"

	"github.com/keygate/keygate/internal/storage"
)

// Audit event types written by the authentication profile.
const (
	AuditLoginSuccess = "login_success"
	AuditLoginFailure = "login_failure"
	AuditLockout      = "lockout"
)

// IPLimiter counts failed logins per client IP, in memory, on one node: an
// attacker spreading attempts over n nodes gets n times the budget. Share
// one IPLimiter across reloads (runtime.Deps) so a reload does not reset
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
// cores are, whatever the number of profiles or runtimes.
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

func trim(f []time.Time, since time.Time) []time.Time {
	i := 0
	for i < len(f) && f[i].Before(since) {
		i++
	}
	return f[i:]
}

// accountWait returns how long the account username must wait before its
// next attempt (0: not locked). It counts login_failure events of the zone
// since the later of window ago and the last successful login, from the
// audit log, so every node of the zone sees the same count.
func (p *Profile) accountWait(ctx context.Context, username string, now time.Time) (time.Duration, error) {
	since := now.Add(-p.lockout.window)
	audit := p.store.Audit()
	limit := 4*p.lockout.max + 16
	succ, err := audit.List(ctx, storage.AuditQuery{Type: AuditLoginSuccess, Subject: username, Since: since, Limit: limit})
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	for _, e := range succ {
		if e.Zone == p.zone && e.Time.After(since) {
			since = e.Time
		}
	}
	fails, err := audit.List(ctx, storage.AuditQuery{Type: AuditLoginFailure, Subject: username, Since: since, Limit: limit})
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	var times []time.Time
	for _, e := range fails {
		if e.Zone == p.zone && !e.Time.Before(since) {
			times = append(times, e.Time)
		}
	}
	if len(times) < p.lockout.max {
		return 0, nil
	}
	wait := times[len(times)-p.lockout.max].Add(p.lockout.window).Sub(now)
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
