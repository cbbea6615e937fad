package console

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/yamledit"
)

// idpForm is an external OpenID Connect IdP connection (an authenticator
// of type oidc in an authentication profile) as the editor shows it.
type idpForm struct {
	Profile, Name, File string
	Base                string // the commit the form was read at
	New                 bool
	Issuer, ClientID    string
	DisplayName         string
	Scopes              []string
	Errors              map[string][]string
	Lint                []string
	Profiles            []string // authentication profiles, for a new connection
}

// The fields the editor changes, as keys of an authenticator.
var idpFields = []string{"issuer", "client-id", "scopes", "display-name"}

func (f *idpForm) path(k ...string) []string {
	return append([]string{"profiles", f.Profile, "authenticators", f.Name}, k...)
}

// findIdP finds the file that defines the authenticator.
func findIdP(files map[string][]byte, profile, name string) (string, *yamledit.Doc, error) {
	for _, fname := range sortedKeys(files) {
		doc, err := yamledit.Parse(files[fname])
		if err != nil {
			continue
		}
		if v, ok := doc.Get([]string{"profiles", profile, "authenticators", name}); ok {
			if m, _ := v.(map[string]any); m["type"] == "oidc" {
				return fname, doc, nil
			}
			return "", nil, fmt.Errorf("%s of profile %s is not an OpenID Connect IdP", name, profile)
		}
	}
	return "", nil, fmt.Errorf("no IdP connection %q in profile %q of the repository's configuration", name, profile)
}

func idpFromDoc(doc *yamledit.Doc, profile, name string) *idpForm {
	f := &idpForm{Profile: profile, Name: name}
	get := func(k string) any { v, _ := doc.Get(f.path(k)); return v }
	f.Issuer, _ = get("issuer").(string)
	f.ClientID, _ = get("client-id").(string)
	f.DisplayName, _ = get("display-name").(string)
	f.Scopes = strs(get("scopes"))
	return f
}

func idpFromRequest(r *http.Request, profile, name string) *idpForm {
	return &idpForm{Profile: profile, Name: name, Issuer: strings.TrimSpace(r.PostFormValue("issuer")),
		ClientID: strings.TrimSpace(r.PostFormValue("client-id")), DisplayName: strings.TrimSpace(r.PostFormValue("display-name")),
		Scopes: strings.Fields(strings.ReplaceAll(r.PostFormValue("scopes"), ",", " "))}
}

// apply writes the changed fields into doc.
func (f *idpForm) apply(doc *yamledit.Doc, old *idpForm) error {
	for _, s := range []struct{ key, now, was string }{
		{"issuer", f.Issuer, old.Issuer}, {"client-id", f.ClientID, old.ClientID}, {"display-name", f.DisplayName, old.DisplayName},
	} {
		switch {
		case s.now == s.was:
		case s.now == "":
			if err := doc.Remove(f.path(s.key)); err != nil {
				return err
			}
		default:
			if err := doc.Set(f.path(s.key), s.now); err != nil {
				return err
			}
		}
	}
	if !slices.Equal(f.Scopes, old.Scopes) {
		if len(f.Scopes) == 0 {
			return doc.Remove(f.path("scopes"))
		}
		return doc.Set(f.path("scopes"), f.Scopes)
	}
	return nil
}

func (c *Server) editIdP(w http.ResponseWriter, r *http.Request, s *session) {
	profile, name := r.PathValue("profile"), r.PathValue("name")
	_, file, doc, commit, ok := c.fromRepo(w, r, s, func(files map[string][]byte) (string, *yamledit.Doc, error) { return findIdP(files, profile, name) })
	if !ok {
		return
	}
	f := idpFromDoc(doc, profile, name)
	f.File, f.Base = file, commit
	c.render(w, r, http.StatusOK, "idp", page{Title: "IdP connection " + name, Nav: "config", Session: s, Data: f})
}

func (c *Server) saveIdP(w http.ResponseWriter, r *http.Request, s *session) {
	profile, name := r.PathValue("profile"), r.PathValue("name")
	files, file, doc, commit, ok := c.fromRepo(w, r, s, func(files map[string][]byte) (string, *yamledit.Doc, error) { return findIdP(files, profile, name) })
	if !ok {
		return
	}
	f := idpFromRequest(r, profile, name)
	f.Base = commit
	f.File = file
	if err := f.apply(doc, idpFromDoc(doc, profile, name)); err != nil {
		f.Errors = map[string][]string{"": {err.Error()}}
		c.render(w, r, http.StatusUnprocessableEntity, "idp", page{Title: "IdP connection " + name, Nav: "config", Session: s, Data: f})
		return
	}
	c.proposeIdP(w, r, s, f, files, file, doc.Bytes(), "IdP "+name+" of "+profile+": edited in the console")
}

func (c *Server) newIdP(w http.ResponseWriter, r *http.Request, s *session) {
	f := &idpForm{New: true, Profiles: c.authnProfiles(), Scopes: []string{"openid", "profile", "email"}}
	if len(f.Profiles) > 0 {
		f.Profile = f.Profiles[0]
	}
	c.render(w, r, http.StatusOK, "idp", page{Title: "New IdP connection", Nav: "config", Session: s, Data: f})
}

func (c *Server) authnProfiles() []string { return c.profilesOf(config.ProfileAuthentication) }

func (c *Server) createIdP(w http.ResponseWriter, r *http.Request, s *session) {
	if c.c.Git == nil {
		c.render(w, r, http.StatusConflict, "error", page{Title: "Editing is off", Session: s, Error: "no configuration repository is set"})
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	f := idpFromRequest(r, r.PostFormValue("profile"), name)
	f.New, f.Profiles = true, c.authnProfiles()
	refuse := func(field, msg string) {
		f.Errors = map[string][]string{field: {msg}}
		c.render(w, r, http.StatusUnprocessableEntity, "idp", page{Title: "New IdP connection", Nav: "config", Session: s, Data: f})
	}
	if !nameRe.MatchString(name) {
		refuse("name", "a connection name is lower-case letters, digits and dashes")
		return
	}
	if !slices.Contains(f.Profiles, f.Profile) {
		refuse("profile", "choose an authentication profile")
		return
	}
	head, err := c.c.Git.ReadHead(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if _, _, err := findIdP(head.Files, f.Profile, name); err == nil || !strings.HasPrefix(err.Error(), "no IdP connection") {
		refuse("name", fmt.Sprintf("profile %s has an authenticator %q already", f.Profile, name))
		return
	}
	file, doc, err := findProfile(head.Files, f.Profile)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	entry := map[string]any{"type": "oidc", "client-secret": "$" + idpSecretVariable(f.Profile, name)}
	if err := doc.Set(f.path(), entry); err != nil {
		c.fail(w, r, s, err)
		return
	}
	if err := f.apply(doc, &idpForm{Profile: f.Profile, Name: name}); err != nil {
		c.fail(w, r, s, err)
		return
	}
	f.File = file
	c.proposeIdP(w, r, s, f, head.Files, file, doc.Bytes(), "IdP "+name+" of "+f.Profile+": created in the console")
}

func findProfile(files map[string][]byte, profile string) (string, *yamledit.Doc, error) {
	return findEntry(files, "profiles", "profile", profile)
}

func idpSecretVariable(profile, name string) string {
	up := func(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }
	return up(profile) + "_" + up(name) + "_CLIENT_SECRET"
}

func (c *Server) proposeIdP(w http.ResponseWriter, r *http.Request, s *session, f *idpForm, files map[string][]byte, file string, edited []byte, message string) {
	prefix := "profiles." + f.Profile + ".authenticators." + f.Name + "."
	c.commit(w, r, s, f.Base, files, file, edited, message, func(errs, lint []string) {
		f.Lint = lint
		f.Errors = map[string][]string{}
		for _, e := range errs {
			field := ""
			for _, k := range idpFields {
				if strings.Contains(e, prefix+k) {
					field = k
				}
			}
			f.Errors[field] = append(f.Errors[field], e)
		}
		title := "IdP connection " + f.Name
		if f.New {
			title = "New IdP connection"
		}
		c.render(w, r, http.StatusUnprocessableEntity, "idp", page{Title: title, Nav: "config", Session: s, Data: f, Error: "the change does not pass the checks; nothing was committed"})
	}, func() string {
		if f.New {
			return idpSecretVariable(f.Profile, f.Name)
		}
		return ""
	}(), map[string]any{"idp": f.Name, "profile": f.Profile})
}
