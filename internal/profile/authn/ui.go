package authn

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// The built-in pages and static files. An operator's templates directory
// overrides any of them by name (see the README, "Branding the login page").
// The layout (head and foot) is not an override: every page may call it.
//
//go:embed ui/login.html ui/error.html ui/layout.html ui/static
var builtin embed.FS

// Template names and the static subdirectory of a templates directory.
const (
	loginTemplate  = "login.html"
	errorTemplate  = "error.html"
	layoutTemplate = "layout.html"
	staticDir      = "static"
)

// Limits on a templates directory, read wholly into memory at build.
const (
	maxStaticFiles = 256
	maxStaticBytes = 16 << 20
)

// loginData is what login.html renders. Every field is documented in the
// README: it is the override surface operators depend on across upgrades.
type loginData struct {
	Lang       string // "en"
	Title      string // "Sign in"
	Action     string // the form's action: {path}/login
	StaticPath string // {path}/static, for stylesheets and images
	CSRF       string // hidden field "csrf"
	ReturnTo   string // hidden field "return_to"
	Username   string // the username typed, after a failure
	Error      string // a message to show, or empty
	// Federated are the "Sign in with …" links of the oidc authenticators,
	// each {Name, Label, URL}, in name order.
	Federated []federatedButton
}

// errorData is what error.html renders.
type errorData struct {
	Lang       string
	Title      string
	Message    string
	StaticPath string
}

// staticFile is one file served under {path}/static/.
type staticFile struct {
	body        []byte
	contentType string
}

// ui is the parsed pages and static files of one profile.
type ui struct {
	login, errPage *template.Template
	static         map[string]staticFile // by path below static/
}

var defaultUI = mustBuiltinUI()

func mustBuiltinUI() *ui {
	sub, err := fs.Sub(builtin, "ui")
	if err != nil {
		panic(err)
	}
	u, err := readUI(sub, nil, builtinLayout())
	if err != nil {
		panic(err)
	}
	return u
}

// loadUI reads the templates directory dir over the built-in UI: a page or
// static file present in dir replaces the built-in one of the same name.
func loadUI(dir string) (*ui, error) {
	if dir == "" {
		return defaultUI, nil
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("templates: %s is not a directory", dir)
	}
	// The built-in layout too, so that an override copied from a built-in
	// page (which calls head and foot) works; a page may define its own.
	return readUI(os.DirFS(dir), defaultUI, builtinLayout())
}

func builtinLayout() string {
	b, err := fs.ReadFile(builtin, "ui/"+layoutTemplate)
	if err != nil {
		panic(err) // embedded
	}
	return string(b)
}

// readUI reads the pages and static files of fsys over base (nil: none).
// layout, when not empty, is parsed with each page, which may then call
// the templates it defines.
func readUI(fsys fs.FS, base *ui, layout string) (*ui, error) {
	u := &ui{static: map[string]staticFile{}}
	if base != nil {
		*u = ui{login: base.login, errPage: base.errPage, static: map[string]staticFile{}}
		for k, v := range base.static {
			u.static[k] = v
		}
	}
	var errs []error
	for _, name := range []string{loginTemplate, errorTemplate} {
		b, err := fs.ReadFile(fsys, name)
		if errors.Is(err, fs.ErrNotExist) && base != nil {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("templates: %w", err))
			continue
		}
		t, err := parsePage(name, string(b), layout)
		if err != nil {
			errs = append(errs, fmt.Errorf("templates: %w", err))
			continue
		}
		// Render once with sample data, so a template that names a field
		// that does not exist fails the load, not a login.
		var sample any = loginData{}
		if name == errorTemplate {
			sample = errorData{}
		}
		if err := t.Execute(&bytes.Buffer{}, sample); err != nil {
			errs = append(errs, fmt.Errorf("templates: %w", err))
			continue
		}
		if name == loginTemplate {
			u.login = t
		} else {
			u.errPage = t
		}
	}
	var total, count int
	err := fs.WalkDir(fsys, staticDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == staticDir {
				return fs.SkipDir
			}
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && p != staticDir {
				return fs.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") || !d.Type().IsRegular() && d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		count++
		total += len(b)
		if count > maxStaticFiles || total > maxStaticBytes {
			return fmt.Errorf("%s: more than %d files or %d MiB", staticDir, maxStaticFiles, maxStaticBytes>>20)
		}
		ct := mime.TypeByExtension(filepath.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		u.static[strings.TrimPrefix(path.Clean(p), staticDir+"/")] = staticFile{body: b, contentType: ct}
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("templates: %w", err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return u, nil
}

// parsePage parses the page text named name, with layout if not empty.
func parsePage(name, text, layout string) (*template.Template, error) {
	t := template.New(name).Option("missingkey=error")
	if layout != "" {
		if _, err := t.New(layoutTemplate).Parse(layout); err != nil {
			return nil, err
		}
	}
	return t.Parse(text)
}
