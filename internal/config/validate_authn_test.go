package config

import (
	"strings"
	"testing"
	"time"
)

func TestAuthnProfileDefaults(t *testing.T) {
	snap, err := load(t, map[string]string{
		"00-base.yaml": base,
		"10-authn.yaml": `service-roles:
  login: {zone: local, profiles: [token, authn]}
profiles:
  authn:
    type: authentication
    path: /authn
    templates: ./branding
    authenticators:
      password: {type: password}
      tuned:
        type: password
        argon2: {memory-kib: 65536, iterations: 3, parallelism: 4}
        lockout: {max-failures: 3, max-failures-per-ip: 50, window: 1h}
`,
	}, Options{Role: "login"})
	if err != nil {
		t.Fatal(err)
	}
	p := snap.Profiles["authn"]
	if p.Templates != "./branding" {
		t.Errorf("templates = %q", p.Templates)
	}
	d := p.Authenticators["password"]
	if d.Argon2 != (Argon2Params{19456, 2, 1}) || d.Lockout != (LockoutPolicy{5, 20, Duration(15 * time.Minute)}) {
		t.Errorf("defaults: %+v %+v", d.Argon2, d.Lockout)
	}
	tu := p.Authenticators["tuned"]
	if tu.Argon2 != (Argon2Params{65536, 3, 4}) || tu.Lockout != (LockoutPolicy{3, 50, Duration(time.Hour)}) {
		t.Errorf("tuned: %+v %+v", tu.Argon2, tu.Lockout)
	}
}

func TestAuthnProfileBad(t *testing.T) {
	_, err := load(t, map[string]string{
		"00-base.yaml": base,
		"10-authn.yaml": `service-roles:
  login: {zone: local, profiles: [token, authn]}
profiles:
  authn:
    type: authentication
    path: /authn
    authenticators:
      password:
        type: password
        argon2: {memory-kib: 0, iterations: 0, parallelism: 300}
        lockout: {max-failures: 0, window: 0s}
      partner:
        type: oidc
        issuer: https://idp.example.com
        client-id: x
        client-secret: $SECRET
        lockout: {max-failures: 3}
  token2:
    type: token
    path: /t2
    issuer: https://id.example.com/t2
    signing-keys: [k1]
    endpoints: [discovery]
    templates: ./x
`,
	}, Options{Role: "login"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"profiles.authn.authenticators.password.argon2.memory-kib: must be between 1024 and 4194304, got 0",
		"profiles.authn.authenticators.password.argon2.iterations: must be between 1 and 100, got 0",
		"profiles.authn.authenticators.password.argon2.parallelism: must be between 1 and 255, got 300",
		"profiles.authn.authenticators.password.lockout.max-failures: must be between 1 and 1000, got 0",
		"profiles.authn.authenticators.password.lockout.window: must be positive",
		"profiles.authn.authenticators.partner.lockout: is for password authenticators",
		"profiles.token2.templates: is not a key of token profiles (it belongs to authentication profiles)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}
