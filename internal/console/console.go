// Package console is the admin node's web console under /admin/ui/: the
// fleet, the bundles (history, semantic diffs, lint, activation), a
// browser of the configuration, and editors for everyday changes that
// become commits on a new branch of the configuration repository — never
// a publish. Pages are server-rendered Go templates with embedded assets
// and no script; people sign in with OpenID Connect (the admin token only
// as an audited break-glass), sessions are signed HttpOnly cookies, and
// every form carries a CSRF token bound to the session.
package console

import (
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/gitback"
)

const basePath = "/admin/ui/"

//go:embed templates/*.html static/*
var assets embed.FS

// Config wires the console.
type Config struct {
	Admin *admin.Server
	// BaseURL is the console's external origin (https://admin.example.com):
	// the OIDC redirect URI is BaseURL + /admin/ui/callback.
	BaseURL string
	// OpenID Connect sign-in; without Issuer only break-glass works.
	Issuer       string
	ClientID     string
	ClientSecret []byte
	// RoleClaim names the claim (default "email") whose values Editors
	// and Viewers list; Viewers may be "*": anyone the issuer signs in.
	RoleClaim string
	Editors   []string
	Viewers   []string
	// AdminToken allows the break-glass sign-in.
	AdminToken []byte
	// Git, if set, is where edits go; without it the editors are read-only.
	Git *gitback.Writer
	// ClientsFile is the file a new client is added to (default: the file
	// that holds the most clients).
	ClientsFile string
	// Title brands the pages (default "Keygate"); BrandingDir, if set,
	// holds static/ files that replace the built-in ones of the same name
	// (static/console.css).
	Title       string
	BrandingDir string
	HTTPClient  *http.Client
	Logger      *slog.Logger
}

// Server serves the console.
type Server struct {
	c      Config
	seal   *sealer
	sso    *sso
	tmpl   map[string]*template.Template
	log    *slog.Logger
	secure bool
}

// New checks the configuration and parses the templates.
func New(c Config) (*Server, error) {
	if c.Admin == nil {
		return nil, errors.New("console: no admin server")
	}
	if c.BaseURL == "" {
		return nil, errors.New("console: no base URL (KEYGATE_CONSOLE_URL)")
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.RoleClaim == "" {
		c.RoleClaim = "email"
	}
	if c.Title == "" {
		c.Title = "Keygate"
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	seal, err := newSealer()
	if err != nil {
		return nil, err
	}
	s := &Server{c: c, seal: seal, sso: &sso{c: c}, log: c.Logger, secure: strings.HasPrefix(c.BaseURL, "https://"), tmpl: map[string]*template.Template{}}
	pages, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".html")
		if name == "layout" || name == "changes" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/changes.html", p)
		if err != nil {
			return nil, err
		}
		s.tmpl[name] = t
	}
	return s, nil
}

// Handler serves /admin/ui/.
func (c *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	var static fs.FS
	static, _ = fs.Sub(assets, "static")
	if c.c.BrandingDir != "" {
		static = overlay{os.DirFS(filepath.Join(c.c.BrandingDir, "static")), static}
	}
	mux.Handle("GET "+basePath+"static/", http.StripPrefix(basePath+"static/", http.FileServer(http.FS(static))))
	mux.HandleFunc("GET "+basePath+"login", c.loginPage)
	mux.HandleFunc("GET "+basePath+"login/sso", c.startSSO)
	mux.HandleFunc("GET "+basePath+"callback", c.callback)
	mux.HandleFunc("POST "+basePath+"break-glass", c.breakGlass)
	mux.HandleFunc("GET "+basePath+"{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, basePath+"fleet", http.StatusFound)
	})
	c.page(mux, "POST "+basePath+"logout", RoleViewer, c.logout)
	c.page(mux, "GET "+basePath+"fleet", RoleViewer, c.fleet)
	c.page(mux, "GET "+basePath+"bundles", RoleViewer, c.bundles)
	c.page(mux, "GET "+basePath+"bundles/diff", RoleViewer, c.diff)
	c.page(mux, "GET "+basePath+"bundles/{version}/activate", RoleEditor, c.confirmActivate)
	c.page(mux, "POST "+basePath+"bundles/{version}/activate", RoleEditor, c.activate)
	c.page(mux, "GET "+basePath+"config", RoleViewer, c.browse)
	c.page(mux, "GET "+basePath+"drift", RoleViewer, c.drift)
	c.page(mux, "GET "+basePath+"clients/{name}/edit", RoleEditor, c.editClient)
	c.page(mux, "POST "+basePath+"clients/{name}/edit", RoleEditor, c.saveClient)
	c.page(mux, "GET "+basePath+"clients/new", RoleEditor, c.newClient)
	c.page(mux, "POST "+basePath+"clients/new", RoleEditor, c.createClient)
	c.page(mux, "GET "+basePath+"idps/{profile}/{name}/edit", RoleEditor, c.editIdP)
	c.page(mux, "POST "+basePath+"idps/{profile}/{name}/edit", RoleEditor, c.saveIdP)
	c.page(mux, "GET "+basePath+"idps/new", RoleEditor, c.newIdP)
	c.page(mux, "POST "+basePath+"idps/new", RoleEditor, c.createIdP)
	return headers(mux)
}

// overlay serves a file from top when it has it, else from base.
type overlay struct{ top, base fs.FS }

func (o overlay) Open(name string) (fs.File, error) {
	if f, err := o.top.Open(name); err == nil {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			return f, nil
		}
		f.Close()
	}
	return o.base.Open(name)
}

// page registers a handler that needs a session with at least role; a
// POST must carry the session's CSRF token.
func (c *Server) page(mux *http.ServeMux, pattern, role string, h func(http.ResponseWriter, *http.Request, *session)) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		s := c.session(r)
		if s == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, basePath+"login", http.StatusFound)
				return
			}
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		if role == RoleEditor && s.Role != RoleEditor {
			c.audit("console_forbidden", s.Actor(), map[string]any{"path": r.URL.Path})
			c.render(w, r, http.StatusForbidden, "error", page{Title: "Not allowed", Session: s, Error: "this needs the editor role; you are a viewer"})
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			if err := r.ParseForm(); err != nil || !c.seal.checkCSRF(s, r.PostFormValue("csrf")) {
				c.audit("console_csrf_refused", s.Actor(), map[string]any{"path": r.URL.Path})
				c.render(w, r, http.StatusForbidden, "error", page{Title: "Refused", Session: s, Error: "the form is missing its security token or it has expired; reload the page and try again"})
				return
			}
		}
		h(w, r, s)
	})
}

// headers sets what every console response carries: no caching, no
// framing, no script, no referrer.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if !strings.HasPrefix(r.URL.Path, basePath+"static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// page is what every template gets.
type page struct {
	Title   string
	Brand   string
	Session *session
	CSRF    string
	Nav     string
	Error   string
	Notice  string
	Data    any
}

func (c *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.Brand = c.c.Title
	if p.Session != nil {
		p.CSRF = c.seal.csrf(p.Session)
	}
	t := c.tmpl[name]
	if t == nil {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	var buf strings.Builder
	if err := t.Execute(&buf, p); err != nil {
		c.log.Error("console: render", "page", name, "error", err.Error())
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(buf.String()))
}

// audit writes a console event to the log's audit stream.
func (c *Server) audit(event, actor string, details map[string]any) {
	attrs := []any{"audit", true, "event", event, "actor", actor}
	for k, v := range details {
		attrs = append(attrs, k, v)
	}
	c.log.Info("audit: "+event, attrs...)
}

func (c *Server) loginData() map[string]any {
	return map[string]any{"SSO": c.c.Issuer != "", "Issuer": c.c.Issuer}
}

func (c *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if c.session(r) != nil {
		http.Redirect(w, r, basePath+"fleet", http.StatusFound)
		return
	}
	c.render(w, r, http.StatusOK, "login", page{Title: "Sign in", Data: c.loginData()})
}

var funcs = template.FuncMap{
	"join": strings.Join,
	"age": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Round(time.Second).String()
	},
	"lines": func(list []string) string { return strings.Join(list, "\n") },
}
