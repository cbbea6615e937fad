package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// base is a small valid config; cases add files to it or replace it.
const base = `schema: 1
service-roles:
  default: {zone: local, profiles: [token]}
zones:
  local: {data-source: db}
data-sources:
  db: {type: sqlite, path: /tmp/keygate-test.db}
keys:
  k1: {algorithm: ES256, private-key: $KEY}
profiles:
  token:
    type: token
    path: /oauth
    issuer: https://id.example.com/oauth
    signing-keys: [k1]
    endpoints: [discovery, jwks]
`

const validSecret = "0123456789abcdef0123"

func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func load(t *testing.T, files map[string]string, opts Options) (*Snapshot, error) {
	t.Helper()
	opts.Dir = writeDir(t, files)
	if opts.Environ == nil {
		opts.Environ = []string{"KEY=dummy-pem", "SECRET=" + validSecret}
	}
	return loadChecked(t, opts)
}

func TestLoadValid(t *testing.T) {
	snap, err := load(t, map[string]string{
		"00-base.yaml": base,
		"10-clients.yaml": `clients:
  api:
    profile: token
    secret: $SECRET
    grant-types: [client_credentials]
    scopes: [read]
  web:
    profile: token
    redirect-uris: [http://127.0.0.1:3000/cb]
    grant-types: [authorization_code]
`,
	}, Options{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if snap.Role != "default" || snap.Schema != 1 {
		t.Errorf("role %q schema %d", snap.Role, snap.Schema)
	}
	api := snap.Clients["api"]
	if api.Secret.Reveal() != validSecret || api.TokenEndpointAuthMethod != AuthSecretBasic {
		t.Errorf("api client: method %q", api.TokenEndpointAuthMethod)
	}
	if web := snap.Clients["web"]; web.TokenEndpointAuthMethod != AuthNone {
		t.Errorf("web client method %q, want none", web.TokenEndpointAuthMethod)
	}
	tok := snap.Profiles["token"]
	if tok.AccessTokens.Format != FormatJWT || tok.AccessTokens.Lifetime.D() != DefaultAccessTokenLifetime || !*tok.RefreshTokens.Rotate {
		t.Errorf("token profile defaults not applied: %+v", tok.AccessTokens)
	}
	if tok.Pos.File != "00-base.yaml" || tok.Pos.Line != 11 {
		t.Errorf("token profile position %v", tok.Pos)
	}
	if len(snap.Hash) != 64 {
		t.Errorf("hash %q", snap.Hash)
	}
}

// TestBadConfigs: every loading error, with its exact message.
func TestBadConfigs(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		opts  Options
		want  []string
	}{
		{
			name: "unknown key with suggestion",
			files: map[string]string{"00-base.yaml": base, "clients.yaml": `clients:
  web:
    profile: token
    redirect-uri: [https://app.example.com/cb]
    grant-types: [authorization_code]
`},
			want: []string{
				`clients.yaml:2:3: clients.web.redirect-uris: is required for the authorization_code grant`,
				`clients.yaml:4:5: clients.web.redirect-uri: unknown key "redirect-uri" (did you mean "redirect-uris"?)`,
			},
		},
		{
			name: "entry defined twice names both places",
			files: map[string]string{"00-base.yaml": base, "a.yaml": `keys:
  k2: {algorithm: ES256, private-key: x}
`, "b.yaml": `
keys:
  k2: {algorithm: ES256, private-key: y}
`},
			want: []string{`b.yaml:3:3: keys.k2: already defined at a.yaml:2`},
		},
		{
			name:  "every missing variable, each with its position",
			files: map[string]string{"00-base.yaml": strings.ReplaceAll(base, "https://id.example.com", "${BASE_URL}") + "    access-tokens: {lifetime: $TTL}\n"},
			opts:  Options{Environ: []string{"SECRET=x"}},
			want: []string{
				`00-base.yaml:9:39: keys.k1.private-key: variable KEY is not set (set it in the environment or an env file, or write ${KEY:-default})`,
				`00-base.yaml:14:13: profiles.token.issuer: variable BASE_URL is not set (set it in the environment or an env file, or write ${BASE_URL:-default})`,
				`00-base.yaml:17:31: profiles.token.access-tokens.lifetime: variable TTL is not set (set it in the environment or an env file, or write ${TTL:-default})`,
			},
		},
		{
			name: "a variable only another role needs is not required",
			files: map[string]string{"00-base.yaml": base, "eu.yaml": `service-roles:
  eu: {zone: eu, profiles: [token]}
zones:
  eu: {data-source: eu-db}
data-sources:
  eu-db: {type: postgres, url: $EU_DATABASE_URL}
`},
			want: nil,
		},
		{
			name: "the same config for the other role reports its variable",
			files: map[string]string{"00-base.yaml": base, "eu.yaml": `service-roles:
  eu: {zone: eu, profiles: [token]}
zones:
  eu: {data-source: eu-db}
data-sources:
  eu-db: {type: postgres, url: $EU_DATABASE_URL}
`},
			opts: Options{Role: "eu"},
			want: []string{`eu.yaml:6:32: data-sources.eu-db.url: variable EU_DATABASE_URL is not set (set it in the environment or an env file, or write ${EU_DATABASE_URL:-default})`},
		},
		{
			name:  "unknown section",
			files: map[string]string{"00-base.yaml": base, "x.yaml": "client:\n  a: {}\n"},
			want:  []string{`x.yaml:1:1: unknown section "client" (did you mean "clients"?) (sections: schema, service-roles, zones, data-sources, keys, profiles, clients)`},
		},
		{
			name:  "schema missing",
			files: map[string]string{"00-base.yaml": strings.Replace(base, "schema: 1\n", "", 1)},
			want:  []string{`DIR: schema: no file declares the schema version; add ` + "`schema: 1`" + ` to one file`},
		},
		{
			name:  "schema too new",
			files: map[string]string{"00-base.yaml": strings.Replace(base, "schema: 1", "schema: 7", 1)},
			want:  []string{`00-base.yaml:1:9: schema: schema 7 is newer than this keygate understands (it supports 1); upgrade keygate first`},
		},
		{
			name:  "schema disagreement",
			files: map[string]string{"00-base.yaml": base, "z.yaml": "schema: 2\n"},
			want:  []string{`z.yaml:1:9: schema: schema 2 disagrees with schema 1 at 00-base.yaml:1`},
		},
		{
			name: "typed values",
			files: map[string]string{"00-base.yaml": base, "t.yaml": `data-sources:
  pg: {type: postgres, url: "postgres://u:p@h/db", max-connections: many}
profiles:
  p2:
    type: token
    path: /p2
    issuer: https://id.example.com/p2
    signing-keys: [k1]
    endpoints: [jwks]
    refresh-tokens: {lifetime: 30 days, rotate: yes}
`},
			want: []string{
				`t.yaml:2:69: data-sources.pg.max-connections: must be an integer, got "many"`,
				`t.yaml:10:32: profiles.p2.refresh-tokens.lifetime: must be a duration such as 90s, 5m or 720h, got "30 days"`,
				`t.yaml:10:49: profiles.p2.refresh-tokens.rotate: must be true or false, got "yes"`,
			},
		},
		{
			name: "placeholder fills a typed field",
			files: map[string]string{"00-base.yaml": base, "t.yaml": `data-sources:
  pg: {type: postgres, url: "postgres://h/db", max-connections: $CONNS}
`},
			opts: Options{Environ: []string{"KEY=x", "CONNS=zero"}},
			want: []string{`t.yaml:2:65: data-sources.pg.max-connections: must be an integer, got "$CONNS" (value not shown)`},
		},
		{
			name: "references",
			files: map[string]string{"00-base.yaml": base, "r.yaml": `service-roles:
  edge: {zone: mars, profiles: [tokn]}
zones:
  z2: {data-source: nope}
profiles:
  authn: {type: authentication, path: /authn, authenticators: {pw: {type: password}}}
  users: {type: user-management, path: /scim, token-profile: authn}
  t2:
    type: token
    path: /t2
    issuer: https://id.example.com/t2
    signing-keys: [k9]
    endpoints: [authorize]
clients:
  c1: {profile: authn, secret: $SECRET, grant-types: [client_credentials]}
`},
			want: []string{
				`r.yaml:2:16: service-roles.edge.zone: refers to zone "mars", which is not defined`,
				`r.yaml:2:33: service-roles.edge.profiles[0]: refers to profile "tokn", which is not defined (did you mean "token"?)`,
				`r.yaml:4:21: zones.z2.data-source: refers to data source "nope", which is not defined`,
				`r.yaml:7:62: profiles.users.token-profile: refers to profile "authn" of type authentication; it must be a token profile`,
				`r.yaml:8:3: profiles.t2.authentication-profile: is required when the authorize endpoint is served`,
				`r.yaml:12:20: profiles.t2.signing-keys[0]: refers to key "k9", which is not defined (did you mean "k1"?)`,
				`r.yaml:15:17: clients.c1.profile: refers to profile "authn" of type authentication; it must be a token profile`,
			},
		},
		{
			name: "reference to a disabled or excluded entry says why",
			files: map[string]string{"00-base.yaml": base, "d.yaml": `keys:
  k2: {algorithm: EdDSA, private-key: x, enabled: false}
profiles:
  beta:
    type: token
    path: /beta
    issuer: https://id.example.com/beta
    signing-keys: [k2]
    endpoints: [jwks]
    tags: [under-test]
clients:
  c1: {profile: beta, secret: $SECRET, grant-types: [client_credentials]}
`},
			opts: Options{ExcludeTags: []string{"under-test"}},
			want: []string{`d.yaml:12:17: clients.c1.profile: refers to profile "beta", but it carries the excluded tag "under-test" (KEYGATE_EXCLUDE_TAGS)`},
		},
		{
			name:  "YAML syntax error",
			files: map[string]string{"00-base.yaml": base, "bad.yaml": "clients:\n  a: [1, 2\n"},
			want:  []string{`bad.yaml:1: invalid YAML: did not find expected ',' or ']'`},
		},
		{
			name:  "undefined service role",
			files: map[string]string{"00-base.yaml": base},
			opts:  Options{Role: "edge"},
			want:  []string{`DIR: service-roles: service role "edge" is not defined (defined: default)`},
		},
		{
			name: "a secret value never appears in an error",
			files: map[string]string{"00-base.yaml": base, "s.yaml": `data-sources:
  pg: {type: postgres, url: "mysql://admin:hunter2-SECRET@db/x"}
clients:
  c1: {profile: token, secret: short-SECRET, grant-types: [client_credentials]}
`},
			want: []string{
				`s.yaml:2:29: data-sources.pg.url: must be a postgres:// or postgresql:// URL`,
				`s.yaml:4:32: clients.c1.secret: is too short: use at least 16 random characters`,
			},
		},
		{
			name: "redirect URIs",
			files: map[string]string{"00-base.yaml": base, "c.yaml": `clients:
  web:
    profile: token
    grant-types: [authorization_code]
    redirect-uris: [https://app.example.com/cb#frag, http://app.example.com/cb, /relative, https://app.example.com/cb, https://app.example.com/cb]
`},
			want: []string{
				`c.yaml:5:21: clients.web.redirect-uris[0]: must not contain a fragment (RFC 6749 §3.1.2), got "https://app.example.com/cb#frag"`,
				`c.yaml:5:54: clients.web.redirect-uris[1]: must use https (http is allowed for loopback hosts only), got "http://app.example.com/cb"`,
				`c.yaml:5:81: clients.web.redirect-uris[2]: must be an absolute URI, got "/relative"`,
				`c.yaml:5:120: clients.web.redirect-uris[4]: "https://app.example.com/cb" is listed twice`,
			},
		},
		{
			name: "introspect-all-tokens needs a confidential client",
			files: map[string]string{"00-base.yaml": base, "c.yaml": `clients:
  rs:
    profile: token
    grant-types: [refresh_token]
    introspect-all-tokens: true
  typo:
    profile: token
    secret: typo-secret-0123456789
    grant-types: [client_credentials]
    introspect-all-tokens: yes-please
`},
			want: []string{
				`c.yaml:5:28: clients.rs.introspect-all-tokens: needs a confidential client (a secret or public-keys): introspection does not accept public clients`,
				`c.yaml:10:28: clients.typo.introspect-all-tokens: must be true or false, got "yes-please"`,
			},
		},
		{
			name: "device authorization",
			files: map[string]string{"00-base.yaml": `schema: 1
service-roles:
  default: {zone: z, profiles: [token]}
zones:
  z: {data-source: db}
data-sources:
  db: {type: sqlite, path: /tmp/k.db}
keys:
  k: {algorithm: ES256, private-key: "-----BEGIN PRIVATE KEY-----"}
profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: https://id.example.com/oauth/v2
    signing-keys: [k]
    endpoints: [discovery, device-authorization]
    device-codes: {lifetime: 2h, interval: 1500ms}
`},
			want: []string{
				`00-base.yaml:16:28: profiles.token.endpoints[1]: device-authorization needs an authentication-profile: the user signs in on the verification page`,
				`00-base.yaml:16:28: profiles.token.endpoints[1]: device-authorization needs the token endpoint too: the device polls it (RFC 8628 §3.4)`,
				`00-base.yaml:17:30: profiles.token.device-codes.lifetime: must be between 1m and 30m: long enough to find a second screen, short enough that a guessed user code is useless, got 2h0m0s`,
				`00-base.yaml:17:44: profiles.token.device-codes.interval: must be whole seconds from 1s to 1m (the device is told it in seconds), got 1.5s`,
			},
		},
		{
			name: "fapi-2.0 security profile",
			files: map[string]string{"00-base.yaml": `schema: 1
service-roles:
  default: {zone: z, profiles: [token, authn]}
zones:
  z: {data-source: db}
data-sources:
  db: {type: sqlite, path: /tmp/k.db}
keys:
  ec: {algorithm: ES256, private-key: "-----BEGIN PRIVATE KEY-----"}
  rsa: {algorithm: RS256, private-key: "-----BEGIN PRIVATE KEY-----"}
profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: https://id.example.com/oauth/v2
    signing-keys: [ec, rsa]
    endpoints: [discovery, authorize, token, device-authorization]
    authentication-profile: authn
    authorization-codes: {lifetime: 5m}
    security-profile: fapi-2.0
  authn:
    type: authentication
    path: /authn
    authenticators:
      password: {type: password}
  other:
    type: token
    path: /other
    issuer: https://id.example.com/other
    signing-keys: [ec]
    endpoints: [discovery]
    security-profile: fapi-1.0
clients:
  web:
    profile: token
    secret: web-secret-0123456789abcdef
    grant-types: [authorization_code, urn:ietf:params:oauth:grant-type:token-exchange]
    redirect-uris: [https://app.example.com/cb]
    dpop: "off"
    token-exchange: {delegation: true}
`},
			want: []string{
				`00-base.yaml:16:24: profiles.token.signing-keys[1]: is key "rsa", an RS256 key: security-profile fapi-2.0 signs with ES256 or EdDSA (PS256 is not built)`,
				`00-base.yaml:17:16: profiles.token.endpoints: must list par: security-profile fapi-2.0 pushes every authorization request (PAR)`,
				`00-base.yaml:17:46: profiles.token.endpoints[3]: device-authorization is outside security-profile fapi-2.0: serve it from another token profile`,
				`00-base.yaml:19:37: profiles.token.authorization-codes.lifetime: must be at most 60s under security-profile fapi-2.0, got 5m0s`,
				`00-base.yaml:32:23: profiles.other.security-profile: "fapi-1.0" is not one of fapi-2.0 (did you mean "fapi-2.0"?)`,
				`00-base.yaml:34:3: clients.web.token-endpoint-auth-method: must be private_key_jwt: profile "token" has security-profile fapi-2.0, got client_secret_basic`,
				`00-base.yaml:37:39: clients.web.grant-types[1]: urn:ietf:params:oauth:grant-type:token-exchange is outside security-profile fapi-2.0 of profile "token"`,
				`00-base.yaml:39:11: clients.web.dpop: cannot be off: profile "token" has security-profile fapi-2.0, whose tokens are all DPoP-bound`,
			},
		},
		{
			name: "token exchange trusted issuers",
			files: map[string]string{"00-base.yaml": base + `    token-exchange:
      trusted-issuers:
        partner: {issuer: https://idp.partner.example, jwks-uri: http://idp.partner.example/jwks}
        nothing: {}
`, "c.yaml": `clients:
  gw:
    profile: token
    secret: gw-secret-0123456789abcdef
    grant-types: [urn:ietf:params:oauth:grant-type:token-exchange]
    token-exchange: {impersonation: true, trusted-issuers: [partner, partnr]}
`},
			want: []string{
				`00-base.yaml:19:66: profiles.token.token-exchange.trusted-issuers.partner.jwks-uri: must be an https URL (http for localhost only), got "http://idp.partner.example/jwks"`,
				`00-base.yaml:20:18: profiles.token.token-exchange.trusted-issuers.nothing.issuer: is required`,
				`00-base.yaml:20:18: profiles.token.token-exchange.trusted-issuers.nothing.jwks-uri: is required`,
				`c.yaml:6:70: clients.gw.token-exchange.trusted-issuers[1]: names no trusted issuer of profile "token" (its token-exchange.trusted-issuers)`,
			},
		},
		{
			name: "token exchange policy",
			files: map[string]string{"00-base.yaml": base, "c.yaml": `clients:
  none:
    profile: token
    secret: none-secret-0123456789abc
    grant-types: [urn:ietf:params:oauth:grant-type:token-exchange]
  nothing:
    profile: token
    secret: nothing-secret-0123456789
    grant-types: [urn:ietf:params:oauth:grant-type:token-exchange]
    token-exchange: {delegation: false}
  stray:
    profile: token
    secret: stray-secret-0123456789ab
    grant-types: [client_credentials]
    token-exchange: {impersonation: true}
  opaque:
    profile: token
    secret: opaque-secret-0123456789a
    grant-types: [urn:ietf:params:oauth:grant-type:token-exchange]
    access-tokens: {format: opaque}
    token-exchange: {delegation: true, typo: 1}
  public:
    profile: token
    grant-types: [urn:ietf:params:oauth:grant-type:token-exchange]
    token-exchange: {impersonation: true}
`},
			want: []string{
				`c.yaml:2:3: clients.none.token-exchange: is required with the urn:ietf:params:oauth:grant-type:token-exchange grant: set delegation: true (with an actor_token, the token names the actor) or impersonation: true (without one), or both`,
				`c.yaml:10:21: clients.nothing.token-exchange: allows nothing: set delegation: true or impersonation: true`,
				`c.yaml:15:21: clients.stray.token-exchange: is set, but grant-types does not list urn:ietf:params:oauth:grant-type:token-exchange`,
				`c.yaml:21:34: clients.opaque.token-exchange.delegation: needs JWT access tokens (the act claim is carried in the token); this client's access-tokens.format is opaque`,
				`c.yaml:21:40: clients.opaque.token-exchange.typo: unknown key "typo"`,
				`c.yaml:24:18: clients.public.grant-types: token exchange needs a confidential client (a secret or public-keys)`,
			},
		},
		{
			name: "dpop modes and policy",
			files: map[string]string{"00-base.yaml": base + `    dpop: {nonce: true, nonces: true}
`, "c.yaml": `clients:
  typo:
    profile: token
    secret: $SECRET
    grant-types: [client_credentials]
    dpop: require
  ok:
    profile: token
    secret: $SECRET
    grant-types: [client_credentials]
    dpop: required
`},
			opts: Options{Environ: []string{"KEY=x", "SECRET=0123456789abcdef0123"}},
			want: []string{
				`00-base.yaml:17:25: profiles.token.dpop.nonces: unknown key "nonces" (did you mean "nonce"?)`,
				`c.yaml:6:11: clients.typo.dpop: "require" is not one of allowed, required, off (did you mean "required"?)`,
			},
		},
		{
			name: "userinfo-audiences",
			files: map[string]string{"00-base.yaml": base + `    userinfo-audiences: [https://api.example.com, "", https://api.example.com]
`},
			want: []string{
				`00-base.yaml:17:51: profiles.token.userinfo-audiences[1]: must not be empty`,
				`00-base.yaml:17:55: profiles.token.userinfo-audiences[2]: "https://api.example.com" is listed twice`,
			},
		},
		{
			name: "loopback-redirect-any-port needs a loopback IP redirect URI",
			files: map[string]string{"00-base.yaml": base, "c.yaml": `clients:
  cli:
    profile: token
    grant-types: [authorization_code]
    redirect-uris: [http://localhost/cb, https://app.example.com/cb]
    loopback-redirect-any-port: true
  ok:
    profile: token
    grant-types: [authorization_code]
    redirect-uris: ["http://[::1]/cb"]
    loopback-redirect-any-port: true
`},
			want: []string{
				`c.yaml:6:33: clients.cli.loopback-redirect-any-port: needs a redirect URI on a loopback IP literal (http://127.0.0.1/… or http://[::1]/…); localhost does not qualify (RFC 8252 §8.3)`,
			},
		},
		{
			name: "pushed authorization requests",
			files: map[string]string{"00-base.yaml": base, "p.yaml": `profiles:
  authn: {type: authentication, path: /authn, authenticators: {pw: {type: password}}}
  t2:
    type: token
    path: /t2
    issuer: https://id.example.com/t2
    signing-keys: [k1]
    endpoints: [token, par]
    pushed-authorization-requests: {lifetime: 11m}
  t3:
    type: token
    path: /t3
    issuer: https://id.example.com/t3
    signing-keys: [k1]
    authentication-profile: authn
    endpoints: [authorize, token]
    pushed-authorization-requests: {lifetime: 500ms, required: true}
  t4:
    type: token
    path: /t4
    issuer: https://id.example.com/t4
    signing-keys: [k1]
    authentication-profile: authn
    endpoints: [authorize, token, par]
    pushed-authorization-requests: {lifetime: 30s, required: yes}
`, "c.yaml": `clients:
  web:
    profile: token
    grant-types: [authorization_code]
    redirect-uris: [https://app.example.com/cb]
    require-pushed-authorization-requests: true
  svc:
    profile: t4
    secret: $SECRET
    grant-types: [client_credentials]
    require-pushed-authorization-requests: true
  ok:
    profile: t4
    grant-types: [authorization_code]
    redirect-uris: [https://app.example.com/cb]
    require-pushed-authorization-requests: true
`},
			want: []string{
				`c.yaml:6:44: clients.web.require-pushed-authorization-requests: needs profile "token" to serve the par endpoint: add par to its endpoints`,
				`c.yaml:11:44: clients.svc.require-pushed-authorization-requests: needs the authorization_code grant: only authorization requests are pushed`,
				`p.yaml:8:24: profiles.t2.endpoints[1]: par needs the authorize endpoint too: pushed requests are used there (RFC 9126 §4)`,
				`p.yaml:9:47: profiles.t2.pushed-authorization-requests.lifetime: must be at most 10m: a request_uri is short-lived (RFC 9126 §2.2), got 11m0s`,
				`p.yaml:17:47: profiles.t3.pushed-authorization-requests.lifetime: must be at least 1s (expires_in counts whole seconds), got 500ms`,
				`p.yaml:17:64: profiles.t3.pushed-authorization-requests.required: needs the par endpoint: add par to endpoints`,
				`p.yaml:25:62: profiles.t4.pushed-authorization-requests.required: must be true or false, got "yes"`,
			},
		},
		{
			name: "allowed-origins",
			files: map[string]string{"00-base.yaml": base, "c.yaml": `clients:
  spa:
    profile: token
    grant-types: [authorization_code]
    redirect-uris: [https://app.example.com/cb]
    allowed-origins: ["*", https://app.example.com/, http://app.example.com, app.example.com, https://app.example.com, https://app.example.com, "http://127.0.0.1:3000"]
`},
			want: []string{
				`c.yaml:6:23: clients.spa.allowed-origins[0]: must be one origin such as https://app.example.com, not "*"`,
				`c.yaml:6:28: clients.spa.allowed-origins[1]: must be an origin (scheme://host[:port]) without a path, query or fragment, got "https://app.example.com/"`,
				`c.yaml:6:54: clients.spa.allowed-origins[2]: must use https (http is allowed for loopback hosts only), got "http://app.example.com"`,
				`c.yaml:6:78: clients.spa.allowed-origins[3]: must be an origin such as https://app.example.com, got "app.example.com"`,
				`c.yaml:6:120: clients.spa.allowed-origins[5]: "https://app.example.com" is listed twice`,
			},
		},
		{
			name: "key of another profile type",
			files: map[string]string{"00-base.yaml": base, "p.yaml": `profiles:
  authn:
    type: authentication
    path: /authn
    issuer: https://id.example.com
    authenticators: {pw: {type: pasword}}
`},
			want: []string{
				`p.yaml:5:13: profiles.authn.issuer: is not a key of authentication profiles (it belongs to token profiles)`,
				`p.yaml:6:33: profiles.authn.authenticators.pw.type: "pasword" is not one of password, oidc (did you mean "password"?)`,
			},
		},
		{
			name:  "duplicate key in one mapping",
			files: map[string]string{"00-base.yaml": base, "k.yaml": "keys:\n  k3:\n    algorithm: ES256\n    algorithm: RS256\n    private-key: x\n"},
			want:  []string{`k.yaml:4:5: keys.k3.algorithm: key already set at line 3 of this file`},
		},
		{
			name:  "an entry that is not a mapping gets one error",
			files: map[string]string{"00-base.yaml": base, "c.yaml": "clients:\n  c: x\n"},
			want:  []string{`c.yaml:2:6: clients.c: must be a mapping of keys, got a single value`},
		},
		{
			name:  "one document per file",
			files: map[string]string{"00-base.yaml": base, "m.yaml": "keys: {}\n---\nclients: {}\n"},
			want:  []string{`m.yaml:2:1: a file holds one YAML document; move this one to its own file`},
		},
		{
			name:  "bad placeholder syntax",
			files: map[string]string{"00-base.yaml": base, "v.yaml": "keys:\n  k4: {algorithm: ES256, private-key: \"${KEY\"}\n"},
			want:  []string{`v.yaml:2:39: keys.k4.private-key: "${" at offset 0 is not closed by "}"`},
		},
		{
			name:  "no config files",
			files: map[string]string{"notes.txt": "x", ".hidden.yaml": base},
			want: []string{
				`DIR: no *.yaml or *.yml files in the config directory`,
				`DIR: service-roles: service role "default" is not defined`,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Dir = writeDir(t, tc.files)
			if tc.opts.Environ == nil {
				tc.opts.Environ = []string{"KEY=dummy-pem", "SECRET=" + validSecret}
			}
			_, err := loadChecked(t, tc.opts)
			var got []string
			if err != nil {
				errs, ok := err.(Errors)
				if !ok {
					t.Fatalf("error is %T, want Errors: %v", err, err)
				}
				for _, e := range errs {
					got = append(got, strings.ReplaceAll(e.Error(), tc.opts.Dir, "DIR"))
				}
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if strings.Contains(strings.Join(got, "\n"), "SECRET") {
				t.Errorf("an error leaks a secret value")
			}
		})
	}
}

func TestTagsAndEnabled(t *testing.T) {
	snap, err := load(t, map[string]string{"00-base.yaml": base, "c.yaml": `clients:
  beta: {profile: token, secret: $SECRET, grant-types: [client_credentials], tags: [under-test]}
  off: {profile: token, secret: $SECRET, grant-types: [client_credentials], enabled: false}
  on: {profile: token, secret: $SECRET, grant-types: [client_credentials]}
`}, Options{ExcludeTags: []string{"under-test"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Clients) != 1 || snap.Clients["on"] == nil {
		t.Errorf("clients = %v, want only on", keys(snap.Clients))
	}
}

func keys[V any](m map[string]V) []string { return sortedKeys(m) }

// The Kubernetes ConfigMap layout: files are symlinks into ..data, which
// points at a hidden timestamped directory; only the top-level links count.
func TestKubernetesLayout(t *testing.T) {
	dir := t.TempDir()
	ts := filepath.Join(dir, "..2026_11_23_10_00_00.000000001")
	must(t, os.Mkdir(ts, 0o755))
	must(t, os.WriteFile(filepath.Join(ts, "base.yaml"), []byte(base), 0o644))
	must(t, os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")))
	must(t, os.Symlink("..data/base.yaml", filepath.Join(dir, "base.yaml")))
	snap, err := Load(Options{Dir: dir, Environ: []string{"KEY=x"}})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Profiles["token"].Pos.File != "base.yaml" {
		t.Errorf("position %v", snap.Profiles["token"].Pos)
	}

	// Mid-swap: ..data already points at a version without extra.yaml while
	// the top-level link to it still dangles. The load sees the new version whole.
	ts2 := filepath.Join(dir, "..2026_11_23_10_00_01.000000002")
	must(t, os.Mkdir(ts2, 0o755))
	must(t, os.WriteFile(filepath.Join(ts2, "base.yaml"), []byte(strings.Replace(base, "/oauth", "/v2", 2)), 0o644))
	must(t, os.Symlink("..data/extra.yaml", filepath.Join(dir, "extra.yaml")))
	must(t, os.Symlink(filepath.Base(ts2), filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	snap, err = Load(Options{Dir: dir, Environ: []string{"KEY=x"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Profiles["token"].Path; got != "/v2" {
		t.Errorf("path %q, want the new version's", got)
	}
}

func TestEnvFilesAndPrecedence(t *testing.T) {
	dir := writeDir(t, map[string]string{"00-base.yaml": strings.ReplaceAll(base, "https://id.example.com", "$BASE")})
	env := filepath.Join(t.TempDir(), "stage.env")
	must(t, os.WriteFile(env, []byte("# stage\nexport BASE=https://from-file.example.com\nKEY='pem'\n"), 0o644))
	snap, err := Load(Options{Dir: dir, EnvFiles: []string{env}})
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Profiles["token"].Issuer; got != "https://from-file.example.com/oauth" {
		t.Errorf("issuer from env file = %q", got)
	}
	snap, err = Load(Options{Dir: dir, EnvFiles: []string{env}, Environ: []string{"BASE=https://process.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Profiles["token"].Issuer; got != "https://process.example.com/oauth" {
		t.Errorf("process env must win: issuer = %q", got)
	}
	if len(snap.Inputs) != 1 || snap.Inputs[0] != env {
		t.Errorf("inputs = %v", snap.Inputs)
	}
	// The watcher's cheap check must agree with the load, or every hint reloads.
	if fp, err := Fingerprint(dir, []string{env}, snap); err != nil || fp != snap.Hash {
		t.Errorf("fingerprint %s (err %v) differs from the loaded hash %s", fp, err, snap.Hash)
	}
}

func TestFileSecretsAndFingerprint(t *testing.T) {
	secrets := t.TempDir()
	keyFile := filepath.Join(secrets, "k1.pem")
	must(t, os.WriteFile(keyFile, []byte("PEM-ONE\n"), 0o600))
	dir := writeDir(t, map[string]string{"00-base.yaml": strings.Replace(base, "$KEY", `"${file:${SECRETS}/k1.pem}"`, 1)})
	opts := Options{Dir: dir, Environ: []string{"SECRETS=" + secrets}}
	snap, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Keys["k1"].PrivateKey.Reveal(); got != "PEM-ONE" {
		t.Errorf("private key = %q (one trailing newline trimmed)", got)
	}
	fp, err := Fingerprint(dir, nil, snap)
	if err != nil || fp != snap.Hash {
		t.Fatalf("fingerprint %s, hash %s, err %v", fp, snap.Hash, err)
	}
	// A rotated secret file changes the hash, so the node reloads.
	must(t, os.WriteFile(keyFile, []byte("PEM-TWO\n"), 0o600))
	fp2, err := Fingerprint(dir, nil, snap)
	if err != nil || fp2 == snap.Hash {
		t.Fatalf("fingerprint after rotation %s unchanged (err %v)", fp2, err)
	}
	snap2, err := Load(opts)
	if err != nil || snap2.Hash != fp2 {
		t.Fatalf("reloaded hash %s, fingerprint %s, err %v", snap2.Hash, fp2, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
