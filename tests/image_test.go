package tests

import (
	"context"
	"debug/elf"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testkit"
)

// The container image cannot be built on these machines, so this builds
// what it would hold, with the Dockerfile's own build command, and runs
// it the way the manifests do: as the distroless nonroot user (65532), on
// a read-only root file system, with only the data directory writable.
// The node starts, migrates its SQLite file, serves tokens and is ready.
func TestImageBinaryRunsAsNonRootOnReadOnlyRoot(t *testing.T) {
	for _, tool := range []string{"unshare", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil || os.Geteuid() != 0 {
			msg := fmt.Sprintf("needs root and %s (util-linux) to run the binary as uid 65532 on a read-only root: image check NOT RUN", tool)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	dockerfile, err := os.ReadFile("../deploy/Dockerfile")
	check(t, err)
	df := strings.ReplaceAll(string(dockerfile), "\\\n", " ")
	m := regexp.MustCompile(`(?m)^RUN .*?(CGO_ENABLED=0 GOOS=linux) go build (.*?) -o /out/keygate ./cmd/keygate\s*$`).FindStringSubmatch(df)
	if m == nil || !strings.Contains(df, "USER nonroot:nonroot") || !strings.Contains(df, "distroless/static") {
		t.Fatalf("the Dockerfile's build line or user is not where this test looks:\n%s", dockerfile)
	}
	var flags []string
	for _, f := range regexp.MustCompile(`"[^"]*"|\S+`).FindAllString(m[2], -1) {
		flags = append(flags, strings.ReplaceAll(strings.Trim(f, `"`), "${VERSION}", "image-test"))
	}

	root := t.TempDir()
	check(t, os.Chmod(root, 0o755))
	check(t, os.Chmod(filepath.Dir(root), 0o755)) // the test's own temporary directory
	bin := filepath.Join(root, "keygate")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", append(append([]string{"build"}, flags...), "-o", bin, "../cmd/keygate")...)
	build.Env = append(os.Environ(), strings.Fields(m[1])...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", flags, err, out)
	}
	f, err := elf.Open(bin)
	check(t, err)
	libs, _ := f.ImportedLibraries()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the binary has an ELF interpreter: it is not static")
		}
	}
	if len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	f.Close()

	// The files as Kubernetes mounts them: config and secrets readable,
	// not writable, by the node's user; the data directory its own.
	const uid = 65532
	config := filepath.Join(root, "config.d")
	secrets := filepath.Join(root, "secrets")
	data := filepath.Join(root, "data")
	for _, d := range []string{config, secrets, data} {
		check(t, os.Mkdir(d, 0o755))
	}
	check(t, os.Chown(data, uid, uid))
	copyFiles := func(from, to string, mode os.FileMode) {
		entries, err := os.ReadDir(from)
		check(t, err)
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(from, e.Name()))
			check(t, err)
			check(t, os.WriteFile(filepath.Join(to, e.Name()), b, mode))
			check(t, os.Chown(filepath.Join(to, e.Name()), 0, uid))
		}
	}
	copyFiles("../config.d", config, 0o644)
	copyFiles("../env/local-secrets", secrets, 0o640) // group-readable, as a Secret volume with fsGroup
	addr := fedPort(t)
	envFile := filepath.Join(root, "stage.env")
	check(t, os.WriteFile(envFile, []byte(strings.Join([]string{
		"PUBLIC_BASE_URL=http://" + addr, "DATA_DIR=" + data, "SECRETS_DIR=" + secrets,
		"WEB_APP_REDIRECT_URI=https://app.example.com/callback", "WEB_APP_SECRET=web-app-secret-0123456789",
		"BILLING_API_SECRET=billing-api-secret-0123456789", "DEMO_USERNAME=demo", "DEMO_PASSWORD=demo-password-0123",
	}, "\n")+"\n"), 0o644))

	// A private mount namespace: the data directory bound writable, then
	// the root remounted read-only; the node then runs as 65532 with no
	// capabilities.
	script := fmt.Sprintf("mount --make-rprivate / && mount --bind %[1]s %[1]s && mount -o remount,bind,ro / && "+
		"exec setpriv --reuid=%[2]d --regid=%[2]d --clear-groups --inh-caps=-all --bounding-set=-all %[3]s runtime", data, uid, bin)
	cmd := exec.Command("unshare", "--mount", "sh", "-c", script)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "KEYGATE_CONFIG_DIR=" + config, "KEYGATE_ENV_FILE=" + envFile,
		"KEYGATE_LISTEN_ADDR=" + addr, "KEYGATE_OPS_LISTEN_ADDR=127.0.0.1:0", "KEYGATE_LOG_FORMAT=json", "KEYGATE_SHUTDOWN_TIMEOUT=5s"}
	p, err := testkit.Start(cmd, testkit.ServingRuntime)
	check(t, err)
	t.Cleanup(func() {
		if p.Alive() {
			p.Kill()
		}
		if t.Failed() {
			t.Logf("node logs:\n%s", p.Logs)
		}
	})
	check(t, p.WaitServing(ctx, 30*time.Second))

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	check(t, err)
	if !regexp.MustCompile(`(?m)^Uid:\s+65532\s+65532\s+65532\s+65532$`).Match(status) {
		t.Errorf("the node does not run as 65532:\n%s", status)
	}
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", cmd.Process.Pid))
	check(t, err)
	if !regexp.MustCompile(`(?m)^\S+ \S+ \S+ \S+ / ro[, ]`).Match(mounts) {
		t.Errorf("the node's root is not read-only:\n%s", mounts)
	}
	ops := "http://" + p.Addr("ops")
	testkit.WaitFor(t, 15*time.Second, "/readyz 200", func() bool { code, _ := testkit.Get(ops + "/readyz"); return code == http.StatusOK })
	if code, body := postForm(t, "http://"+addr+"/oauth/v2/token", url.Values{"grant_type": {"client_credentials"}},
		"billing-api", "billing-api-secret-0123456789"); code != http.StatusOK {
		t.Errorf("a token from the node: %d %s", code, body)
	}
	if fi, err := os.Stat(filepath.Join(data, "keygate.db")); err != nil || fi.Size() == 0 {
		t.Errorf("the node did not write its database in the data directory: %v", err)
	}
	if p.Logs.Warnings() > 0 {
		t.Errorf("the node warned:\n%s", p.Logs)
	}
}
