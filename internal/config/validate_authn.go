package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Defaults of the authentication profile's password authenticator.
const (
	// DefaultArgon2MemoryKiB, DefaultArgon2Iterations and
	// DefaultArgon2Parallelism are OWASP's minimum for argon2id (m=19 MiB,
	// t=2, p=1; OWASP Password Storage Cheat Sheet).
	DefaultArgon2MemoryKiB   = 19456
	DefaultArgon2Iterations  = 2
	DefaultArgon2Parallelism = 1

	DefaultLockoutMaxFailures      = 5
	DefaultLockoutMaxFailuresPerIP = 20
	DefaultLockoutWindow           = 15 * time.Minute

	// maxArgon2MemoryKiB bounds one hash to 4 GiB; a login costs this much
	// memory while it runs.
	maxArgon2MemoryKiB = 4 << 20
)

// checkAuthnProfile applies the defaults of an authentication profile's
// authenticators and checks them. checkAuthenticator has checked each
// authenticator's type.
func (l *loader) checkAuthnProfile(path string, p *Profile) {
	for _, name := range sortedKeys(p.Authenticators) {
		a := p.Authenticators[name]
		if a == nil {
			continue
		}
		apath := path + ".authenticators." + name
		switch a.Type {
		case "password":
			l.checkArgon2(apath+".argon2", &a.Argon2)
			l.checkLockout(apath+".lockout", &a.Lockout)
			for _, key := range oidcOnlyKeys {
				if _, set := l.posAt(apath + "." + key); set {
					l.at(apath+"."+key, "is for oidc authenticators; a password authenticator has no %s", key)
				}
			}
		case "oidc":
			for _, key := range []string{"argon2", "lockout"} {
				if _, set := l.posAt(apath + "." + key); set {
					l.at(apath+"."+key, "is for password authenticators; an oidc authenticator has no %s", key)
				}
			}
			l.checkOIDCAuthenticator(apath, a)
		}
	}
}

// positiveInt defaults *v when it is not written, and refuses a written
// value below min or above max.
func (l *loader) positiveInt(path string, v *int, def, min, max int) {
	if _, set := l.posAt(path); !set && *v == 0 {
		*v = def
		return
	}
	if *v < min || *v > max {
		l.at(path, "must be between %d and %d, got %d", min, max, *v)
	}
}

func (l *loader) checkArgon2(path string, a *Argon2Params) {
	l.positiveInt(path+".memory-kib", &a.MemoryKiB, DefaultArgon2MemoryKiB, 1024, maxArgon2MemoryKiB)
	l.positiveInt(path+".iterations", &a.Iterations, DefaultArgon2Iterations, 1, 100)
	l.positiveInt(path+".parallelism", &a.Parallelism, DefaultArgon2Parallelism, 1, 255)
	if a.MemoryKiB < 8*a.Parallelism {
		// RFC 9106 §3.1: memory is at least 8 KiB per lane.
		l.at(path+".memory-kib", "must be at least 8×parallelism (%d)", 8*a.Parallelism)
	}
}

func (l *loader) checkLockout(path string, lo *LockoutPolicy) {
	l.positiveInt(path+".max-failures", &lo.MaxFailures, DefaultLockoutMaxFailures, 1, 1000)
	l.positiveInt(path+".max-failures-per-ip", &lo.MaxFailuresPerIP, DefaultLockoutMaxFailuresPerIP, 1, 100000)
	if _, set := l.posAt(path + ".window"); set && lo.Window <= 0 {
		l.at(path+".window", "must be positive")
	}
	defaultDuration(&lo.Window, DefaultLockoutWindow)
	if lo.Window.D() > 24*time.Hour {
		l.at(path+".window", "must be at most 24h, got %s", l.q(path+".window", lo.Window.String()))
	}
}

// oidcOnlyKeys are the oidc authenticator keys added with federation
// (issuer, client-id, client-secret and scopes are checked by
// checkAuthenticator).
var oidcOnlyKeys = []string{"display-name", "claims", "provisioning", "allowed-domains", "redirect-uri"}

// DefaultOIDCScopes are the scopes an oidc authenticator asks for.
var DefaultOIDCScopes = []string{"openid", "profile", "email"}

// checkOIDCAuthenticator applies the defaults of an oidc authenticator
// and checks its federation keys.
func (l *loader) checkOIDCAuthenticator(path string, a *Authenticator) {
	if a.DisplayName == "" {
		a.DisplayName = a.Name
	}
	if len(a.DisplayName) > 100 {
		l.at(path+".display-name", "must be at most 100 characters")
	}
	if len(a.Scopes) == 0 {
		a.Scopes = slices.Clone(DefaultOIDCScopes)
	} else if !slices.Contains(a.Scopes, "openid") {
		l.at(path+".scopes", "must include openid")
	}
	for i, sc := range a.Scopes {
		if sc == "" || strings.ContainsAny(sc, " \t\"\\") {
			sp := fmt.Sprintf("%s.scopes[%d]", path, i)
			l.at(sp, "is not a valid scope: %s", l.q(sp, sc))
		}
	}
	switch a.Provisioning {
	case "":
		a.Provisioning = ProvisioningExisting
	case ProvisioningExisting, ProvisioningJIT:
	default:
		l.oneOf(path+".provisioning", a.Provisioning, []string{ProvisioningExisting, ProvisioningJIT})
	}
	m := &a.Claims
	for _, c := range []struct {
		key string
		v   *string
		def string
	}{
		{"username", &m.Username, "preferred_username"},
		{"name", &m.Name, "name"},
		{"given_name", &m.GivenName, "given_name"},
		{"family_name", &m.FamilyName, "family_name"},
		{"email", &m.Email, "email"},
		{"email_verified", &m.EmailVerified, "email_verified"},
	} {
		cpath := path + ".claims." + c.key
		if _, set := l.posAt(cpath); set && *c.v == "" {
			l.at(cpath, "must name a partner claim")
			continue
		}
		if *c.v == "" {
			*c.v = c.def
		}
		if len(*c.v) > 128 || strings.ContainsAny(*c.v, " \t\r\n") {
			l.at(cpath, "is not a valid claim name: %s", l.q(cpath, *c.v))
		}
	}
	for i, d := range a.AllowedDomains {
		dpath := fmt.Sprintf("%s.allowed-domains[%d]", path, i)
		if d == "" || d != strings.ToLower(d) || strings.ContainsAny(d, "@/: \t") || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
			l.at(dpath, "must be a lower-case domain name such as partner.example.com, got %s", l.q(dpath, d))
		}
	}
	l.unique(path+".allowed-domains", a.AllowedDomains)
	if a.RedirectURI != "" {
		u, err := url.Parse(a.RedirectURI)
		switch {
		case err != nil || u.Host == "" || u.Fragment != "" || u.User != nil:
			l.at(path+".redirect-uri", "must be an absolute URL without fragment, got %s", l.q(path+".redirect-uri", a.RedirectURI))
		case u.Scheme == "https":
		case u.Scheme == "http" && isLoopback(u.Hostname()):
		default:
			l.at(path+".redirect-uri", "must use https (http is allowed for localhost only), got %s", l.q(path+".redirect-uri", a.RedirectURI))
		}
	}
}
