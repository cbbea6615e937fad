package console

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/gitback"
	"github.com/keygate/keygate/internal/yamledit"
)

// clientForm is a client as the editor shows it: each field as written in
// the repository (placeholders unresolved).
type clientForm struct {
	Name, File, Profile     string
	Base                    string // the commit the form was read at
	New, Public             bool
	RedirectURIs            []string
	PostLogoutRedirectURIs  []string
	GrantTypes              []string
	Scopes, Audiences, Tags []string
	AccessTokenLifetime     string
	Enabled                 bool
	// Errors are the loader's messages by field key ("redirect-uris"), and
	// "" for those of no field.
	Errors   map[string][]string
	Lint     []string
	Profiles []string // token profiles, for a new client
}

// The fields the editor changes, as keys of a client entry.
var clientFields = []string{"redirect-uris", "post-logout-redirect-uris", "grant-types", "scopes", "audiences", "tags", "access-tokens", "enabled"}

// AllGrantTypes are the choices of the grant-type checkboxes.
var allGrantTypes = []string{config.GrantAuthorizationCode, config.GrantClientCredentials, config.GrantRefreshToken}

func (c *Server) editClient(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	_, file, doc, commit, ok := c.fromRepo(w, r, s, func(files map[string][]byte) (string, *yamledit.Doc, error) { return findClient(files, name) })
	if !ok {
		return
	}
	f := formFromDoc(doc, name)
	f.File, f.Base = file, commit
	c.render(w, r, http.StatusOK, "client", page{Title: "Client " + name, Nav: "config", Session: s, Data: f})
}

// fromRepo reads the repository's head and finds the file an entry is
// in; it answers the request itself (and returns false) when editing is
// off, the repository cannot be read or the entry is not there.
//
// A form carries the commit it was read at (base): a save against a
// repository that moved since is refused, so it cannot undo what was
// merged meanwhile.
func (c *Server) fromRepo(w http.ResponseWriter, r *http.Request, s *session, find func(map[string][]byte) (string, *yamledit.Doc, error)) (files map[string][]byte, file string, doc *yamledit.Doc, commit string, ok bool) {
	if c.c.Git == nil {
		c.render(w, r, http.StatusConflict, "error", page{Title: "Editing is off", Session: s, Error: "no configuration repository is set (KEYGATE_GIT_URL): edits go to git, never straight to the nodes"})
		return nil, "", nil, "", false
	}
	head, err := c.c.Git.ReadHead(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return nil, "", nil, "", false
	}
	if base := r.PostFormValue("base"); r.Method == http.MethodPost && base != head.Commit {
		c.render(w, r, http.StatusConflict, "error", page{Title: "The repository changed", Session: s,
			Error: "the configuration repository changed since this form was opened; open it again to edit the current version"})
		return nil, "", nil, "", false
	}
	file, doc, err = find(head.Files)
	if err != nil {
		c.fail(w, r, s, err)
		return nil, "", nil, "", false
	}
	return head.Files, file, doc, head.Commit, true
}

// findClient finds the file that defines clients.<name>.
func findClient(files map[string][]byte, name string) (string, *yamledit.Doc, error) {
	return findEntry(files, "clients", "client", name)
}

// findEntry is the repository file that defines section.name, parsed; kind
// names the entry in the error when none does.
func findEntry(files map[string][]byte, section, kind, name string) (string, *yamledit.Doc, error) {
	for _, fname := range sortedKeys(files) {
		doc, err := yamledit.Parse(files[fname])
		if err != nil {
			continue
		}
		if _, ok := doc.Get([]string{section, name}); ok {
			return fname, doc, nil
		}
	}
	return "", nil, fmt.Errorf("no %s %q in the repository's configuration", kind, name)
}

func formFromDoc(doc *yamledit.Doc, name string) *clientForm {
	get := func(key ...string) any {
		v, _ := doc.Get(append([]string{"clients", name}, key...))
		return v
	}
	f := &clientForm{Name: name, Enabled: true}
	f.Profile, _ = get("profile").(string)
	f.RedirectURIs = strs(get("redirect-uris"))
	f.PostLogoutRedirectURIs = strs(get("post-logout-redirect-uris"))
	f.GrantTypes = strs(get("grant-types"))
	f.Scopes = strs(get("scopes"))
	f.Audiences = strs(get("audiences"))
	f.Tags = strs(get("tags"))
	f.AccessTokenLifetime, _ = get("access-tokens", "lifetime").(string)
	if e, ok := get("enabled").(bool); ok {
		f.Enabled = e
	}
	return f
}

func strs(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// formFromRequest reads the posted fields.
func formFromRequest(r *http.Request, name string) *clientForm {
	lines := func(k string) []string {
		var out []string
		for _, l := range strings.Split(r.PostFormValue(k), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
		return out
	}
	words := func(k string) []string {
		return strings.FieldsFunc(r.PostFormValue(k), func(r rune) bool { return r == ' ' || r == ',' || r == '\n' || r == '\r' || r == '\t' })
	}
	f := &clientForm{Name: name, Profile: r.PostFormValue("profile"), Public: r.PostFormValue("public") == "on"}
	f.RedirectURIs = lines("redirect-uris")
	f.PostLogoutRedirectURIs = lines("post-logout-redirect-uris")
	f.Audiences = lines("audiences")
	f.Scopes = words("scopes")
	f.Tags = words("tags")
	for _, g := range r.PostForm["grant-types"] {
		if slices.Contains(allGrantTypes, g) {
			f.GrantTypes = append(f.GrantTypes, g)
		}
	}
	f.AccessTokenLifetime = strings.TrimSpace(r.PostFormValue("access-token-lifetime"))
	f.Enabled = r.PostFormValue("enabled") == "on"
	return f
}

// apply writes the form's fields into doc, key by key, only where they
// changed.
func (f *clientForm) apply(doc *yamledit.Doc, old *clientForm) error {
	path := func(k ...string) []string { return append([]string{"clients", f.Name}, k...) }
	list := func(key string, now, was []string) error {
		switch {
		case slices.Equal(now, was):
			return nil
		case len(now) == 0:
			return doc.Remove(path(key))
		}
		return doc.Set(path(key), now)
	}
	for _, l := range []struct {
		key      string
		now, was []string
	}{
		{"redirect-uris", f.RedirectURIs, old.RedirectURIs},
		{"post-logout-redirect-uris", f.PostLogoutRedirectURIs, old.PostLogoutRedirectURIs},
		{"grant-types", f.GrantTypes, old.GrantTypes},
		{"scopes", f.Scopes, old.Scopes},
		{"audiences", f.Audiences, old.Audiences},
		{"tags", f.Tags, old.Tags},
	} {
		if err := list(l.key, l.now, l.was); err != nil {
			return err
		}
	}
	if f.AccessTokenLifetime != old.AccessTokenLifetime {
		var err error
		if f.AccessTokenLifetime == "" {
			err = doc.Remove(path("access-tokens", "lifetime"))
		} else {
			err = doc.Set(path("access-tokens", "lifetime"), f.AccessTokenLifetime)
		}
		if err != nil {
			return err
		}
	}
	if f.Enabled != old.Enabled {
		if f.Enabled {
			return doc.Remove(path("enabled"))
		}
		return doc.Set(path("enabled"), false)
	}
	return nil
}

func (c *Server) saveClient(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	f := formFromRequest(r, name)
	files, file, doc, commit, ok := c.fromRepo(w, r, s, func(files map[string][]byte) (string, *yamledit.Doc, error) { return findClient(files, name) })
	if !ok {
		return
	}
	f.Base = commit
	f.File, f.Profile = file, formFromDoc(doc, name).Profile
	if err := f.apply(doc, formFromDoc(doc, name)); err != nil {
		f.Errors = map[string][]string{"": {err.Error()}}
		c.render(w, r, http.StatusUnprocessableEntity, "client", page{Title: "Client " + name, Nav: "config", Session: s, Data: f})
		return
	}
	c.propose(w, r, s, f, files, file, doc.Bytes(), "client "+name+": edited in the console")
}

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (c *Server) newClient(w http.ResponseWriter, r *http.Request, s *session) {
	f := &clientForm{New: true, Enabled: true, Profiles: c.tokenProfiles()}
	if len(f.Profiles) > 0 {
		f.Profile = f.Profiles[0]
	}
	c.render(w, r, http.StatusOK, "client", page{Title: "New client", Nav: "config", Session: s, Data: f})
}

func (c *Server) tokenProfiles() []string { return c.profilesOf(config.ProfileToken) }

// profilesOf names the active version's profiles of type typ, in order.
func (c *Server) profilesOf(typ string) []string {
	wr, err := c.c.Admin.Entries(c.c.Admin.ActiveVersion())
	if err != nil || wr == nil {
		return nil
	}
	var out []string
	for _, name := range sortedKeys(wr.Profiles) {
		if wr.Profiles[name].Type == typ {
			out = append(out, name)
		}
	}
	return out
}

// secretVariable is the placeholder a new client's secret becomes.
func secretVariable(name string) string {
	return strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_SECRET"
}

func (c *Server) createClient(w http.ResponseWriter, r *http.Request, s *session) {
	if c.c.Git == nil {
		c.render(w, r, http.StatusConflict, "error", page{Title: "Editing is off", Session: s, Error: "no configuration repository is set"})
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	f := formFromRequest(r, name)
	f.New, f.Profiles = true, c.tokenProfiles()
	if !nameRe.MatchString(name) {
		f.Errors = map[string][]string{"name": {"a client name is lower-case letters, digits and dashes, starting with a letter or digit"}}
		c.render(w, r, http.StatusUnprocessableEntity, "client", page{Title: "New client", Nav: "config", Session: s, Data: f})
		return
	}
	head, err := c.c.Git.ReadHead(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if _, _, err := findClient(head.Files, name); err == nil {
		f.Errors = map[string][]string{"name": {fmt.Sprintf("a client %q exists already", name)}}
		c.render(w, r, http.StatusUnprocessableEntity, "client", page{Title: "New client", Nav: "config", Session: s, Data: f})
		return
	}
	file := c.clientsFile(head.Files)
	doc, err := yamledit.Parse(head.Files[file])
	if err != nil {
		c.fail(w, r, s, fmt.Errorf("%s: %w", file, err))
		return
	}
	entry := map[string]any{"profile": f.Profile}
	if !f.Public {
		entry["secret"] = "$" + secretVariable(name)
	}
	if err := doc.Set([]string{"clients", name}, entry); err != nil {
		c.fail(w, r, s, err)
		return
	}
	if err := f.apply(doc, &clientForm{Name: name, Enabled: true}); err != nil {
		c.fail(w, r, s, err)
		return
	}
	f.File = file
	c.propose(w, r, s, f, head.Files, file, doc.Bytes(), "client "+name+": created in the console")
}

// clientsFile is where a new client goes: the configured file, else the
// one holding the most clients.
func (c *Server) clientsFile(files map[string][]byte) string {
	if c.c.ClientsFile != "" {
		return c.c.ClientsFile
	}
	best, most := "", -1
	for _, name := range sortedKeys(files) {
		doc, err := yamledit.Parse(files[name])
		if err != nil {
			continue
		}
		v, _ := doc.Get([]string{"clients"})
		if m, ok := v.(map[string]any); ok && len(m) > most {
			best, most = name, len(m)
		}
	}
	if best == "" {
		return "40-clients.yaml"
	}
	return best
}

// proposal is what the page after a commit shows.
type proposal struct {
	*gitback.Proposal
	File           string
	Removed, Added []string
	Vault          string // the variable the vault must provide, for a new confidential client
}

// propose commits a client's edit (see commit), its messages back at
// the form's fields when the checks refuse it.
func (c *Server) propose(w http.ResponseWriter, r *http.Request, s *session, f *clientForm, files map[string][]byte, file string, edited []byte, message string) {
	vault := ""
	if f.New && !f.Public {
		vault = secretVariable(f.Name)
	}
	c.commit(w, r, s, f.Base, files, file, edited, message, func(errs, lint []string) {
		f.Errors, f.Lint = fieldErrors(errs, f.Name), lint
		title := "Client " + f.Name
		if f.New {
			title = "New client"
		}
		c.render(w, r, http.StatusUnprocessableEntity, "client", page{Title: title, Nav: "config", Session: s, Data: f, Error: "the change does not pass the checks; nothing was committed"})
	}, vault, map[string]any{"client": f.Name})
}

// commit validates the edited file with every other file of the
// repository's head, as the gate would, and commits it to a new branch.
// When the checks refuse it, refused gets the loader's messages and the
// lint's findings, and nothing is committed.
func (c *Server) commit(w http.ResponseWriter, r *http.Request, s *session, base string, files map[string][]byte, file string, edited []byte, message string,
	refused func(errs, lint []string), vault string, details map[string]any) {
	all := map[string]string{}
	for name, data := range files {
		all[name] = string(data)
	}
	all[file] = string(edited)
	errs, _, findings := c.c.Admin.CheckFiles(all)
	var lint []string
	for _, fi := range findings {
		lint = append(lint, fi.String())
	}
	if len(errs) > 0 {
		refused(errs, lint)
		return
	}
	p, err := c.c.Git.Propose(r.Context(), gitback.Author{Name: orDefault(s.Name, s.Actor()), Email: orDefault(s.Email, "break-glass@keygate.invalid")}, message, base,
		func(map[string][]byte) (map[string][]byte, error) { return map[string][]byte{file: edited}, nil })
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	audit := map[string]any{"branch": p.Branch, "commit": p.Commit, "file": file}
	for k, v := range details {
		audit[k] = v
	}
	c.audit("console_commit", s.Actor(), audit)
	removed, added := yamledit.ChangedLines(string(files[file]), string(edited))
	c.render(w, r, http.StatusOK, "proposed", page{Title: "Change proposed", Nav: "config", Session: s,
		Data: proposal{Proposal: p, File: file, Removed: removed, Added: added, Vault: vault}})
}

// fieldErrors sorts the gate's messages by the client field they name.
func fieldErrors(errs []string, client string) map[string][]string {
	out := map[string][]string{}
	for _, e := range errs {
		field := ""
		for _, k := range clientFields {
			if strings.Contains(e, "clients."+client+"."+k) {
				field = k
			}
		}
		out[field] = append(out[field], e)
	}
	return out
}

func orDefault(s, d string) string {
	if s != "" {
		return s
	}
	return d
}
