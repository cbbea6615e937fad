package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/password"
	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/testkit"
)

func TestUserAdd(t *testing.T) {
	hermetic(t)
	dir, data := t.TempDir(), t.TempDir()
	cfg := `schema: 1
service-roles:
  default: {zone: local, profiles: [authn]}
  eu: {zone: eu, profiles: [authn]}
zones:
  local: {data-source: local-db}
  eu: {data-source: eu-db}
data-sources:
  local-db: {type: sqlite, path: "${DATA_DIR}/keygate.db"}
  eu-db: {type: postgres, url: $EU_DATABASE_URL}
profiles:
  authn:
    type: authentication
    path: /authn
    authenticators:
      password: {type: password, argon2: {memory-kib: 1024, iterations: 1}}
`
	if err := os.WriteFile(filepath.Join(dir, "00.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"DATA_DIR=" + data}
	add := func(pw string, args ...string) result {
		t.Helper()
		old := stdin
		stdin = strings.NewReader(pw)
		defer func() { stdin = old }()
		return runCLI(t, env, append([]string{"user", "add", "--dir", dir}, args...)...)
	}
	// No database file yet: refused unless asked, since a user added to a
	// new file is invisible to a node that has another one open.
	if r := add("s3cret pass\n", "--zone", "local", "--username", "alice"); r.code != 1 || !strings.Contains(r.stderr, "does not exist") ||
		!strings.Contains(r.stderr, "--create-db") {
		t.Fatalf("add without a database: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(data, "keygate.db")); !os.IsNotExist(err) {
		t.Fatalf("a refused add created the database: %v", err)
	}
	r := add("s3cret pass\n", "--create-db", "--zone", "local", "--username", " Alice ", "--name", "Alice Liddell", "--email", "alice@example.com", "--email-verified")
	if r.code != 0 || !strings.Contains(r.stdout, "created user alice") {
		t.Fatalf("add: %+v", r)
	}
	// Created in the zone's data source, migrated on the way (KEYGATE_MIGRATE_ON_START defaults to true).
	ctx := context.Background()
	st := testkit.SQLiteAt(t, filepath.Join(data, "keygate.db"))
	u, err := st.Users().GetByUsername(ctx, "local", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if u.Status != model.UserActive || u.Claims["name"] != "Alice Liddell" || u.Claims["email_verified"] != true || u.Claims["email"] != "alice@example.com" {
		t.Fatalf("user %+v", u)
	}
	if !strings.HasPrefix(u.PasswordHash, "$argon2id$v=19$m=1024,t=1,p=1$") {
		t.Fatalf("hash %s (want the zone's authenticator's params)", u.PasswordHash)
	}
	if ok, _, _ := password.Verify("s3cret pass", u.PasswordHash, password.Params{Memory: 1024, Iterations: 1, Parallelism: 1}); !ok {
		t.Fatal("password (trailing newline dropped) does not verify")
	}

	// Duplicate, empty password, unknown zone, missing flags.
	if r := add("x", "--zone", "local", "--username", "ALICE"); r.code != 1 || !strings.Contains(r.stderr, `user "alice" already exists in zone local`) {
		t.Errorf("duplicate: %+v", r)
	}
	if r := add("", "--zone", "local", "--username", "bob"); r.code != 2 || !strings.Contains(r.stderr, "no password on stdin") {
		t.Errorf("empty password: %+v", r)
	}
	if r := add("pw", "--zone", "mars", "--username", "bob"); r.code != 1 || !strings.Contains(r.stderr, `zone "mars"`) {
		t.Errorf("unknown zone: %+v", r)
	}
	if r := add("pw", "--username", "bob"); r.code != 2 || !strings.Contains(r.stderr, "--zone and --username are required") {
		t.Errorf("no zone: %+v", r)
	}
	if r := add("pw", "--zone", "local", "--username", "bob", "--env-file", filepath.Join(dir, "missing.env")); r.code != 1 {
		t.Errorf("missing env file: %+v", r)
	}
}
