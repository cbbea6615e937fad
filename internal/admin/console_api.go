package admin

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/keygate/keygate/internal/bundle"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/lint"
	"github.com/keygate/keygate/internal/publish"
)

// What the admin console (internal/console) reads and does: the same
// views and actions as the API, as Go values.

// Cluster is GET /admin/v1/cluster.
type Cluster struct {
	Nodes  []NodeInfo
	Roles  map[string]*RoleView
	Errors []string
}

// ClusterView reads the heartbeats.
func (s *Server) ClusterView(ctx context.Context) Cluster {
	nodes, errs := s.nodes(ctx)
	return Cluster{Nodes: nodes, Roles: s.roleViews(nodes), Errors: errs}
}

// History is the kept bundles, newest first.
func (s *Server) History() ([]BundleInfo, error) {
	vs, err := s.c.Publisher.Versions()
	if err != nil {
		return nil, err
	}
	out := []BundleInfo{}
	for i := len(vs) - 1; i >= 0; i-- {
		m := vs[i].Manifest
		out = append(out, BundleInfo{Version: m.Version, ContentHash: m.ContentHash, Schema: m.Schema, CreatedAt: m.CreatedAt,
			Author: m.Author, Message: m.Message, Active: vs[i].Active, Roles: vs[i].Roles})
	}
	return out, nil
}

// VersionDir is the directory a kept version's files are in.
func (s *Server) VersionDir(version string) (string, bool) {
	vs, err := s.c.Publisher.Versions()
	if err != nil {
		return "", false
	}
	i := slices.IndexFunc(vs, func(v publish.Version) bool { return v.Manifest.Version == version })
	if i < 0 {
		return "", false
	}
	return filepath.Join(s.c.Publisher.Dir(), vs[i].Dir), true
}

// ActiveVersion is the version the top level serves ("" before the first
// publish).
func (s *Server) ActiveVersion() string {
	v, ok, _ := s.c.Publisher.Active()
	if !ok {
		return ""
	}
	return v.Manifest.Version
}

// Activate puts every role on a kept version, as
// POST /admin/v1/bundles/{version}/activate does; actor is who asked.
func (s *Server) Activate(version, actor string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	vs, err := s.c.Publisher.Versions()
	if err != nil {
		return err
	}
	i := slices.IndexFunc(vs, func(v publish.Version) bool { return v.Manifest.Version == version })
	if i < 0 {
		return fmt.Errorf("%w: %s", publish.ErrNotFound, version)
	}
	if cur := s.rollout; cur != nil && cur.State == RolloutCanary {
		s.c.Logger.Warn("rollout replaced by an activation", "version", cur.Version, "activated", version)
	}
	m := vs[i].Manifest
	if _, err := s.start(version, m.Schema, sortedKeys(m.Variables), nil, actor, "activated"); err != nil {
		return err
	}
	s.c.Logger.Info("bundle activated", "version", version, "actor", actor)
	go s.auditBundle("bundle_activated", version, actor, nil)
	return nil
}

// Changes is what differs between two kept versions, per role, as a plan
// shows it (secrets only "differs").
func (s *Server) Changes(from, to string) (map[string][]Change, error) {
	fromDir, ok := s.VersionDir(from)
	if !ok {
		return nil, fmt.Errorf("%w: %s", publish.ErrNotFound, from)
	}
	toDir, ok := s.VersionDir(to)
	if !ok {
		return nil, fmt.Errorf("%w: %s", publish.ErrNotFound, to)
	}
	return s.changesBetween(fromDir, toDir)
}

// ChangesFrom is what a directory (the repository's head) changes against
// a kept version.
func (s *Server) ChangesFrom(version, dir string) (map[string][]Change, error) {
	fromDir, ok := s.VersionDir(version)
	if !ok {
		return nil, fmt.Errorf("%w: %s", publish.ErrNotFound, version)
	}
	return s.changesBetween(fromDir, dir)
}

func (s *Server) changesBetween(fromDir, toDir string) (map[string][]Change, error) {
	if k := s.cache.key(fromDir); k != "" {
		type result struct {
			changes map[string][]Change
			err     error
		}
		r := cached(s.cache, toDir, "changes-from\x00"+k, func() result {
			c, err := s.computeChanges(fromDir, toDir)
			return result{c, err}
		})
		return r.changes, r.err
	}
	return s.computeChanges(fromDir, toDir)
}

func (s *Server) computeChanges(fromDir, toDir string) (map[string][]Change, error) {
	roles, err := cached(s.cache, toDir, "roles", func() rolesResult {
		r, err := config.Roles(config.Options{Dir: toDir, Lenient: true, NoFileReads: true})
		return rolesResult{r, err}
	}).get()
	if err != nil {
		return nil, err
	}
	out := map[string][]Change{}
	for _, role := range roles {
		out[role] = s.rolePlan(role, toDir, fromDir, nil, nil, nil, 0).Changes
	}
	return out, nil
}

// CheckFiles is what the gate says of a set of files: every error, the values
// it could not check, and the go-live lint's findings for the admin's
// stage.
func (s *Server) CheckFiles(files map[string]string) (errs, notChecked []string, findings []lint.Finding) {
	c := s.validate(Upload{Files: files}, func(dir string, _ *bundle.Bundle) { findings = s.lint(dir, s.c.Stage) })
	return c.errs, c.notChecked, findings
}

// Stage is the stage this admin node publishes to.
func (s *Server) Stage() string { return s.c.Stage }

// Entries loads a kept version (or the admin's own config dir for "")
// with what every entry was written as, for browsing.
func (s *Server) Entries(version string) (*config.Written, error) {
	dir := s.c.ConfigDir
	if version != "" {
		d, ok := s.VersionDir(version)
		if !ok {
			return nil, fmt.Errorf("%w: %s", publish.ErrNotFound, version)
		}
		dir = d
	}
	type result struct {
		w   *config.Written
		err error
	}
	r := cached(s.cache, dir, "written", func() result {
		roles, err := config.Roles(config.Options{Dir: dir, Lenient: true, NoFileReads: true})
		if err != nil || len(roles) == 0 {
			return result{nil, err}
		}
		_, w, err := config.LoadWritten(config.Options{Dir: dir, Role: roles[0], Lenient: true, NoFileReads: true, Environ: s.c.Environ})
		return result{w, err}
	})
	return r.w, r.err
}

// LintVersion is the go-live lint of a kept version for the admin's
// stage, as its publish reported it.
func (s *Server) LintVersion(version string) []string {
	dir, ok := s.VersionDir(version)
	if !ok {
		return nil
	}
	return cached(s.cache, dir, "lint", func() []string { return findingLines(s.lint(dir, s.c.Stage)) })
}

type rolesResult struct {
	roles []string
	err   error
}

func (r rolesResult) get() ([]string, error) { return r.roles, r.err }
