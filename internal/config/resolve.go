package config

import (
	"fmt"
	"slices"
	"strings"
)

// resolve builds the snapshot of what the service role uses: its zone and
// data source, its profiles and what they refer to (keys, other profiles), and
// the clients of its token profiles. A variable missing from an entry the
// role uses is an error; one missing from an entry only another role uses is
// not, so each stage's env file names only what its roles need.
func (l *loader) resolve() *Snapshot {
	r := &l.raw
	role, ok := r.ServiceRoles[l.opts.Role]
	if !ok {
		msg := fmt.Sprintf("service role %q is not defined", l.opts.Role)
		if why, dropped := l.dropped["service-roles/"+l.opts.Role]; dropped {
			msg = fmt.Sprintf("service role %q is not available: %s", l.opts.Role, why)
		} else if names := sortedKeys(r.ServiceRoles); len(names) > 0 {
			msg += " (defined: " + strings.Join(names, ", ") + ")"
		}
		l.fail(Position{File: l.opts.Dir}, "service-roles", "%s", msg)
		return nil
	}
	// A profile the stage's excluded tags dropped is not served.
	if slices.ContainsFunc(role.Profiles, func(p string) bool { return l.excluded["profiles/"+p] }) {
		kept := *role
		kept.Profiles = slices.DeleteFunc(slices.Clone(role.Profiles), func(p string) bool { return l.excluded["profiles/"+p] })
		role = &kept
	}
	s := &Snapshot{
		Schema: l.schema,
		Role:   role.Name,
		Entries: Entries{
			ServiceRoles: map[string]*ServiceRole{role.Name: role},
			Zones:        map[string]*Zone{},
			DataSources:  map[string]*DataSource{},
			Keys:         map[string]*Key{},
			Profiles:     map[string]*Profile{},
			Clients:      make(map[string]*Client, len(r.Clients)),
		},
	}
	if z, ok := r.Zones[role.Zone]; ok {
		s.Zones[z.Name] = z
		if ds, ok := r.DataSources[z.DataSource]; ok {
			s.DataSources[ds.Name] = ds
		}
	}
	var addProfile func(name string)
	addProfile = func(name string) {
		p, ok := r.Profiles[name]
		if !ok || s.Profiles[name] != nil {
			return
		}
		s.Profiles[name] = p
		for _, k := range p.SigningKeys {
			if key, ok := r.Keys[k]; ok {
				s.Keys[k] = key
			}
		}
		for _, ref := range []string{p.AuthenticationProfile, p.TokenProfile} {
			if ref != "" {
				addProfile(ref)
			}
		}
		// The other zones a user-management profile serves users of: the
		// node reaches their data sources, so the role needs them.
		for _, zn := range p.Zones {
			if z, ok := r.Zones[zn]; ok {
				s.Zones[z.Name] = z
				if ds, ok := r.DataSources[z.DataSource]; ok {
					s.DataSources[ds.Name] = ds
				}
			}
		}
	}
	for _, name := range role.Profiles {
		addProfile(name)
	}
	for name, c := range r.Clients {
		if s.Profiles[c.Profile] != nil && s.Profiles[c.Profile].Type == ProfileToken {
			s.Clients[name] = c
		}
	}
	l.used = func(key string) bool {
		section, name, _ := strings.Cut(key, "/")
		switch section {
		case "service-roles":
			return name == role.Name
		case "zones":
			return s.Zones[name] != nil
		case "data-sources":
			return s.DataSources[name] != nil
		case "keys":
			return s.Keys[name] != nil
		case "profiles":
			return s.Profiles[name] != nil
		case "clients":
			// A client whose profile is itself unresolved can't be placed; report it.
			c := r.Clients[name]
			return s.Clients[name] != nil || c.Profile == "" || slices.Contains(role.Profiles, c.Profile)
		}
		return true
	}
	return s
}

// reportMissing reports every missing variable of the entries the role uses.
func (l *loader) reportMissing() {
	if l.opts.Lenient {
		return
	}
	for key, vars := range l.missing {
		if !l.used(key) {
			continue
		}
		for _, v := range vars {
			l.fail(v.Pos, v.Path, "variable %s is not set (set it in the environment or an env file, or write ${%s:-default})", v.Name, v.Name)
		}
	}
}
