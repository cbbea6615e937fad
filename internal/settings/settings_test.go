package settings

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// setEnv unsets every known setting (restored after the test, so a developer's
// own KEYGATE_* variables cannot change results), sets vars, and returns the
// environ to pass to Load. Tests that call it cannot be parallel.
func setEnv(t *testing.T, vars map[string]string) []string {
	t.Helper()
	for _, k := range KnownVariables() {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	for k, v := range vars {
		t.Setenv(k, v)
	}
	return os.Environ()
}

func TestDefaults(t *testing.T) {
	s, warnings, err := Load(setEnv(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings = %q", warnings)
	}
	host, _ := os.Hostname()
	want := Settings{
		ConfigDir:         "./config.d",
		ServiceRole:       "default",
		ListenAddr:        ":8080",
		OpsListenAddr:     ":9090",
		AdminListenAddr:   ":8081",
		LogLevel:          "info",
		LogFormat:         "json",
		ReloadDebounce:    5 * time.Millisecond,
		ReloadPoll:        10 * time.Second,
		ShutdownTimeout:   30 * time.Second,
		MigrateOnStart:    true,
		NodeID:            host,
		NodeIDFromHost:    true,
		HeartbeatInterval: 5 * time.Second,
		GCInterval:        10 * time.Minute,
		PublishRetention:  10,
		RolloutSoak:       time.Minute,
		RolloutTimeout:    10 * time.Minute,
		ConsoleRoleClaim:  "email",
		GitBase:           "main",
		GitDir:            "config.d",
		GitBranchPrefix:   "keygate/",
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("Load() =\n%+v\nwant\n%+v", s, want)
	}
}

func TestValues(t *testing.T) {
	s, warnings, err := Load(setEnv(t, map[string]string{
		"KEYGATE_CONFIG_DIR":               "/etc/keygate/config.d",
		"KEYGATE_ENV_FILE":                 "env/base.env, env/staging.env,",
		"KEYGATE_SERVICE_ROLE":             "eu-edge",
		"KEYGATE_EXCLUDE_TAGS":             "under-test",
		"KEYGATE_LISTEN_ADDR":              "0.0.0.0:443",
		"KEYGATE_OPS_LISTEN_ADDR":          "127.0.0.1:9091",
		"KEYGATE_ADMIN_LISTEN_ADDR":        "[::1]:8082",
		"KEYGATE_PUBLISH_DIR":              "/srv/bundles",
		"KEYGATE_LOG_LEVEL":                "DEBUG",
		"KEYGATE_LOG_FORMAT":               "Text",
		"KEYGATE_RELOAD_DEBOUNCE":          "250ms",
		"KEYGATE_RELOAD_POLL_INTERVAL":     "0",
		"KEYGATE_SHUTDOWN_TIMEOUT":         "1m",
		"KEYGATE_MIGRATE_ON_START":         "false",
		"KEYGATE_NODE_ID":                  "node-7",
		"KEYGATE_HEARTBEAT_INTERVAL":       "2s",
		"KEYGATE_GC_INTERVAL":              "0",
		"KEYGATE_ADMIN_TLS_CERT_FILE":      "/tls/admin.crt",
		"KEYGATE_ADMIN_TLS_KEY_FILE":       "/tls/admin.key",
		"KEYGATE_ADMIN_TLS_CLIENT_CA_FILE": "/tls/ca.crt",
		"KEYGATE_TRUSTED_PROXIES":          "10.0.0.0/8, 192.0.2.7 ,fd00::/8,",
		"KEYGATE_ROLLOUT_SOAK":             "30s",
		"KEYGATE_ROLLOUT_TIMEOUT":          "15m",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings = %q", warnings)
	}
	want := Settings{
		ConfigDir:            "/etc/keygate/config.d",
		EnvFiles:             []string{"env/base.env", "env/staging.env"},
		ServiceRole:          "eu-edge",
		ExcludeTags:          []string{"under-test"},
		ListenAddr:           "0.0.0.0:443",
		OpsListenAddr:        "127.0.0.1:9091",
		AdminListenAddr:      "[::1]:8082",
		PublishDir:           "/srv/bundles",
		LogLevel:             "debug",
		LogFormat:            "text",
		ReloadDebounce:       250 * time.Millisecond,
		ReloadPoll:           0,
		ShutdownTimeout:      time.Minute,
		MigrateOnStart:       false,
		NodeID:               "node-7",
		HeartbeatInterval:    2 * time.Second,
		GCInterval:           0,
		PublishRetention:     10,
		AdminTLSCertFile:     "/tls/admin.crt",
		AdminTLSKeyFile:      "/tls/admin.key",
		AdminTLSClientCAFile: "/tls/ca.crt",
		TrustedProxies:       []string{"10.0.0.0/8", "192.0.2.7", "fd00::/8"},
		RolloutSoak:          30 * time.Second,
		RolloutTimeout:       15 * time.Minute,
		ConsoleRoleClaim:     "email",
		GitBase:              "main",
		GitDir:               "config.d",
		GitBranchPrefix:      "keygate/",
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("Load() =\n%+v\nwant\n%+v", s, want)
	}
}

// TestNoUnprefixedFallback guards against envconfig's fallback to the bare
// tag name: LOG_LEVEL belongs to some other program.
func TestNoUnprefixedFallback(t *testing.T) {
	env := setEnv(t, map[string]string{"LOG_LEVEL": "bogus", "NODE_ID": "other", "CONFIG_DIR": "/elsewhere"})
	s, _, err := Load(env)
	if err != nil {
		t.Fatal(err)
	}
	if s.LogLevel != "info" || s.NodeID == "other" || s.ConfigDir != "./config.d" {
		t.Errorf("unprefixed variables leaked in: %+v", s)
	}
}

func TestEmptyLists(t *testing.T) {
	s, _, err := Load(setEnv(t, map[string]string{"KEYGATE_ENV_FILE": "", "KEYGATE_EXCLUDE_TAGS": " , "}))
	if err != nil {
		t.Fatal(err)
	}
	if s.EnvFiles != nil || s.ExcludeTags != nil {
		t.Errorf("EnvFiles = %q, ExcludeTags = %q; want none", s.EnvFiles, s.ExcludeTags)
	}
}

func TestInvalid(t *testing.T) {
	tests := []struct {
		name string
		vars map[string]string
		want []string // substrings of the error, each naming its variable
	}{
		{"bad duration", map[string]string{"KEYGATE_RELOAD_DEBOUNCE": "soon"},
			[]string{`KEYGATE_RELOAD_DEBOUNCE: invalid time.Duration`}},
		{"duration without unit", map[string]string{"KEYGATE_SHUTDOWN_TIMEOUT": "30"},
			[]string{`KEYGATE_SHUTDOWN_TIMEOUT: invalid time.Duration`}},
		{"bad bool", map[string]string{"KEYGATE_MIGRATE_ON_START": "sometimes"},
			[]string{`KEYGATE_MIGRATE_ON_START: invalid bool`}},
		{"bad level", map[string]string{"KEYGATE_LOG_LEVEL": "verbose"},
			[]string{`KEYGATE_LOG_LEVEL: "verbose" is not one of debug, info, warn, error`}},
		{"bad format", map[string]string{"KEYGATE_LOG_FORMAT": "logfmt"},
			[]string{`KEYGATE_LOG_FORMAT: "logfmt" is not one of json, text`}},
		{"negative duration", map[string]string{"KEYGATE_RELOAD_POLL_INTERVAL": "-1s"},
			[]string{`KEYGATE_RELOAD_POLL_INTERVAL: -1s must not be negative`}},
		{"negative GC interval", map[string]string{"KEYGATE_GC_INTERVAL": "-10m"},
			[]string{`KEYGATE_GC_INTERVAL: -10m0s must not be negative`}},
		{"bad address", map[string]string{"KEYGATE_LISTEN_ADDR": "8080"},
			[]string{`KEYGATE_LISTEN_ADDR: "8080" is not host:port`}},
		{"same listener twice", map[string]string{"KEYGATE_OPS_LISTEN_ADDR": ":8080"},
			[]string{`KEYGATE_OPS_LISTEN_ADDR: ":8080" is also KEYGATE_LISTEN_ADDR`}},
		{"empty role", map[string]string{"KEYGATE_SERVICE_ROLE": " "},
			[]string{`KEYGATE_SERVICE_ROLE: must not be empty`}},
		{"TLS certificate without key", map[string]string{"KEYGATE_ADMIN_TLS_CERT_FILE": "/tls/admin.crt"},
			[]string{`KEYGATE_ADMIN_TLS_CERT_FILE: KEYGATE_ADMIN_TLS_CERT_FILE and KEYGATE_ADMIN_TLS_KEY_FILE must be set together`}},
		{"TLS key without certificate", map[string]string{"KEYGATE_ADMIN_TLS_KEY_FILE": "/tls/admin.key"},
			[]string{`KEYGATE_ADMIN_TLS_CERT_FILE: KEYGATE_ADMIN_TLS_CERT_FILE and KEYGATE_ADMIN_TLS_KEY_FILE must be set together`}},
		{"client CA without TLS", map[string]string{"KEYGATE_ADMIN_TLS_CLIENT_CA_FILE": "/tls/ca.crt"},
			[]string{`KEYGATE_ADMIN_TLS_CLIENT_CA_FILE: needs KEYGATE_ADMIN_TLS_CERT_FILE`}},
		{"bad trusted proxies", map[string]string{"KEYGATE_TRUSTED_PROXIES": "10.0.0.0/8, 10.0.0.0/33, proxy.internal"},
			[]string{`KEYGATE_TRUSTED_PROXIES: "10.0.0.0/33" is not a CIDR range`,
				`KEYGATE_TRUSTED_PROXIES: "proxy.internal" is not an IP address or CIDR range`}},
		{"every error at once", map[string]string{"KEYGATE_LOG_LEVEL": "loud", "KEYGATE_LOG_FORMAT": "xml", "KEYGATE_CONFIG_DIR": ""},
			[]string{"KEYGATE_LOG_LEVEL:", "KEYGATE_LOG_FORMAT:", "KEYGATE_CONFIG_DIR: must not be empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Load(setEnv(t, tt.vars))
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestValidOpsOnPortZero(t *testing.T) {
	s := Settings{ConfigDir: "c", ServiceRole: "r", NodeID: "n", LogLevel: "info", LogFormat: "json",
		ListenAddr: "127.0.0.1:0", OpsListenAddr: "127.0.0.1:0", AdminListenAddr: "127.0.0.1:0"}
	if err := s.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
}

func TestUnknownWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		environ []string
		want    []string
	}{
		{"none", []string{"PATH=/bin", "KEYGATE_LOG_LEVEL=info", "HOME=/root"}, nil},
		{"typo", []string{"KEYGATE_SERVICE_ROL=eu"},
			[]string{"unknown setting KEYGATE_SERVICE_ROL (did you mean KEYGATE_SERVICE_ROLE?)"}},
		{"transposed", []string{"KEYGATE_LOG_LEVLE=debug"},
			[]string{"unknown setting KEYGATE_LOG_LEVLE (did you mean KEYGATE_LOG_LEVEL?)"}},
		{"plural", []string{"KEYGATE_ENV_FILES=a.env"},
			[]string{"unknown setting KEYGATE_ENV_FILES (did you mean KEYGATE_ENV_FILE?)"}},
		{"wrong case", []string{"keygate_log_level=debug"},
			[]string{"unknown setting keygate_log_level (did you mean KEYGATE_LOG_LEVEL?)"}},
		{"nothing close", []string{"KEYGATE_FROBNICATE=1"},
			[]string{"unknown setting KEYGATE_FROBNICATE"}},
		{"sorted and once each", []string{"KEYGATE_ZZZ=1", "KEYGATE_AAA=2", "KEYGATE_ZZZ=3"},
			[]string{"unknown setting KEYGATE_AAA", "unknown setting KEYGATE_ZZZ"}},
		{"value never shown", []string{"KEYGATE_DB_PASSWORD=hunter2"},
			[]string{"unknown setting KEYGATE_DB_PASSWORD"}},
		{"bare prefix", []string{"KEYGATE_=x"}, []string{"unknown setting KEYGATE_"}},
		{"other prefixes ignored", []string{"KEYGATEWAY=1", "MY_KEYGATE_X=1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, name := range UnknownVariables(tt.environ) {
				got = append(got, UnknownWarning(name))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("warnings =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// TestLoadWarns checks that Load itself reports unknown variables from environ.
func TestLoadWarns(t *testing.T) {
	env := setEnv(t, map[string]string{"KEYGATE_SERVICE_ROL": "eu"})
	s, warnings, err := Load(env)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"unknown setting KEYGATE_SERVICE_ROL (did you mean KEYGATE_SERVICE_ROLE?)"}
	if !slices.Equal(warnings, want) {
		t.Errorf("warnings = %q, want %q", warnings, want)
	}
	if s.ServiceRole != "default" {
		t.Errorf("ServiceRole = %q; a typo must not set it", s.ServiceRole)
	}
}

func TestKnownVariables(t *testing.T) {
	got := KnownVariables()
	want := []string{
		"KEYGATE_ADMIN_LISTEN_ADDR", "KEYGATE_ADMIN_TLS_CERT_FILE", "KEYGATE_ADMIN_TLS_CLIENT_CA_FILE", "KEYGATE_ADMIN_TLS_KEY_FILE",
		"KEYGATE_ADMIN_TOKEN_FILE", "KEYGATE_BUNDLE_SIGNING_KEY_FILE", "KEYGATE_BUNDLE_VERIFY_KEY_FILE", "KEYGATE_CONFIG_DIR", "KEYGATE_CONSOLE_BRANDING_DIR", "KEYGATE_CONSOLE_CLIENTS_FILE", "KEYGATE_CONSOLE_CLIENT_ID", "KEYGATE_CONSOLE_CLIENT_SECRET_FILE", "KEYGATE_CONSOLE_EDITORS", "KEYGATE_CONSOLE_ISSUER", "KEYGATE_CONSOLE_ROLE_CLAIM", "KEYGATE_CONSOLE_TITLE", "KEYGATE_CONSOLE_URL", "KEYGATE_CONSOLE_VIEWERS", "KEYGATE_ENV_FILE", "KEYGATE_EXCLUDE_TAGS", "KEYGATE_FILE_DIRS",
		"KEYGATE_GC_INTERVAL", "KEYGATE_GIT_BASE", "KEYGATE_GIT_BRANCH_PREFIX", "KEYGATE_GIT_COMPARE_URL", "KEYGATE_GIT_DIR", "KEYGATE_GIT_SSH_KEY_FILE", "KEYGATE_GIT_TOKEN_FILE", "KEYGATE_GIT_URL", "KEYGATE_GIT_USERNAME", "KEYGATE_HEARTBEAT_INTERVAL", "KEYGATE_LISTEN_ADDR", "KEYGATE_LOG_FORMAT", "KEYGATE_LOG_LEVEL", "KEYGATE_MIGRATE_ON_START",
		"KEYGATE_NODE_ID", "KEYGATE_OPS_LISTEN_ADDR", "KEYGATE_PUBLISH_DIR", "KEYGATE_PUBLISH_RETENTION", "KEYGATE_RELOAD_DEBOUNCE",
		"KEYGATE_RELOAD_POLL_INTERVAL", "KEYGATE_ROLLOUT_SOAK", "KEYGATE_ROLLOUT_TIMEOUT", "KEYGATE_SERVICE_ROLE", "KEYGATE_SHUTDOWN_TIMEOUT", "KEYGATE_STAGE", "KEYGATE_TRUSTED_PROXIES",
	}
	if !slices.Equal(got, want) {
		t.Errorf("KnownVariables() =\n%q\nwant\n%q", got, want)
	}
	got[0] = "mutated"
	if KnownVariables()[0] != want[0] {
		t.Error("KnownVariables returned shared storage")
	}
}
