package admin

import (
	"net/http"
	"path/filepath"
	"slices"

	"github.com/keygate/keygate/internal/bundle"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/publish"
)

// Plan is what publishing an upload would do (POST /admin/v1/bundles/plan).
// Nothing is written.
type Plan struct {
	Valid         bool                 `json:"valid"`
	Errors        []string             `json:"errors"`
	Schema        int                  `json:"schema"`
	ActiveVersion string               `json:"active_version"` // "" when nothing is published
	Roles         map[string]*RolePlan `json:"roles"`
	// Stage and Lint are the go-live lint's findings for the stage; a
	// publish to production refuses error-level ones unless forced.
	Stage string   `json:"stage,omitempty"`
	Lint  []string `json:"lint"`
	// NotChecked: the values whose own checks need a variable the admin
	// does not know (see published).
	NotChecked []string `json:"not_checked"`
}

// RolePlan is one service role's part of a Plan.
type RolePlan struct {
	// ActiveVersion is the version the role serves now (its channel's;
	// during a staged rollout it may differ from the top level's).
	ActiveVersion string `json:"active_version"`
	// Changes are the role's resolved configuration, key by key, against
	// the active bundle: "+" added, "-" removed, "~" changed. Secret values
	// are never shown: a changed secret says only that it differs. Values
	// the admin cannot resolve (vault secrets) compare as unresolved.
	Changes []Change `json:"changes"`
	// NewVariables are the variables the role needs that the active
	// bundle did not: each stage's env files or vault must set them first.
	NewVariables []string `json:"new_variables"`
	// Nodes are the live runtime nodes of the role that will load it.
	Nodes    []PlanNode `json:"nodes"`
	Warnings []string   `json:"warnings"`
}

// Change is one key of a RolePlan.
type Change struct {
	Op     string `json:"op"` // "+", "-" or "~"
	Path   string `json:"path"`
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
	Secret bool   `json:"secret,omitempty"`
}

// String is the line `keygate bundle plan` prints.
func (c Change) String() string {
	switch {
	case c.Secret:
		return c.Op + " " + c.Path + ": differs (secret)"
	case c.Op == "+":
		return "+ " + c.Path + ": " + c.After
	case c.Op == "-":
		return "- " + c.Path + ": " + c.Before
	}
	return "~ " + c.Path + ": " + c.Before + " → " + c.After
}

// PlanNode is a live node that will load the bundle.
type PlanNode struct {
	ID            string `json:"id"`
	BinaryVersion string `json:"binary_version"`
	ConfigVersion string `json:"config_version"`
	// SupportsSchema is false when the node's binary reports a newest
	// config schema older than the bundle's: it would refuse the bundle.
	SupportsSchema bool `json:"supports_schema"`
}

func (s *Server) planBundle(w http.ResponseWriter, r *http.Request) {
	up, ok := readUpload(w, r)
	if !ok {
		return
	}
	active, published, _ := s.c.Publisher.Active()
	plan := &Plan{Errors: []string{}, Roles: map[string]*RolePlan{}}
	if published {
		plan.ActiveVersion = active.Manifest.Version
	}
	plan.Stage, plan.Lint = s.stage(up), []string{}
	c := s.validate(up, func(dir string, b *bundle.Bundle) {
		plan.Schema = b.Manifest.Schema
		plan.Lint = findingLines(s.lint(dir, plan.Stage))
		nodes, _ := s.nodes(r.Context())
		for role, vars := range b.Manifest.Variables {
			served, servedDir := s.servedBy(role)
			rp := s.rolePlan(role, dir, servedDir, vars, served.Variables[role], nodes, b.Manifest.Schema)
			rp.ActiveVersion = served.Version
			plan.Roles[role] = rp
		}
	})
	plan.Valid = len(c.errs) == 0
	if c.errs != nil {
		plan.Errors = c.errs
	}
	plan.NotChecked = orEmpty(c.notChecked)
	writeJSON(w, http.StatusOK, plan)
}

// servedBy is the manifest and directory of the version the role serves:
// its channel's, else the top level's (zero and "" when nothing is
// published).
func (s *Server) servedBy(role string) (bundle.Manifest, string) {
	p := s.c.Publisher
	vs, _ := p.Versions()
	for _, v := range vs {
		if slices.Contains(v.Roles, role) {
			return v.Manifest, filepath.Join(p.Dir(), publish.RolesDir, role)
		}
	}
	for _, v := range vs {
		if v.Active {
			return v.Manifest, p.Dir()
		}
	}
	return bundle.Manifest{}, ""
}

// rolePlan compares the role's resolution of the new bundle (in dir) with
// that of the active one (activeDir; "" when nothing is published), both
// with the admin's environment and no ${file:} read.
func (s *Server) rolePlan(role, dir, activeDir string, vars, activeVars []string, nodes []NodeInfo, schema int) *RolePlan {
	rp := &RolePlan{Changes: []Change{}, NewVariables: []string{}, Nodes: []PlanNode{}, Warnings: []string{}}
	load := func(d string) *config.Snapshot {
		if d == "" {
			return nil
		}
		return s.cache.snapshot(d, role, func(d string) *config.Snapshot {
			snap, err := config.Load(config.Options{Dir: d, Role: role, EnvFiles: s.c.EnvFiles, Environ: s.c.Environ, Lenient: true, NoFileReads: true})
			if err != nil {
				return nil
			}
			return snap
		})
	}
	after := load(dir)
	before := load(activeDir)
	if before == nil && activeDir != "" {
		rp.Warnings = append(rp.Warnings, "the active bundle does not load for this role with the admin's environment (or the role is new): every key is shown as added")
	}
	if before == nil {
		before = &config.Snapshot{}
	}
	if after != nil {
		for _, d := range config.Diff(before, after) {
			c := Change{Path: d.Path, Before: d.Before, After: d.After, Secret: d.Secret, Op: "~"}
			switch {
			case d.Before == "":
				c.Op = "+"
			case d.After == "":
				c.Op = "-"
			}
			rp.Changes = append(rp.Changes, c)
		}
	}
	for _, v := range vars {
		if !slices.Contains(activeVars, v) {
			rp.NewVariables = append(rp.NewVariables, v)
		}
	}
	for _, n := range nodes {
		if n.Role != role || n.Stale {
			continue
		}
		ok := n.SchemaMax < 0 || n.SchemaMax >= schema
		rp.Nodes = append(rp.Nodes, PlanNode{ID: n.ID, BinaryVersion: n.BinaryVersion, ConfigVersion: n.ConfigVersion, SupportsSchema: ok})
		if !ok {
			rp.Warnings = append(rp.Warnings, "node "+n.ID+" ("+n.BinaryVersion+") does not support the bundle's config schema: upgrade it before publishing")
		}
	}
	return rp
}
