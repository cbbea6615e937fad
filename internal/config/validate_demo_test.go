package config

import (
	"slices"
	"strings"
	"testing"
)

const demoFiles = `profiles:
  demo:
    type: demo
    path: /demo
    token-profile: token
    client: demo-app
    user: {username: demo, password: $DEMO_PASSWORD}
    tags: [demo]
clients:
  demo-app: {profile: token, redirect-uris: ["https://id.example.com/demo/"], grant-types: [authorization_code], scopes: [openid], tags: [demo]}
`

// A demo profile's client must be a public client of its token profile
// that may use the code flow, and its user needs a name and a password.
func TestDemoProfileChecks(t *testing.T) {
	roles := strings.Replace(base, "profiles: [token]", "profiles: [token, d1, d2, d3, d4, d5]", 1)
	_, err := load(t, map[string]string{"00-base.yaml": roles, "d.yaml": `profiles:
  other: {type: token, path: /other, issuer: https://id.example.com/other, signing-keys: [k1], endpoints: [jwks]}
  d1: {type: demo, path: /d1, token-profile: token, client: confidential, user: {username: demo}}
  d2: {type: demo, path: /d2, token-profile: token, client: elsewhere, user: {username: demo, password: $SECRET}}
  d3: {type: demo, path: /d3, token-profile: token, client: nope, user: {password: $SECRET}}
  d4: {type: demo, path: /d4, token-profile: token, client: pushing, user: {username: demo, password: $SECRET}}
  d5: {type: demo, path: /d5, token-profile: pushed, client: pushed-app, user: {username: demo, password: $SECRET}}
  authn: {type: authentication, path: /authn, authenticators: {pw: {type: password}}}
  pushed: {type: token, path: /pushed, issuer: https://id.example.com/pushed, signing-keys: [k1], authentication-profile: authn,
    endpoints: [authorize, token, par], pushed-authorization-requests: {required: true}}
clients:
  confidential: {profile: token, secret: $SECRET, grant-types: [authorization_code], redirect-uris: ["https://id.example.com/d1/"]}
  elsewhere: {profile: other, grant-types: [client_credentials]}
  pushing: {profile: token, grant-types: [authorization_code], redirect-uris: ["https://id.example.com/d4/"], require-pushed-authorization-requests: true}
  pushed-app: {profile: pushed, grant-types: [authorization_code], redirect-uris: ["https://id.example.com/d5/"]}
`}, Options{})
	want := []string{
		`d.yaml:3:60: profiles.d1.client: client "confidential" must be a public client (no secret, token-endpoint-auth-method none): the page runs in the browser`,
		`d.yaml:3:81: profiles.d1.user.password: is required (the demo user's password)`,
		`d.yaml:4:60: profiles.d2.client: client "elsewhere" belongs to profile "other", not to the token-profile "token"`,
		`d.yaml:5:60: profiles.d3.client: refers to client "nope", which is not defined`,
		`d.yaml:5:72: profiles.d3.user.username: is required`,
		`d.yaml:6:60: profiles.d4.client: client "pushing" requires pushed authorization requests, which the demo page does not send`,
		`d.yaml:7:46: profiles.d5.token-profile: profile "pushed" requires pushed authorization requests, which the demo page does not send`,
	}
	var got []string
	if errs, ok := err.(Errors); ok {
		for _, e := range errs {
			got = append(got, e.Error())
		}
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasSuffix(g, w[strings.Index(w, ": ")+2:]) }) {
			t.Errorf("missing error %q in:\n%s", w, strings.Join(got, "\n"))
		}
	}
}

// A role lists the demo profile; a stage that excludes the demo tag
// serves the rest of the role, with no error and no demo client.
func TestExcludedProfileLeftOutOfTheRole(t *testing.T) {
	roles := strings.Replace(base, "profiles: [token]", "profiles: [token, demo]", 1)
	snap, err := load(t, map[string]string{"00-base.yaml": roles, "d.yaml": demoFiles}, Options{ExcludeTags: []string{"demo"}})
	if err != nil {
		t.Fatalf("with the demo tag excluded: %v", err)
	}
	if got := snap.ServiceRoles["default"].Profiles; !slices.Equal(got, []string{"token"}) || snap.Profiles["demo"] != nil || snap.Clients["demo-app"] != nil {
		t.Errorf("role profiles %v, demo profile %v, demo client %v", got, snap.Profiles["demo"], snap.Clients["demo-app"])
	}
	// Locally it is served, and needs its variable.
	snap, err = load(t, map[string]string{"00-base.yaml": roles, "d.yaml": demoFiles},
		Options{Environ: []string{"KEY=dummy-pem", "DEMO_PASSWORD=demo-password-0123"}})
	if err != nil {
		t.Fatalf("locally: %v", err)
	}
	if snap.Profiles["demo"] == nil || snap.Profiles["demo"].User.Password.Reveal() != "demo-password-0123" {
		t.Errorf("the demo profile locally: %+v", snap.Profiles["demo"])
	}
	// disabled (enabled: false) is a mistake, not a stage: still an error.
	disabled := strings.Replace(demoFiles, "    tags: [demo]\n", "    enabled: false\n", 1)
	if _, err := load(t, map[string]string{"00-base.yaml": roles, "d.yaml": disabled}, Options{}); err == nil ||
		!strings.Contains(err.Error(), `refers to profile "demo", but it is disabled`) {
		t.Errorf("a role naming a disabled profile: %v", err)
	}
}
