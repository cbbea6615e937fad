// Package settings reads the node settings (KEYGATE_* environment variables,
// SPEC §2) through envconfig and reports unknown KEYGATE_* variables, since a
// typo must not pass silently.
//
// Values are read by envconfig from the process environment (it has no
// pluggable lookup); Load's environ argument is what the unknown-variable
// check scans, so callers pass os.Environ() and tests use t.Setenv.
package settings

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/keygate/keygate/internal/clientip"
	"github.com/keygate/keygate/internal/logging"
	"github.com/keygate/keygate/internal/suggest"
)

// Prefix starts every setting's name.
const Prefix = "KEYGATE_"

// Settings are one node's settings. Tags carry the full variable names and
// Load passes envconfig an empty prefix: with a prefix, envconfig falls back
// to the bare tag name, so a stray LOG_LEVEL or NODE_ID meant for another
// program would silently configure Keygate.
type Settings struct {
	ConfigDir       string   `envconfig:"KEYGATE_CONFIG_DIR" default:"./config.d"`
	EnvFiles        []string `envconfig:"KEYGATE_ENV_FILE"` // comma-separated; process env wins over them
	ServiceRole     string   `envconfig:"KEYGATE_SERVICE_ROLE" default:"default"`
	ExcludeTags     []string `envconfig:"KEYGATE_EXCLUDE_TAGS"` // comma-separated
	ListenAddr      string   `envconfig:"KEYGATE_LISTEN_ADDR" default:":8080"`
	OpsListenAddr   string   `envconfig:"KEYGATE_OPS_LISTEN_ADDR" default:":9090"`
	AdminListenAddr string   `envconfig:"KEYGATE_ADMIN_LISTEN_ADDR" default:":8081"`
	PublishDir      string   `envconfig:"KEYGATE_PUBLISH_DIR"`               // admin node only
	LogLevel        string   `envconfig:"KEYGATE_LOG_LEVEL" default:"info"`  // debug|info|warn|error
	LogFormat       string   `envconfig:"KEYGATE_LOG_FORMAT" default:"json"` // json|text

	// Beyond SPEC §2 (documented in the README).

	ReloadDebounce  time.Duration `envconfig:"KEYGATE_RELOAD_DEBOUNCE" default:"5ms"`
	ReloadPoll      time.Duration `envconfig:"KEYGATE_RELOAD_POLL_INTERVAL" default:"10s"` // 0 disables the periodic hash check
	ShutdownTimeout time.Duration `envconfig:"KEYGATE_SHUTDOWN_TIMEOUT" default:"30s"`
	MigrateOnStart  bool          `envconfig:"KEYGATE_MIGRATE_ON_START" default:"true"`
	NodeID          string        `envconfig:"KEYGATE_NODE_ID"` // default: the hostname; a runtime node adds its listener's port
	// NodeIDFromHost: KEYGATE_NODE_ID was not set, so NodeID is the
	// hostname, which two nodes on one host share.
	NodeIDFromHost bool `ignored:"true"`

	// Bundles: signed configuration published by the admin node (README).

	BundleVerifyKeyFile  string `envconfig:"KEYGATE_BUNDLE_VERIFY_KEY_FILE"`         // runtime: load only bundles signed by this Ed25519 public key (PEM)
	BundleSigningKeyFile string `envconfig:"KEYGATE_BUNDLE_SIGNING_KEY_FILE"`        // admin: the Ed25519 private key (PEM PKCS#8) that signs bundles
	AdminTokenFile       string `envconfig:"KEYGATE_ADMIN_TOKEN_FILE"`               // admin: the bearer token every admin call must present
	PublishRetention     int    `envconfig:"KEYGATE_PUBLISH_RETENTION" default:"10"` // admin: published versions kept for history and rollback
	// Admin listener TLS (optional): with a certificate and key the admin
	// API serves HTTPS; with a client CA too it requires and verifies a
	// client certificate signed by that CA (mTLS). The bearer token is
	// required either way.
	AdminTLSCertFile     string `envconfig:"KEYGATE_ADMIN_TLS_CERT_FILE"`      // PEM certificate chain
	AdminTLSKeyFile      string `envconfig:"KEYGATE_ADMIN_TLS_KEY_FILE"`       // PEM private key
	AdminTLSClientCAFile string `envconfig:"KEYGATE_ADMIN_TLS_CLIENT_CA_FILE"` // PEM CA certificates for client certificates
	// HeartbeatInterval: how often a runtime node writes its cluster
	// heartbeat row (0, only possible in code: the default).
	HeartbeatInterval time.Duration `envconfig:"KEYGATE_HEARTBEAT_INTERVAL" default:"5s"`
	// GCInterval: how often a runtime node deletes expired rows (tokens,
	// revocations, assertion jtis, codes, sessions, heartbeats) from its
	// zone's data source, ±20% jitter; 0 disables.
	GCInterval time.Duration `envconfig:"KEYGATE_GC_INTERVAL" default:"10m"`
	// TrustedProxies: the reverse proxies (comma-separated CIDR ranges or
	// addresses) whose X-Forwarded-For names the client for per-IP login
	// throttling and audit events (internal/clientip has the rule). Empty:
	// the client is the connection's peer and the header is never read.
	TrustedProxies []string `envconfig:"KEYGATE_TRUSTED_PROXIES"`
	// FileDirs: the directories ${file:PATH} placeholders may read from,
	// comma-separated. A runtime node refuses a path outside them (a
	// failed reload naming it); the admin node refuses a bundle that names
	// one. Empty: any path on runtime nodes and the CLI, and
	// DefaultAdminFileDirs on the admin node.
	FileDirs []string `envconfig:"KEYGATE_FILE_DIRS"`
	// Stage: admin node only, the stage it publishes to (production,
	// staging, …): the go-live lint judges bundles for it, and refuses
	// error-level findings for production unless forced. Empty: local.
	Stage string `envconfig:"KEYGATE_STAGE"`
	// Staged rollouts (admin node): how long a rollout's first roles must
	// serve a bundle before the others get it, and how long they may take
	// to get there before the rollout stops. An upload may set its own.
	RolloutSoak    time.Duration `envconfig:"KEYGATE_ROLLOUT_SOAK" default:"1m"`
	RolloutTimeout time.Duration `envconfig:"KEYGATE_ROLLOUT_TIMEOUT" default:"10m"`

	// The admin console (admin node): served under /admin/ui/ when
	// ConsoleURL, its external origin, is set. People sign in with OpenID
	// Connect at ConsoleIssuer as client ConsoleClientID; the values of
	// the ConsoleRoleClaim claim listed in ConsoleEditors or ConsoleViewers
	// ("*": anyone) give the role.
	ConsoleURL              string   `envconfig:"KEYGATE_CONSOLE_URL"`
	ConsoleIssuer           string   `envconfig:"KEYGATE_CONSOLE_ISSUER"`
	ConsoleClientID         string   `envconfig:"KEYGATE_CONSOLE_CLIENT_ID"`
	ConsoleClientSecretFile string   `envconfig:"KEYGATE_CONSOLE_CLIENT_SECRET_FILE"`
	ConsoleRoleClaim        string   `envconfig:"KEYGATE_CONSOLE_ROLE_CLAIM" default:"email"`
	ConsoleEditors          []string `envconfig:"KEYGATE_CONSOLE_EDITORS"`
	ConsoleViewers          []string `envconfig:"KEYGATE_CONSOLE_VIEWERS"`
	ConsoleTitle            string   `envconfig:"KEYGATE_CONSOLE_TITLE"`
	ConsoleBrandingDir      string   `envconfig:"KEYGATE_CONSOLE_BRANDING_DIR"`
	ConsoleClientsFile      string   `envconfig:"KEYGATE_CONSOLE_CLIENTS_FILE"`
	// The configuration repository the console's edits are committed to
	// (each on a new branch of GitBase, for review).
	GitURL          string `envconfig:"KEYGATE_GIT_URL"`
	GitBase         string `envconfig:"KEYGATE_GIT_BASE" default:"main"`
	GitDir          string `envconfig:"KEYGATE_GIT_DIR" default:"config.d"`
	GitBranchPrefix string `envconfig:"KEYGATE_GIT_BRANCH_PREFIX" default:"keygate/"`
	GitUsername     string `envconfig:"KEYGATE_GIT_USERNAME"`
	GitTokenFile    string `envconfig:"KEYGATE_GIT_TOKEN_FILE"`
	GitSSHKeyFile   string `envconfig:"KEYGATE_GIT_SSH_KEY_FILE"`
	GitCompareURL   string `envconfig:"KEYGATE_GIT_COMPARE_URL"`
}

// DefaultAdminFileDirs are the secret mounts of Kubernetes, Docker and
// the bare-metal layout: where an admin node without KEYGATE_FILE_DIRS
// lets a bundle's ${file:} placeholders point.
var DefaultAdminFileDirs = []string{"/run/secrets", "/var/run/secrets", "/etc/keygate/secrets"}

// Load reads the settings, applies defaults (NodeID falls back to the
// hostname), normalizes (lists trimmed, empty items dropped; level and format
// lower-cased) and validates them. The warnings name unknown KEYGATE_*
// variables in environ, which must be the process environment.
func Load(environ []string) (Settings, []string, error) {
	var s Settings
	if err := envconfig.Process("", &s); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			// The value is not echoed: nothing from the environment goes into an error.
			return Settings{}, nil, fmt.Errorf("%s: invalid %s", pe.KeyName, pe.TypeName)
		}
		return Settings{}, nil, fmt.Errorf("read settings: %w", err)
	}
	s.EnvFiles = cleanList(s.EnvFiles)
	s.ExcludeTags = cleanList(s.ExcludeTags)
	s.TrustedProxies = cleanList(s.TrustedProxies)
	s.FileDirs = cleanList(s.FileDirs)
	s.LogLevel = strings.ToLower(s.LogLevel)
	s.LogFormat = strings.ToLower(s.LogFormat)
	if s.NodeID == "" {
		s.NodeID, _ = os.Hostname() // empty on failure; Validate reports it
		s.NodeIDFromHost = true
	}

	var warnings []string
	for _, name := range UnknownVariables(environ) {
		warnings = append(warnings, UnknownWarning(name))
	}
	return s, warnings, s.Validate()
}

// Validate reports every invalid setting at once, each naming its variable.
// PublishDir is not checked: only the admin node needs it.
func (s Settings) Validate() error {
	var errs []error
	add := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", Prefix, name, fmt.Sprintf(format, args...)))
	}
	nonEmpty := func(name, v string) {
		if strings.TrimSpace(v) == "" {
			add(name, "must not be empty")
		}
	}
	nonEmpty("CONFIG_DIR", s.ConfigDir)
	nonEmpty("SERVICE_ROLE", s.ServiceRole)
	if s.NodeID == "" {
		add("NODE_ID", "not set and the hostname is unknown")
	}
	if _, err := logging.ParseLevel(s.LogLevel); err != nil {
		add("LOG_LEVEL", "%q is not one of %s", s.LogLevel, strings.Join(logging.Levels, ", "))
	}
	if !logging.ValidFormat(s.LogFormat) {
		add("LOG_FORMAT", "%q is not one of %s", s.LogFormat, strings.Join(logging.Formats, ", "))
	}
	for _, a := range []struct{ name, v string }{
		{"LISTEN_ADDR", s.ListenAddr},
		{"OPS_LISTEN_ADDR", s.OpsListenAddr},
		{"ADMIN_LISTEN_ADDR", s.AdminListenAddr},
	} {
		if _, port, err := net.SplitHostPort(a.v); err != nil || port == "" {
			add(a.name, "%q is not host:port (e.g. :8080)", a.v)
		}
	}
	// Port 0 picks a free port each time, so equal strings clash only otherwise.
	if s.ListenAddr == s.OpsListenAddr && !strings.HasSuffix(s.ListenAddr, ":0") {
		add("OPS_LISTEN_ADDR", "%q is also KEYGATE_LISTEN_ADDR", s.OpsListenAddr)
	}
	// The files themselves are read (and checked) by the admin node at start.
	if (s.AdminTLSCertFile == "") != (s.AdminTLSKeyFile == "") {
		add("ADMIN_TLS_CERT_FILE", "KEYGATE_ADMIN_TLS_CERT_FILE and KEYGATE_ADMIN_TLS_KEY_FILE must be set together")
	}
	if s.AdminTLSClientCAFile != "" && s.AdminTLSCertFile == "" {
		add("ADMIN_TLS_CLIENT_CA_FILE", "needs KEYGATE_ADMIN_TLS_CERT_FILE and KEYGATE_ADMIN_TLS_KEY_FILE (client certificates need TLS)")
	}
	for _, p := range s.TrustedProxies {
		if _, err := clientip.ParseTrusted(strings.TrimSpace(p)); err != nil {
			add("TRUSTED_PROXIES", "%v", err)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"RELOAD_DEBOUNCE", s.ReloadDebounce},
		{"RELOAD_POLL_INTERVAL", s.ReloadPoll},
		{"SHUTDOWN_TIMEOUT", s.ShutdownTimeout},
		{"HEARTBEAT_INTERVAL", s.HeartbeatInterval},
		{"GC_INTERVAL", s.GCInterval},
		{"ROLLOUT_SOAK", s.RolloutSoak},
		{"ROLLOUT_TIMEOUT", s.RolloutTimeout},
	} {
		if d.v < 0 {
			add(d.name, "%s must not be negative", d.v)
		}
	}
	if s.ConsoleIssuer != "" && (s.ConsoleURL == "" || s.ConsoleClientID == "") {
		add("CONSOLE_ISSUER", "needs KEYGATE_CONSOLE_URL and KEYGATE_CONSOLE_CLIENT_ID")
	}
	if s.RolloutTimeout > 0 && s.RolloutTimeout <= s.RolloutSoak {
		add("ROLLOUT_TIMEOUT", "%s must be longer than KEYGATE_ROLLOUT_SOAK (%s)", s.RolloutTimeout, s.RolloutSoak)
	}
	return errors.Join(errs...)
}

// KnownVariables lists every setting's variable name, sorted, from the
// struct tags (for the README and did-you-mean hints).
func KnownVariables() []string {
	return slices.Clone(known())
}

// known gathers the names once through envconfig's usage template, so the
// list cannot drift from the struct.
var known = sync.OnceValue(func() []string {
	var b strings.Builder
	if err := envconfig.Usagef("", &Settings{}, &b, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		panic(fmt.Sprintf("settings: list variables: %v", err)) // only a broken Settings struct gets here
	}
	names := strings.Fields(b.String())
	slices.Sort(names)
	return names
})

// UnknownVariables returns, sorted and once each, the names in environ that
// look like settings (KEYGATE_ in any case) but are not known. Values are
// never read: a mistyped variable may hold a secret.
func UnknownVariables(environ []string) []string {
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if len(name) < len(Prefix) || !strings.EqualFold(name[:len(Prefix)], Prefix) {
			continue
		}
		if _, found := slices.BinarySearch(known(), name); !found {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	return slices.Compact(unknown)
}

// UnknownWarning is the start-up warning for an unknown variable, with a
// suggestion when one is close. Distances are measured without the prefix,
// which would otherwise make every KEYGATE_ name look near.
func UnknownWarning(name string) string {
	msg := "unknown setting " + name
	upper := strings.ToUpper(name)
	suffixes := make([]string, 0, len(known()))
	for _, k := range known() {
		suffixes = append(suffixes, strings.TrimPrefix(k, Prefix))
	}
	if s, ok := suggest.Closest(strings.TrimPrefix(upper, Prefix), suffixes); ok {
		msg += " (did you mean " + Prefix + s + "?)"
	}
	return msg
}

// SplitList reads a comma-separated list as the KEYGATE_* list settings
// do, so a flag or a tool that takes one agrees with them: items trimmed,
// empty ones dropped ("a, b," is [a b]).
func SplitList(s string) []string { return cleanList(strings.Split(s, ",")) }

// cleanList trims list items and drops empty ones, so "a, b," means [a b].
func cleanList(in []string) []string {
	var out []string
	for _, v := range in {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
