// Package demo serves the local stage's demo page: the fastest way to see
// what Keygate issues. The page is an OpenID Connect client in the browser
// (page/demo.js: the code flow with PKCE, refresh, logout) of a token
// profile; it shows the decoded ID token, access token and userinfo. The
// node creates the demo user in its zone when it is missing. The example
// configuration tags the profile and its client demo, so every stage but
// the local one drops them, and the go-live lint refuses them elsewhere.
package demo

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/password"
	"github.com/keygate/keygate/internal/storage/model"
)

//go:embed page
var page embed.FS

// needed are the token profile's endpoints the page calls.
var needed = []string{config.EndpointAuthorize, config.EndpointToken, config.EndpointUserinfo, config.EndpointLogout}

// Profile is one demo profile built from a snapshot.
type Profile struct {
	name, path string
	index      []byte
	js, css    []byte
	username   string
	password   string // the demo user's, from the stage's env file
}

// New builds the demo profile p of snap.
func New(snap *config.Snapshot, p *config.Profile) (*Profile, error) {
	tp := snap.Profiles[p.TokenProfile]
	if tp == nil {
		return nil, fmt.Errorf("token-profile: profile %q is not served by this role", p.TokenProfile)
	}
	var missing []string
	for _, ep := range needed {
		if !slices.Contains(tp.Endpoints, ep) {
			missing = append(missing, ep)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("token-profile: profile %q must serve %s for the demo page", tp.Name, strings.Join(missing, ", "))
	}
	cl := snap.Clients[p.Client]
	if cl == nil {
		return nil, fmt.Errorf("client: client %q is not a client of this role's token profiles", p.Client)
	}
	path := strings.TrimSuffix(p.Path, "/")
	redirect := ""
	for _, u := range cl.RedirectURIs {
		if pu, err := url.Parse(u); err == nil && strings.TrimSuffix(pu.Path, "/") == path {
			redirect = u
			break
		}
	}
	if redirect == "" {
		return nil, fmt.Errorf("client: client %q has no redirect URI at the page's path %s/ (add ${PUBLIC_BASE_URL}%s/ to its redirect-uris)", p.Client, path, path)
	}
	if !slices.Contains(cl.Scopes, "openid") {
		return nil, fmt.Errorf("client: client %q must be allowed the openid scope", p.Client)
	}
	tmpl, err := template.ParseFS(page, "page/index.html")
	if err != nil {
		return nil, err
	}
	iss := strings.TrimSuffix(tp.Issuer, "/")
	var buf bytes.Buffer
	err = tmpl.Execute(&buf, map[string]string{
		"Path": path, "Issuer": tp.Issuer, "ClientID": p.Client, "RedirectURI": redirect, "Username": p.User.Username,
		"Scope":     strings.Join(cl.Scopes, " "),
		"Authorize": iss + "/authorize", "Token": iss + "/token", "Userinfo": iss + "/userinfo", "Logout": iss + "/logout",
	})
	if err != nil {
		return nil, err
	}
	js, _ := page.ReadFile("page/demo.js")
	css, _ := page.ReadFile("page/demo.css")
	return &Profile{name: p.Name, path: path, index: buf.Bytes(), js: js, css: css,
		username: strings.ToLower(strings.TrimSpace(p.User.Username)), password: p.User.Password.Reveal()}, nil
}

// EndpointPage labels the page's requests in the metrics.
const EndpointPage = "demo_page"

// MountWith serves the page at <path>/ (routing is not strict: <path>
// too), with wrap (may be nil) before each route.
func (p *Profile) MountWith(r fiber.Router, wrap func(endpoint string) fiber.Handler) {
	route := func(path string, h fiber.Handler) {
		if wrap != nil {
			r.Get(path, wrap(EndpointPage), h)
			return
		}
		r.Get(path, h)
	}
	route(p.path+"/", p.send(p.index, fiber.MIMETextHTMLCharsetUTF8))
	route(p.path+"/demo.js", p.send(p.js, "text/javascript; charset=utf-8"))
	route(p.path+"/demo.css", p.send(p.css, "text/css; charset=utf-8"))
}

func (p *Profile) send(body []byte, contentType string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, contentType)
		c.Set(fiber.HeaderCacheControl, "no-store")
		c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
		// Scripts and styles of this page only; fetches to the issuer's
		// endpoints, which are on the page's origin.
		c.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		c.Set("Referrer-Policy", "no-referrer")
		return c.Send(body)
	}
}

// EnsureUser creates the demo user in zone when no user of that name is
// there; an existing one is left as it is (its password too).
func (p *Profile) EnsureUser(ctx context.Context, st model.Store, zone string, params password.Params) (created bool, err error) {
	_, err = st.Users().GetByUsername(ctx, zone, p.username)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, model.ErrNotFound) {
		return false, fmt.Errorf("look up the demo user: %w", err)
	}
	now := time.Now().UTC()
	u := model.User{ID: model.NewID(), Zone: zone, Username: p.username, PasswordHash: password.Hash(p.password, params),
		Claims: map[string]any{"name": "Demo User"}, Status: model.UserActive, CreatedAt: now, UpdatedAt: now}
	switch err := st.Users().Create(ctx, u); {
	case errors.Is(err, model.ErrConflict):
		return false, nil // another node made it first
	case err != nil:
		return false, fmt.Errorf("create the demo user: %w", err)
	}
	return true, nil
}

// Name is the profile's config name.
func (p *Profile) Name() string { return p.name }

// Path is the profile's mount path; the page is at Path()+"/".
func (p *Profile) Path() string { return p.path }
