package console

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/publish"
)

// fleetRole is one service role on the fleet page: its zones' nodes.
type fleetRole struct {
	Name  string
	View  *admin.RoleView
	Zones []fleetZone
}

type fleetZone struct {
	Name  string
	Nodes []fleetNode
}

type fleetNode struct {
	admin.NodeInfo
	Age     string
	Problem string // why it stands out: stale, failing, behind, unsupported
}

func (c *Server) fleet(w http.ResponseWriter, r *http.Request, s *session) {
	cl := c.c.Admin.ClusterView(r.Context())
	byRole := map[string]map[string][]fleetNode{}
	for _, n := range cl.Nodes {
		if byRole[n.Role] == nil {
			byRole[n.Role] = map[string][]fleetNode{}
		}
		fn := fleetNode{NodeInfo: n, Age: time.Since(n.HeartbeatAt).Round(100 * time.Millisecond).String()}
		view := cl.Roles[n.Role]
		switch {
		case n.Stale:
			fn.Problem = "stale"
		case n.LastReload == "failure":
			fn.Problem = "failing to reload"
		case view != nil && slices.Contains(view.Unsupported, n.ID):
			fn.Problem = "binary too old"
		case view != nil && slices.Contains(view.Behind, n.ID):
			fn.Problem = "behind"
		}
		byRole[n.Role][n.Zone] = append(byRole[n.Role][n.Zone], fn)
	}
	var roles []fleetRole
	for _, name := range sortedKeys(byRole) {
		fr := fleetRole{Name: name, View: cl.Roles[name]}
		for _, z := range sortedKeys(byRole[name]) {
			nodes := byRole[name][z]
			slices.SortFunc(nodes, func(a, b fleetNode) int { return strings.Compare(a.ID, b.ID) })
			fr.Zones = append(fr.Zones, fleetZone{Name: z, Nodes: nodes})
		}
		roles = append(roles, fr)
	}
	c.render(w, r, http.StatusOK, "fleet", page{Title: "Fleet", Nav: "fleet", Session: s,
		Data: map[string]any{"Roles": roles, "Errors": cl.Errors, "Active": c.c.Admin.ActiveVersion()}})
}

func (c *Server) bundles(w http.ResponseWriter, r *http.Request, s *session) {
	list, err := c.c.Admin.History()
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "bundles", page{Title: "Bundles", Nav: "bundles", Session: s, Data: map[string]any{"Bundles": list}})
}

// roleChanges is one role's part of a diff.
type roleChanges struct {
	Role    string
	Changes []admin.Change
}

func sortedChanges(m map[string][]admin.Change) []roleChanges {
	var out []roleChanges
	for _, role := range sortedKeys(m) {
		out = append(out, roleChanges{Role: role, Changes: m[role]})
	}
	return out
}

func (c *Server) diff(w http.ResponseWriter, r *http.Request, s *session) {
	from, to := r.URL.Query().Get("from"), r.URL.Query().Get("to")
	changes, err := c.c.Admin.Changes(from, to)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	lint := c.lintOf(to)
	c.render(w, r, http.StatusOK, "diff", page{Title: "From " + from + " to " + to, Nav: "bundles", Session: s,
		Data: map[string]any{"From": from, "To": to, "Roles": sortedChanges(changes), "Lint": lint}})
}

// lintOf is the go-live lint of a kept version for the admin's stage.
func (c *Server) lintOf(version string) []string { return c.c.Admin.LintVersion(version) }

func (c *Server) confirmActivate(w http.ResponseWriter, r *http.Request, s *session) {
	version := r.PathValue("version")
	active := c.c.Admin.ActiveVersion()
	changes, err := c.c.Admin.Changes(active, version)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "activate", page{Title: "Activate " + version, Nav: "bundles", Session: s,
		Data: map[string]any{"Version": version, "Active": active, "Roles": sortedChanges(changes)}})
}

func (c *Server) activate(w http.ResponseWriter, r *http.Request, s *session) {
	version := r.PathValue("version")
	if err := c.c.Admin.Activate(version, s.Actor()); err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.audit("console_activate", s.Actor(), map[string]any{"version": version})
	http.Redirect(w, r, basePath+"fleet", http.StatusSeeOther)
}

// entry is one configuration entry in the browser.
type entry struct {
	Section, Name, Where string
	Tags                 []string
	RefersTo, Referred   []string
	Roles                []string
}

func (c *Server) browse(w http.ResponseWriter, r *http.Request, s *session) {
	version := c.c.Admin.ActiveVersion()
	wr, err := c.c.Admin.Entries(version)
	if err != nil || wr == nil {
		c.fail(w, r, s, errors.New("the active configuration cannot be read"))
		return
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	sections := browseEntries(wr)
	for i := range sections {
		sections[i].filter(q, maxRows)
	}
	type idp struct{ Profile, Name, Where string }
	var idps []idp
	for _, pn := range sortedKeys(wr.Profiles) {
		for _, an := range sortedKeys(wr.Profiles[pn].Authenticators) {
			if a := wr.Profiles[pn].Authenticators[an]; a.Type == "oidc" {
				idps = append(idps, idp{pn, an, fmt.Sprintf("%s:%d", a.Pos.File, a.Pos.Line)})
			}
		}
	}
	c.render(w, r, http.StatusOK, "config", page{Title: "Configuration", Nav: "config", Session: s,
		Data: map[string]any{"Version": version, "Sections": sections, "IdPs": idps, "Query": q, "Editable": c.c.Git != nil && s.Role == RoleEditor}})
}

type section struct {
	Name    string
	Entries []entry
	// Total is how many entries the section has; Matching how many the
	// filter kept, of which Entries shows at most maxRows.
	Total, Matching int
}

// maxRows bounds a section's table; the filter finds the rest.
const maxRows = 200

// filter keeps the entries whose name, file or tags contain q (all when
// q is empty), at most limit of them.
func (s *section) filter(q string, limit int) {
	s.Total = len(s.Entries)
	kept := s.Entries[:0]
	for _, e := range s.Entries {
		if q == "" || strings.Contains(e.Name, q) || strings.Contains(e.Where, q) || slices.Contains(e.Tags, q) {
			kept = append(kept, e)
		}
	}
	s.Matching = len(kept)
	s.Entries = kept[:min(len(kept), limit)]
}

// browseEntries lists every entry with where it is written, what it
// refers to, what refers to it and which roles serve it.
func browseEntries(wr *config.Written) []section {
	refs := map[string][]string{} // "clients.web" → "profiles.token", …
	add := func(from, to string) {
		if !slices.Contains(refs[from], to) {
			refs[from] = append(refs[from], to)
		}
	}
	serves := map[string][]string{} // entry → roles
	for _, name := range sortedKeys(wr.ServiceRoles) {
		role := wr.ServiceRoles[name]
		add("service-roles."+name, "zones."+role.Zone)
		for _, p := range role.Profiles {
			add("service-roles."+name, "profiles."+p)
			serves["profiles."+p] = append(serves["profiles."+p], name)
		}
		serves["zones."+role.Zone] = append(serves["zones."+role.Zone], name)
	}
	for name, z := range wr.Zones {
		add("zones."+name, "data-sources."+z.DataSource)
		serves["data-sources."+z.DataSource] = append(serves["data-sources."+z.DataSource], serves["zones."+name]...)
	}
	for name, p := range wr.Profiles {
		for _, k := range p.SigningKeys {
			add("profiles."+name, "keys."+k)
			serves["keys."+k] = append(serves["keys."+k], serves["profiles."+name]...)
		}
		for _, other := range []string{p.AuthenticationProfile, p.TokenProfile} {
			if other != "" {
				add("profiles."+name, "profiles."+other)
			}
		}
	}
	for name, cl := range wr.Clients {
		add("clients."+name, "profiles."+cl.Profile)
		serves["clients."+name] = serves["profiles."+cl.Profile]
	}
	referred := map[string][]string{}
	for from, tos := range refs {
		for _, to := range tos {
			referred[to] = append(referred[to], from)
		}
	}
	mk := func(sec, name string, m config.Meta) entry {
		key := sec + "." + name
		e := entry{Section: sec, Name: name, Where: fmt.Sprintf("%s:%d", m.Pos.File, m.Pos.Line), Tags: m.Tags,
			RefersTo: refs[key], Referred: referred[key], Roles: compact(serves[key])}
		slices.Sort(e.RefersTo)
		slices.Sort(e.Referred)
		return e
	}
	var out []section
	collect := func(sec string, names []string, meta func(string) config.Meta) {
		s := section{Name: sec}
		for _, n := range names {
			s.Entries = append(s.Entries, mk(sec, n, meta(n)))
		}
		out = append(out, s)
	}
	collect("service-roles", sortedKeys(wr.ServiceRoles), func(n string) config.Meta { return wr.ServiceRoles[n].Meta })
	collect("zones", sortedKeys(wr.Zones), func(n string) config.Meta { return wr.Zones[n].Meta })
	collect("data-sources", sortedKeys(wr.DataSources), func(n string) config.Meta { return wr.DataSources[n].Meta })
	collect("keys", sortedKeys(wr.Keys), func(n string) config.Meta { return wr.Keys[n].Meta })
	collect("profiles", sortedKeys(wr.Profiles), func(n string) config.Meta { return wr.Profiles[n].Meta })
	collect("clients", sortedKeys(wr.Clients), func(n string) config.Meta { return wr.Clients[n].Meta })
	return out
}

func compact(list []string) []string {
	slices.Sort(list)
	return slices.Compact(list)
}

func (c *Server) drift(w http.ResponseWriter, r *http.Request, s *session) {
	if c.c.Git == nil {
		c.render(w, r, http.StatusOK, "drift", page{Title: "Drift", Nav: "drift", Session: s, Error: "no configuration repository is set (KEYGATE_GIT_URL)"})
		return
	}
	head, err := c.c.Git.ReadHead(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	active := c.c.Admin.ActiveVersion()
	data := map[string]any{"Commit": head.Commit, "Active": active}
	dir, ok := c.c.Admin.VersionDir(active)
	if !ok {
		data["Files"] = sortedKeys(head.Files)
		c.render(w, r, http.StatusOK, "drift", page{Title: "Drift", Nav: "drift", Session: s, Data: data})
		return
	}
	published, err := readYAML(dir)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	var differ []string
	for name, body := range head.Files {
		if published[name] != string(body) {
			differ = append(differ, name)
		}
	}
	for name := range published {
		if _, ok := head.Files[name]; !ok {
			differ = append(differ, name)
		}
	}
	slices.Sort(differ)
	data["Differ"] = differ
	if len(differ) > 0 {
		tmp, err := writeTemp(head.Files)
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		defer os.RemoveAll(tmp)
		if changes, err := c.c.Admin.ChangesFrom(active, tmp); err == nil {
			data["Roles"] = sortedChanges(changes)
		} else {
			data["LoadError"] = "the repository's head does not load: " + err.Error()
		}
	}
	c.render(w, r, http.StatusOK, "drift", page{Title: "Drift", Nav: "drift", Session: s, Data: data})
}

func (c *Server) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, publish.ErrNotFound) {
		status = http.StatusNotFound
	}
	c.log.Warn("console: request failed", "path", r.URL.Path, "error", err.Error())
	c.render(w, r, status, "error", page{Title: "Something went wrong", Session: s, Error: err.Error()})
}

// readYAML reads the config files of a directory by name.
func readYAML(dir string) (map[string]string, error) {
	files, err := config.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range files {
		out[f.Name] = string(f.Data)
	}
	return out, nil
}

func writeTemp(files map[string][]byte) (string, error) {
	dir, err := os.MkdirTemp("", "keygate-console-")
	if err != nil {
		return "", err
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(name)), data, 0o600); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}

// sortedKeys is m's keys in order, for output and errors that must not
// depend on map iteration.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
