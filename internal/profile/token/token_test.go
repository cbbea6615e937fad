package token

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/secret"
	"github.com/keygate/keygate/internal/testkit"
)

// keySet returns a set of a new ES256 key (active) and a new EdDSA key.
func keySet(t testing.TB) *keys.Set {
	t.Helper()
	var signers []*keys.Signer
	for name, k := range map[string]*config.Key{
		"a-ec": {Algorithm: config.AlgES256, PrivateKey: secret.New(string(testkit.MustKey(t, "ES256").PEM))},
		"b-ed": {Algorithm: config.AlgEdDSA, PrivateKey: secret.New(string(testkit.MustKey(t, "EdDSA").PEM))},
	} {
		k.Name = name
		s, err := keys.Parse(k)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, s)
	}
	if signers[0].Name != "a-ec" {
		signers[0], signers[1] = signers[1], signers[0]
	}
	set, err := keys.NewSet(signers)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func snapshot(profiles ...*config.Profile) *config.Snapshot {
	s := &config.Snapshot{
		Schema: 1,
		Entries: config.Entries{
			Profiles: map[string]*config.Profile{},
			Clients: map[string]*config.Client{
				"web-app":     {Profile: "token", Scopes: []string{"openid", "profile", "email"}},
				"billing-api": {Profile: "token", Scopes: []string{"invoices:read"}},
				"partner":     {Profile: "token-external", Scopes: []string{"partner:write"}},
			},
		},
	}
	for name, c := range s.Clients {
		c.Name = name
	}
	for _, p := range profiles {
		s.Profiles[p.Name] = p
	}
	return s
}

func tokenProfile(name, path, issuer string, endpoints ...string) *config.Profile {
	p := &config.Profile{Type: config.ProfileToken, Path: path, Issuer: issuer, Endpoints: endpoints}
	p.Name = name
	return p
}

func mount(t *testing.T, snap *config.Snapshot, cp *config.Profile, ks *keys.Set) (*Profile, *fiber.App) {
	t.Helper()
	p, err := New(snap, cp, ks, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New()
	p.Mount(app)
	return p, app
}

func do(t *testing.T, app *fiber.App, method, target string) (*http.Response, []byte) {
	t.Helper()
	resp, err := app.Test(httptest.NewRequest(method, target, nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func discovery(t *testing.T, app *fiber.App, path string) map[string]any {
	t.Helper()
	resp, body := do(t, app, http.MethodGet, path+"/.well-known/openid-configuration")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("discovery status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("discovery content type %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=60" {
		t.Fatalf("discovery cache-control %q", cc)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// roundTrip normalizes a Go value to what JSON decoding yields.
func roundTrip(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDiscoveryEveryEndpoint(t *testing.T) {
	ks := keySet(t)
	withAllEndpoints(t)
	cp := tokenProfile("token", "/oauth/v2", "https://id.example.com/oauth/v2", config.TokenEndpoints...)
	cp.AuthenticationProfile = "authn"
	ap := &config.Profile{Type: config.ProfileAuthentication, Path: "/authn"}
	ap.Name = "authn"
	_, app := mount(t, snapshot(cp, ap), cp, ks)

	got := discovery(t, app, "/oauth/v2")
	auth := []string{"client_secret_basic", "client_secret_post", "private_key_jwt"}
	algs := []string{"ES256", "EdDSA", "RS256"}
	want := roundTrip(t, map[string]any{
		"issuer":                                "https://id.example.com/oauth/v2",
		"authorization_endpoint":                "https://id.example.com/oauth/v2/authorize",
		"token_endpoint":                        "https://id.example.com/oauth/v2/token",
		"userinfo_endpoint":                     "https://id.example.com/oauth/v2/userinfo",
		"jwks_uri":                              "https://id.example.com/oauth/v2/jwks",
		"end_session_endpoint":                  "https://id.example.com/oauth/v2/logout",
		"introspection_endpoint":                "https://id.example.com/oauth/v2/introspect",
		"revocation_endpoint":                   "https://id.example.com/oauth/v2/revoke",
		"pushed_authorization_request_endpoint": "https://id.example.com/oauth/v2/par",
		"device_authorization_endpoint":         "https://id.example.com/oauth/v2/device_authorization",
		"scopes_supported":                      []string{"email", "invoices:read", "openid", "profile"},
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code", "client_credentials", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256", "EdDSA"},
		"code_challenge_methods_supported":      []string{"S256"},
		"claims_supported": []string{"acr", "address", "amr", "at_hash", "aud", "auth_time", "birthdate", "email", "email_verified",
			"exp", "family_name", "gender", "given_name", "iat", "iss", "locale", "middle_name", "name", "nickname", "nonce",
			"phone_number", "phone_number_verified", "picture", "preferred_username", "profile", "sid", "sub", "updated_at",
			"website", "zoneinfo"},
		"response_modes_supported":                                 []string{"query"},
		"prompt_values_supported":                                  []string{"none", "login", "consent", "select_account"},
		"authorization_response_iss_parameter_supported":           true,
		"token_endpoint_auth_methods_supported":                    auth,
		"token_endpoint_auth_signing_alg_values_supported":         algs,
		"introspection_endpoint_auth_methods_supported":            auth,
		"introspection_endpoint_auth_signing_alg_values_supported": algs,
		"revocation_endpoint_auth_methods_supported":               auth,
		"revocation_endpoint_auth_signing_alg_values_supported":    algs,
		"dpop_signing_alg_values_supported":                        []string{"ES256", "EdDSA", "RS256", "PS256"},
	})
	if !reflect.DeepEqual(got, want) {
		gb, _ := json.MarshalIndent(got, "", "  ")
		t.Fatalf("discovery:\n%s", gb)
	}

	// POST endpoints answer GET with 405.
	for _, path := range []string{"/token", "/introspect", "/revoke"} {
		if resp, _ := do(t, app, http.MethodGet, "/oauth/v2"+path); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
			t.Errorf("GET %s: %d, want 405", path, resp.StatusCode)
		}
	}
	// GET-and-POST endpoints answer other methods with 405.
	for _, path := range []string{"/authorize", "/userinfo", "/logout"} {
		if resp, _ := do(t, app, http.MethodPut, "/oauth/v2"+path); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD, POST" {
			t.Errorf("PUT %s: %d, want 405", path, resp.StatusCode)
		}
	}
}

// TestDiscoveryExternal is the "external" profile of SPEC.md: token, jwks
// and discovery only.
func TestDiscoveryExternal(t *testing.T) {
	withAllEndpoints(t)
	ks := keySet(t)
	cp := tokenProfile("token-external", "/ext/", "https://api.example.com/ext/", "token", "jwks", "discovery")
	_, app := mount(t, snapshot(cp), cp, ks)

	got := discovery(t, app, "/ext")
	for _, absent := range []string{"authorization_endpoint", "userinfo_endpoint", "end_session_endpoint",
		"introspection_endpoint", "revocation_endpoint", "response_types_supported", "code_challenge_methods_supported",
		"introspection_endpoint_auth_methods_supported", "revocation_endpoint_auth_methods_supported"} {
		if v, ok := got[absent]; ok {
			t.Errorf("%s = %v, want absent", absent, v)
		}
	}
	checks := map[string]any{
		"issuer":                "https://api.example.com/ext/", // exactly as configured
		"token_endpoint":        "https://api.example.com/ext/token",
		"jwks_uri":              "https://api.example.com/ext/jwks",
		"grant_types_supported": []any{"client_credentials"},
		"scopes_supported":      []any{"openid", "partner:write"},
	}
	for k, want := range checks {
		if !reflect.DeepEqual(got[k], want) {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
}

func TestOnlyListedEndpointsServed(t *testing.T) {
	ks := keySet(t)
	cp := tokenProfile("token", "/oauth/v2", "https://id.example.com/oauth/v2", "discovery")
	_, app := mount(t, snapshot(cp), cp, ks)
	if _, ok := discovery(t, app, "/oauth/v2")["jwks_uri"]; ok {
		t.Error("jwks_uri listed though jwks is not served")
	}
	if resp, _ := do(t, app, http.MethodGet, "/oauth/v2/jwks"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unlisted jwks: %d, want 404", resp.StatusCode)
	}

	cp = tokenProfile("token", "/oauth/v2", "https://id.example.com/oauth/v2", "jwks")
	_, app = mount(t, snapshot(cp), cp, ks)
	if resp, _ := do(t, app, http.MethodGet, "/oauth/v2/.well-known/openid-configuration"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unlisted discovery: %d, want 404", resp.StatusCode)
	}
	if resp, _ := do(t, app, http.MethodGet, "/oauth/v2/jwks"); resp.StatusCode != http.StatusOK {
		t.Errorf("jwks: %d", resp.StatusCode)
	}
}

func TestJWKS(t *testing.T) {
	ks := keySet(t)
	cp := tokenProfile("token", "/oauth/v2", "https://id.example.com/oauth/v2", "jwks")
	_, app := mount(t, snapshot(cp), cp, ks)

	resp, body := do(t, app, http.MethodGet, "/oauth/v2/jwks")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for h, want := range map[string]string{
		"Content-Type":                "application/jwk-set+json",
		"Cache-Control":               "public, max-age=60",
		"Access-Control-Allow-Origin": "*",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	set, err := jwk.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != len(ks.All) {
		t.Fatalf("%d keys, want %d", set.Len(), len(ks.All))
	}
	for i, s := range ks.All {
		k, ok := set.Key(i)
		if !ok || k.KeyID() != s.KID {
			t.Fatalf("key %d kid %q, want %q", i, k.KeyID(), s.KID)
		}
		if _, ok := set.LookupKeyID(s.KID); !ok {
			t.Fatalf("kid %s missing", s.KID)
		}
	}

	// HEAD answers like GET without a body; other methods get 405.
	resp, body = do(t, app, http.MethodHead, "/oauth/v2/jwks")
	if resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Errorf("HEAD: %d, %d body bytes", resp.StatusCode, len(body))
	}
	resp, _ = do(t, app, http.MethodPost, "/oauth/v2/jwks")
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestRootPath(t *testing.T) {
	ks := keySet(t)
	cp := tokenProfile("token", "/", "https://id.example.com", "discovery", "jwks")
	_, app := mount(t, snapshot(cp), cp, ks)
	got := discovery(t, app, "")
	if got["jwks_uri"] != "https://id.example.com/jwks" {
		t.Errorf("jwks_uri %v", got["jwks_uri"])
	}
	if resp, _ := do(t, app, http.MethodGet, "/jwks"); resp.StatusCode != http.StatusOK {
		t.Errorf("jwks at root: %d", resp.StatusCode)
	}
}

func TestNewErrors(t *testing.T) {
	ks := keySet(t)
	good := func() *config.Profile {
		return tokenProfile("token", "/oauth/v2", "https://id.example.com/oauth/v2", "discovery")
	}
	cases := []struct {
		name string
		edit func(p *config.Profile)
		ks   *keys.Set
		want string
	}{
		{"type", func(p *config.Profile) { p.Type = config.ProfileAuthentication }, ks, `profile "token" is of type "authentication", not "token"`},
		{"no-keys", func(*config.Profile) {}, nil, `profile "token": no signing keys`},
		{"endpoint", func(p *config.Profile) { p.Endpoints = append(p.Endpoints, "device") }, ks, `profile "token": unknown endpoint "device"; want one of discovery, jwks, authorize, token, introspect, revoke, userinfo, logout, par, device-authorization`},
		{"no-issuer", func(p *config.Profile) { p.Issuer = "" }, ks, `profile "token": issuer: required`},
		{"relative-issuer", func(p *config.Profile) { p.Issuer = "/oauth/v2" }, ks, `profile "token": issuer: must be an absolute http(s) URL`},
		{"issuer-query", func(p *config.Profile) { p.Issuer = "https://id.example.com/?x=1" }, ks, `profile "token": issuer: must not have a query or fragment`},
		{"par-required", func(p *config.Profile) { p.PushedAuthorizationRequests.Required = true }, ks, `profile "token": pushed-authorization-requests.required needs the par endpoint`},
		{"par-alone", func(p *config.Profile) { p.Endpoints = append(p.Endpoints, config.EndpointPAR) }, ks, `profile "token": the par endpoint needs the authorize endpoint`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := good()
			c.edit(p)
			_, err := New(snapshot(p), p, c.ks, Deps{})
			if err == nil || err.Error() != c.want {
				t.Fatalf("err %v\nwant %s", err, c.want)
			}
		})
	}
}

func TestDiscoveryIsPreSerialized(t *testing.T) {
	ks := keySet(t)
	cp := tokenProfile("token", "/oauth/v2", "https://id.example.com/oauth/v2", "discovery")
	p, app := mount(t, snapshot(cp), cp, ks)
	_, body := do(t, app, http.MethodGet, "/oauth/v2/.well-known/openid-configuration")
	if string(body) != string(p.Discovery()) || !strings.HasPrefix(string(body), `{"issuer":`) {
		t.Fatalf("served %s", body)
	}
}

// withAllEndpoints pretends every endpoint is built, to test the discovery
// metadata of endpoints that later issues add.
func withAllEndpoints(t *testing.T) {
	saved := implemented
	implemented = map[string]bool{}
	for _, e := range config.TokenEndpoints {
		implemented[e] = true
	}
	t.Cleanup(func() { implemented = saved })
}

// An endpoint this build does not serve is refused, not advertised.
func TestUnbuiltEndpointRefused(t *testing.T) {
	saved := implemented
	implemented = map[string]bool{}
	for e, ok := range saved {
		implemented[e] = ok && e != config.EndpointUserinfo && e != config.EndpointAuthorize && e != config.EndpointLogout && e != config.EndpointPAR &&
			e != config.EndpointDeviceAuthorization
	}
	t.Cleanup(func() { implemented = saved })
	ks := keySet(t)
	cp := tokenProfile("token", "/oauth/v2", "https://id.example.com/oauth/v2", "discovery", "userinfo")
	_, err := New(snapshot(cp), cp, ks, Deps{})
	if err == nil || !strings.Contains(err.Error(), `profiles.token.endpoints: "userinfo" is not available in this version of keygate (available: discovery, jwks, token, introspect, revoke)`) {
		t.Fatalf("err = %v", err)
	}
}
