package demo

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/password"
	"github.com/keygate/keygate/internal/secret"
	"github.com/keygate/keygate/internal/testkit"
)

func snapshot(endpoints []string, redirect string) (*config.Snapshot, *config.Profile) {
	tp := &config.Profile{Meta: config.Meta{Name: "token"}, Type: config.ProfileToken, Path: "/oauth/v2",
		Issuer: "http://localhost:8080/oauth/v2", Endpoints: endpoints}
	dp := &config.Profile{Meta: config.Meta{Name: "demo"}, Type: config.ProfileDemo, Path: "/demo", TokenProfile: "token",
		Client: "demo-app", User: config.DemoUser{Username: "Demo", Password: secret.New("demo-password-0123")}}
	return &config.Snapshot{Entries: config.Entries{
		Profiles: map[string]*config.Profile{"token": tp, "demo": dp},
		Clients: map[string]*config.Client{"demo-app": {Profile: "token", RedirectURIs: []string{redirect},
			GrantTypes: []string{config.GrantAuthorizationCode}, Scopes: []string{"openid", "profile"}}},
	}}, dp
}

var all = []string{config.EndpointAuthorize, config.EndpointToken, config.EndpointUserinfo, config.EndpointLogout}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name      string
		endpoints []string
		redirect  string
		want      string
	}{
		{"endpoints", []string{config.EndpointAuthorize, config.EndpointToken}, "http://localhost:8080/demo/",
			`profile "token" must serve userinfo, logout for the demo page`},
		{"redirect", all, "http://localhost:3000/callback", `client "demo-app" has no redirect URI at the page's path /demo/`},
	} {
		snap, dp := snapshot(tc.endpoints, tc.redirect)
		if _, err := New(snap, dp); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// The page carries the client's settings and is served with a strict
// CSP; the user is created once.
func TestPageAndUser(t *testing.T) {
	snap, dp := snapshot(all, "http://localhost:8080/demo/")
	p, err := New(snap, dp)
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	p.MountWith(app, nil)
	resp, err := app.Test(httptest.NewRequest("GET", "/demo/", nil))
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 4096)
	n, _ := resp.Body.Read(body)
	page := string(body[:n])
	for _, want := range []string{`data-client="demo-app"`, `data-redirect="http://localhost:8080/demo/"`,
		`data-token="http://localhost:8080/oauth/v2/token"`, `data-scope="openid profile"`, `<script src="/demo/demo.js">`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if strings.Contains(page, "demo-password-0123") {
		t.Error("the page shows the password")
	}

	st := testkit.SQLite(t)
	ctx := context.Background()
	params := password.Params{Memory: 1024, Iterations: 1, Parallelism: 1}
	for i, want := range []bool{true, false} {
		created, err := p.EnsureUser(ctx, st, "local", params)
		if err != nil || created != want {
			t.Fatalf("EnsureUser #%d: created %v, %v", i+1, created, err)
		}
	}
	u, err := st.Users().GetByUsername(ctx, "local", "demo")
	if err != nil || u.PasswordHash == "" || u.Claims["name"] != "Demo User" {
		t.Fatalf("the demo user: %+v, %v", u, err)
	}
	if ok, _, _ := password.Verify("demo-password-0123", u.PasswordHash, params); !ok {
		t.Error("the demo user's password does not verify")
	}
}
