package admin

import (
	"context"
	"time"

	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/storage/model"
)

// auditBundle writes a publish or an activation to the audit trail of
// every zone the new version serves, in the zone's own data source (the
// admin node has no database of its own), and to the log. A data source
// that cannot be reached does not hold the publish back; it is logged.
func (s *Server) auditBundle(typ, version, actor string, r *Rollout) {
	s.c.Logger.Info("audit: "+typ, "audit", true, "event", typ, "version", version, "actor", actor)
	if s.c.Pools == nil {
		return
	}
	dir, ok := s.VersionDir(version) // the zones of the version, not of the top level
	if !ok {
		return
	}
	opts := config.Options{Dir: dir, EnvFiles: s.c.EnvFiles, Environ: s.c.Environ, Lenient: true, NoFileReads: true}
	roles, err := config.Roles(opts)
	if err != nil {
		return
	}
	// Each data source once, with the zones it holds.
	zones := map[string][]string{}
	sources := map[string]*config.DataSource{}
	for _, role := range roles {
		opts.Role = role
		snap, err := config.Load(opts)
		if err != nil {
			continue
		}
		for zn, z := range snap.Zones {
			if ds := snap.DataSources[z.DataSource]; ds != nil && (ds.Path != "" || ds.URL.Reveal() != "") {
				sources[ds.Name] = ds
				if !contains(zones[ds.Name], zn) {
					zones[ds.Name] = append(zones[ds.Name], zn)
				}
			}
		}
	}
	details := map[string]any{"version": version, "actor": actor}
	if r != nil {
		details["rollout"], details["first"] = r.State, r.First
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, ds := range sources {
		st, release, err := s.c.Pools.Acquire(ctx, ds)
		if err != nil {
			s.c.Logger.Warn("audit: data source unreachable; the event is only in the log", "event", typ, "data_source", name)
			continue
		}
		for _, zn := range zones[name] {
			// Logged once above, whatever the zones; here only a failure.
			if err := (audit.Trail{Store: st}).Record(ctx, model.AuditEvent{Type: typ, Zone: zn, ClientID: "admin", Details: details}); err != nil {
				s.c.Logger.Warn("audit: event not written", "event", typ, "data_source", name, "error", err.Error())
			}
		}
		release()
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
