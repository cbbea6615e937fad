package tests

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/storage/postgres/pgtest"
	"github.com/keygate/keygate/internal/testkit"
)

// storageConfig is a token profile on zone local, whose data source db is
// the given flow-style YAML map.
func storageConfig(t *testing.T, dataSource string) (dir string, write func(dataSource string)) {
	t.Helper()
	k1 := testkit.KeyFile(t, t.TempDir(), "k1")
	dir = testkit.ConfigDir(t, map[string]string{
		"service.yaml": `schema: 1
service-roles:
  default: {zone: local, profiles: [token]}
zones:
  local: {data-source: db}
profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: http://localhost/oauth/v2
    signing-keys: [k1]
    endpoints: [discovery, jwks]
`,
		"keys.yaml":         testkit.KeysConfig(map[string]string{"k1": k1}),
		"data-sources.yaml": "data-sources:\n  db: " + dataSource + "\n",
	})
	write = func(dataSource string) {
		testkit.WriteAtomic(t, filepath.Join(dir, "data-sources.yaml"), "data-sources:\n  db: "+dataSource+"\n")
	}
	return dir, write
}

func (n *node) readyz() (int, string) {
	code, body := testkit.Get(n.Ops() + "/readyz")
	return code, string(body)
}

func (n *node) waitReady(t testing.TB) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, "/readyz 200", func() bool { code, _ := n.readyz(); return code == http.StatusOK })
}

// runMigrate runs `keygate migrate` and returns its exit code and output.
func runMigrate(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"migrate"}, args...)...)
	cmd.Dir = t.TempDir()
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

var schemaLine = regexp.MustCompile(`(?m)^data source db \((sqlite|postgres)\): schema version [1-9][0-9]*$`)

// storageScenario: the node starts with its data source migrated and is
// ready; a changed data source is reloaded onto a new pool and the node
// stays ready; an unopenable one fails the reload, the node keeps serving
// the old config and says which data source failed; `keygate migrate`
// reports the schema version. secrets must never appear in /status or the
// logs.
type storageScenario struct {
	good, changed, broken string // data source entries
	env                   []string
	secrets               []string
}

func (sc storageScenario) run(t *testing.T) {
	dir, write := storageConfig(t, sc.good)
	n := startNode(t, dir, sc.env...)
	n.waitReady(t)
	if !n.Logs.Contains(`"data source opened"`) {
		t.Error("no log of the data source being opened")
	}

	// A changed data source: a new pool, opened before the swap.
	before := n.Status()
	write(sc.changed)
	s := n.WaitLoaded(before)
	if !s.LoadedSince(before) || s.ConfigHash == before.ConfigHash {
		t.Fatalf("reload with a changed data source: %+v", s)
	}
	if code, body := n.readyz(); code != http.StatusOK {
		t.Errorf("/readyz after the data source changed: %d %s", code, body)
	}
	testkit.WaitFor(t, 10*time.Second, "the old pool to close", func() bool { return n.Logs.Contains(`"data source closed"`) })

	// An unopenable data source: the reload fails before the swap.
	before = n.Status()
	write(sc.broken)
	s = n.WaitReload(before)
	if s.LastResult != "failure" || !strings.Contains(s.LastError, "data source db") {
		t.Fatalf("reload with an unopenable data source: result %q, error %q", s.LastResult, s.LastError)
	}
	if s.ConfigHash != before.ConfigHash {
		t.Errorf("config hash moved to the broken config: %s → %s", before.ConfigHash, s.ConfigHash)
	}
	if code, body := n.readyz(); code != http.StatusOK {
		t.Errorf("/readyz while serving the last good config: %d %s", code, body)
	}
	if got := n.Issuer("/oauth/v2"); got != "http://localhost/oauth/v2" {
		t.Errorf("after the failed reload the issuer is %q", got)
	}
	var raw map[string]any
	testkit.GetJSON(t, n.Ops()+"/status", &raw)
	if raw["zone"] != "local" || raw["data_source"] != "db" {
		t.Errorf("/status zone %v, data_source %v; want local, db", raw["zone"], raw["data_source"])
	}

	// Back to the good one: the node loads it again.
	before = n.Status()
	write(sc.changed)
	if s := n.WaitLoaded(before); !s.LoadedSince(before) {
		t.Errorf("reload after the fix: %+v", s)
	}

	// keygate migrate: idempotent on the migrated database.
	code, stdout, stderr := runMigrate(t, sc.env, "--dir", dir)
	if code != 0 || !schemaLine.MatchString(stdout) {
		t.Errorf("keygate migrate: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	t.Logf("keygate migrate: %s", strings.TrimSpace(stdout))
	t.Logf("failed reload: %s", s.LastError)
	write(sc.broken)
	code, stdout, stderr = runMigrate(t, sc.env, "--dir", dir)
	if code != 1 || !strings.Contains(stderr, "data source db") {
		t.Errorf("keygate migrate on an unopenable data source: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	t.Logf("keygate migrate (unopenable): exit %d: %s", code, strings.TrimSpace(stderr))

	_, statusBody := testkit.Get(n.Ops() + "/status")
	for _, secret := range sc.secrets {
		for where, text := range map[string]string{"/status": string(statusBody), "logs": n.Logs.String(), "migrate output": stdout + stderr} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows a secret of the data source URL", where)
			}
		}
	}
}

func TestSQLiteDataSourceLifecycle(t *testing.T) {
	data := t.TempDir()
	file := filepath.Join(data, "regular-file")
	if err := os.WriteFile(file, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	storageScenario{
		good:    testkit.SQLiteYAML(filepath.Join(data, "one", "keygate.db")),
		changed: testkit.SQLiteYAML(filepath.Join(data, "two", "keygate.db")),
		broken:  testkit.SQLiteYAML(filepath.Join(file, "keygate.db")),
	}.run(t)
	for _, db := range []string{"one", "two"} {
		if _, err := os.Stat(filepath.Join(data, db, "keygate.db")); err != nil {
			t.Errorf("database %s: %v", db, err)
		}
	}
}

func TestPostgresDataSourceLifecycle(t *testing.T) {
	url := pgtest.SchemaURL(t, pgtest.Schema(t)) // skips loudly, or fails with CI=true, when unreachable
	const badPassword = "hunter2-not-logged"
	storageScenario{
		good:    "{type: postgres, url: $PG_URL, max-connections: 4}",
		changed: "{type: postgres, url: $PG_URL, max-connections: 3}",
		broken:  "{type: postgres, url: $PG_BAD_URL}",
		env: []string{
			"PG_URL=" + url,
			"PG_BAD_URL=postgres://keygate:" + badPassword + "@127.0.0.1:1/none?sslmode=disable&connect_timeout=2",
		},
		secrets: []string{badPassword, "postgres://"},
	}.run(t)
}

// With KEYGATE_MIGRATE_ON_START=false a fresh database is not migrated: the
// node serves its config but is not ready, naming the data source, until
// `keygate migrate` has run; then it is ready without a restart.
func TestMigrateOffWaitsForKeygateMigrate(t *testing.T) {
	data := t.TempDir()
	dir, _ := storageConfig(t, testkit.SQLiteYAML(filepath.Join(data, "keygate.db")))
	n := startNode(t, dir, "KEYGATE_MIGRATE_ON_START=false")
	code, body := n.readyz()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "data source db") || !strings.Contains(body, "keygate migrate") {
		t.Fatalf("/readyz on an unmigrated database: %d %s", code, body)
	}
	if code, stdout, stderr := runMigrate(t, nil, "--dir", dir); code != 0 || !schemaLine.MatchString(stdout) {
		t.Fatalf("keygate migrate: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	n.waitReady(t)
}
