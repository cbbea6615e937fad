// Package audit writes security events twice: to the audit table of the
// zone they concern, which `keygate audit` and the user-management
// profile's AuditEvents endpoint read back, and to the structured log,
// which is what an operator's log pipeline sees first. Events carry ids,
// names and reasons; a caller never puts a secret, password or token
// value in one.
package audit

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/keygate/keygate/internal/storage/model"
)

// The event types written outside the authentication and user-management
// profiles (those name their own, next to the code that writes them).
const (
	CodeReuse     = "code_reuse"
	RefreshReuse  = "refresh_token_reuse"
	FamilyRevoked = "family_revoked"
	Logout        = "logout"
	TokenExchange = "token_exchange"
)

// quiet types are bookkeeping (a password check about to run, counted
// for the lockout): in the table, but only at debug level in the log.
var quiet = map[string]bool{"login_attempt": true}

// loud types are an attack or its consequence: logged as warnings.
var loud = map[string]bool{CodeReuse: true, RefreshReuse: true, "lockout": true}

// Counter counts events by type (keygate_audit_events_total), for the
// dashboards and alerts on sign-ins, lockouts and token reuse.
type Counter interface{ AuditEvent(typ string) }

// Trail writes a zone's events. The zero Zone leaves each event's own.
type Trail struct {
	Store   model.Store
	Zone    string
	Logger  *slog.Logger
	Metrics Counter          // may be nil
	Now     func() time.Time // default time.Now
}

// Record appends ev (filling its zone and time) and logs it. The error is
// the store's: most callers log it and go on, the lockout's bookkeeping
// refuses the sign-in it could not count.
func (t Trail) Record(ctx context.Context, ev model.AuditEvent) error {
	if ev.Zone == "" {
		ev.Zone = t.Zone
	}
	if ev.Time.IsZero() {
		now := time.Now
		if t.Now != nil {
			now = t.Now
		}
		ev.Time = now().UTC()
	}
	var err error
	if t.Store != nil {
		err = t.Store.Audit().Append(ctx, ev)
	}
	if t.Metrics != nil {
		t.Metrics.AuditEvent(ev.Type)
	}
	if t.Logger != nil {
		t.log(ctx, ev, err)
	}
	return err
}

func (t Trail) log(ctx context.Context, ev model.AuditEvent, err error) {
	level := slog.LevelInfo
	switch {
	case err != nil:
		level = slog.LevelError
	case quiet[ev.Type]:
		level = slog.LevelDebug
	case loud[ev.Type]:
		level = slog.LevelWarn
	}
	if !t.Logger.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 8+len(ev.Details))
	attrs = append(attrs, slog.Bool("audit", true), slog.String("type", ev.Type), slog.String("zone", ev.Zone))
	for _, a := range [...]slog.Attr{slog.String("subject", ev.Subject), slog.String("client", ev.ClientID), slog.String("ip", ev.IP)} {
		if a.Value.String() != "" {
			attrs = append(attrs, a)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(ev.Details)) {
		attrs = append(attrs, slog.Any(k, ev.Details[k]))
	}
	msg := "audit: " + ev.Type
	if err != nil {
		msg = "audit: event not written to the data source"
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	t.Logger.LogAttrs(ctx, level, msg, attrs...)
}
