package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/datasource"
	"github.com/keygate/keygate/internal/storage/model"
)

// runAudit: `keygate audit --zone Z [--since T] [--until T] [--type T]
// [--user U] [--client C] [--limit N] [--json]` lists the zone's audit
// events, oldest first. T is an RFC 3339 time or a duration before now
// (24h). Exit 0 (also with no events), 1 when the data source cannot be
// read, 2 on usage errors.
func runAudit(args, environ []string, stdout, stderr io.Writer) (int, error) {
	s, fs, cf, err := configFlagSet("keygate audit", environ, stderr)
	if err != nil {
		return exitFailure, err
	}
	var (
		role, zone, since, until string
		q                        model.AuditQuery
		asJSON                   bool
	)
	fs.StringVar(&role, "role", "", "a service role in the zone (default: the first role whose zone is --zone)")
	fs.StringVar(&zone, "zone", "", "the zone whose audit trail to read (required)")
	fs.StringVar(&since, "since", "", "events at or after this time (RFC 3339, or a duration before now such as 24h)")
	fs.StringVar(&until, "until", "", "events before this time (same forms)")
	fs.StringVar(&q.Type, "type", "", "only events of this type (login_success, scim_user_created, …)")
	fs.StringVar(&q.Subject, "user", "", "only events about this user id")
	fs.StringVar(&q.ClientID, "client", "", "only events of this client")
	fs.IntVar(&q.Limit, "limit", 100, "at most this many events")
	fs.BoolVar(&asJSON, "json", false, "one JSON object per line")
	if err := fs.Parse(args); err != nil {
		return exitUsage, usageError{err.Error()}
	}
	if zone == "" || fs.NArg() > 0 {
		return exitUsage, usageError{"audit: --zone is required and takes no arguments"}
	}
	now := time.Now()
	for _, t := range []struct {
		flag, v string
		dst     *time.Time
	}{{"since", since, &q.Since}, {"until", until, &q.Until}} {
		if t.v == "" {
			continue
		}
		if at, err := time.Parse(time.RFC3339, t.v); err == nil {
			*t.dst = at
		} else if d, err := time.ParseDuration(t.v); err == nil && d >= 0 {
			*t.dst = now.Add(-d)
		} else {
			return exitUsage, usageError{fmt.Sprintf("audit: --%s %q is neither an RFC 3339 time nor a duration such as 24h", t.flag, t.v)}
		}
	}
	if q.Limit < 1 || q.Limit > 100000 {
		return exitUsage, usageError{"audit: --limit must be between 1 and 100000"}
	}
	cf.defaults(s)
	snap, _, err := zoneSnapshot(func(r string) config.Options { return cf.options(environ, r, cf.envFiles) }, role, zone, "audit")
	if err != nil {
		return exitFailure, err
	}
	q.Zone = zone
	ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
	defer cancel()
	st, err := datasource.Open(ctx, snap.DataSources[snap.Zones[zone].DataSource])
	if err != nil {
		return exitFailure, err
	}
	defer st.Close()
	events, err := st.Audit().List(ctx, q)
	if err != nil {
		return exitFailure, err
	}
	enc := json.NewEncoder(stdout)
	for _, e := range events {
		if asJSON {
			_ = enc.Encode(map[string]any{"id": e.ID, "time": e.Time.UTC().Format(time.RFC3339Nano), "type": e.Type, "zone": e.Zone,
				"user": e.Subject, "client": e.ClientID, "ip": e.IP, "details": e.Details})
			continue
		}
		details, _ := json.Marshal(e.Details)
		// Quoted: a username typed at a login is in the trail, and must
		// not forge a line or reach the terminal as escapes.
		fmt.Fprintf(stdout, "%s  %-28q user=%q client=%q ip=%q %s\n", e.Time.UTC().Format(time.RFC3339), e.Type, orDash(e.Subject), orDash(e.ClientID), orDash(e.IP), details)
	}
	if len(events) == q.Limit {
		fmt.Fprintf(stderr, "(%d events shown, the limit; narrow with --since, --type, --user or raise --limit)\n", q.Limit)
	}
	return exitOK, nil
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
