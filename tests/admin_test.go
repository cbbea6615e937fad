package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/bundle"
	"github.com/keygate/keygate/internal/publish"
	"github.com/keygate/keygate/internal/testkit"
)

// adminNode is a running `keygate admin`.
type adminNode struct {
	*testkit.Proc
	url string
}

func startAdmin(t *testing.T, env ...string) *adminNode {
	t.Helper()
	cmd := exec.Command(binary, "admin")
	cmd.Dir = t.TempDir()
	// The tests' key files live in temporary directories, which the
	// admin's default KEYGATE_FILE_DIRS (the usual secret mounts) refuses.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "KEYGATE_ADMIN_LISTEN_ADDR=127.0.0.1:0", "KEYGATE_LOG_FORMAT=json",
		"KEYGATE_FILE_DIRS=" + os.TempDir()}, env...)
	p, err := testkit.Start(cmd, testkit.ServingAdmin)
	check(t, err)
	t.Cleanup(func() {
		if p.Alive() {
			p.Kill()
		}
		if t.Failed() {
			t.Logf("admin logs:\n%s", p.Logs)
		}
	})
	if err := p.WaitServing(context.Background(), 15*time.Second); err != nil {
		t.Fatalf("admin: %v", err)
	}
	return &adminNode{Proc: p, url: "http://" + p.Addr("admin")}
}

func (a *adminNode) call(t *testing.T, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, a.url+path, r)
	check(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	check(t, err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// publishCLI runs `keygate bundle publish`; it returns the exit code, stdout and stderr.
func publishCLI(t *testing.T, adminURL, dir, tokenFile string, extra ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"bundle", "publish", "--admin", adminURL, "--dir", dir, "--token-file", tokenFile, "--author", "ci"}, extra...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		check(t, err)
	}
	return code, strings.TrimSpace(out.String()), errb.String()
}

func dirListing(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	check(t, filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		data := ""
		if info.Mode().IsRegular() {
			b, _ := os.ReadFile(path)
			data = string(b)
		} else if info.Mode()&os.ModeSymlink != 0 {
			data, _ = os.Readlink(path)
		}
		out = append(out, rel+"|"+data)
		return nil
	}))
	return out
}

// publishDeadline is how soon after a publish or rollback call returns
// every runtime node serves it.
const publishDeadline = 2 * time.Second

// waitPublished waits until served holds (every node serves what the call
// that returned at since published) and every node's /status shows
// version, then checks publishDeadline on the nodes' own clocks: each
// loaded it (loaded_at) within publishDeadline of since. The waits are
// generous and the deadline is not measured by when this test's polling
// saw the change: on a loaded CI machine the polling (a race-instrumented
// test binary asking every node over HTTP) can lag the nodes by more than
// the deadline.
func waitPublished(t *testing.T, what, version string, since time.Time, nodes []*node, served func() bool) {
	t.Helper()
	testkit.WaitFor(t, 15*time.Second, what, served)
	for _, n := range nodes {
		var st testkit.Status
		// The node records /status just after the swap.
		testkit.WaitFor(t, 15*time.Second, what+": "+version+" in /status", func() bool {
			st = n.Status()
			return st.ConfigVersion == version
		})
		if lag := st.LoadedAt.Sub(since); lag > publishDeadline {
			t.Errorf("%s: node %s loaded %s %s after the call returned, want within %s", what, n.Public(), version, lag.Round(time.Millisecond), publishDeadline)
		} else {
			t.Logf("%s: node %s loaded %s %s after the call returned", what, n.Public(), version, max(lag, 0).Round(time.Millisecond))
		}
	}
}

func TestAdminPublishVerifyRollback(t *testing.T) {
	secrets := t.TempDir()
	signFile, verifyFile, signKey := testkit.BundleKeys(t, secrets)
	tokenFile := filepath.Join(secrets, "token")
	const token = "admin-token-0123456789abcdef"
	check(t, os.WriteFile(tokenFile, []byte(token+"\n"), 0o600))
	k1 := testkit.KeyFile(t, secrets, "k1")
	keys := testkit.KeysConfig(map[string]string{"k1": k1})
	src := func(issuer string) string {
		return testkit.ConfigDir(t, map[string]string{"00-token.yaml": testkit.TokenConfig(unusedDB, issuer, "k1"), "10-keys.yaml": keys})
	}

	pubDir := t.TempDir()
	adm := startAdmin(t, "KEYGATE_PUBLISH_DIR="+pubDir, "KEYGATE_BUNDLE_SIGNING_KEY_FILE="+signFile, "KEYGATE_ADMIN_TOKEN_FILE="+tokenFile,
		"KEYGATE_CONFIG_DIR="+t.TempDir())

	// Every call is authenticated.
	if code, _ := adm.call(t, "GET", "/admin/v1/bundles", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}
	if code, _ := adm.call(t, "GET", "/admin/v1/bundles", "wrong-token-0123456789", nil); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	if adm.Logs.Contains(token) {
		t.Fatal("the admin token was logged")
	}

	code, v1, stderr := publishCLI(t, adm.url, src("http://localhost/one"), tokenFile, "--message", "first")
	if code != 0 || v1 != "v1" {
		t.Fatalf("publish: exit %d %q\n%s", code, v1, stderr)
	}
	verifyEnv := "KEYGATE_BUNDLE_VERIFY_KEY_FILE=" + verifyFile
	nodes := []*node{startNode(t, pubDir, verifyEnv), startNode(t, pubDir, verifyEnv)}
	serving := func(issuer string) func() bool {
		return func() bool {
			for _, n := range nodes {
				if n.Issuer("/oauth/v2") != issuer {
					return false
				}
			}
			return true
		}
	}
	testkit.WaitFor(t, 15*time.Second, "v1 on both nodes", serving("http://localhost/one"))
	if st := nodes[0].Status(); st.ConfigVersion != "v1" {
		t.Fatalf("status version %q", st.ConfigVersion)
	}

	// Publish v2: both nodes serve it within 2 s.
	code, v2, stderr := publishCLI(t, adm.url, src("http://localhost/two"), tokenFile)
	if code != 0 || v2 != "v2" {
		t.Fatalf("publish v2: exit %d %q\n%s", code, v2, stderr)
	}
	waitPublished(t, "v2 on both nodes", "v2", time.Now(), nodes, serving("http://localhost/two"))

	// Roll back: both return.
	if code, body := adm.call(t, "POST", "/admin/v1/bundles/v1/activate", token, nil); code != http.StatusOK {
		t.Fatalf("activate: %d %s", code, body)
	}
	waitPublished(t, "rollback to v1 on both nodes", "v1", time.Now(), nodes, serving("http://localhost/one"))
	var hist struct {
		Bundles []struct {
			Version string
			Active  bool
		}
	}
	_, body := adm.call(t, "GET", "/admin/v1/bundles", token, nil)
	check(t, json.Unmarshal(body, &hist))
	if len(hist.Bundles) != 2 || hist.Bundles[0].Version != "v2" || hist.Bundles[0].Active || !hist.Bundles[1].Active {
		t.Fatalf("history %s", body)
	}

	// A broken reference: refused with every error, publish dir unchanged.
	before := dirListing(t, pubDir)
	broken := testkit.ConfigDir(t, map[string]string{"00-token.yaml": strings.Replace(testkit.TokenConfig(unusedDB, "http://localhost/x", "k9"), "zone: local", "zone: nowhere", 1), "10-keys.yaml": keys})
	code, _, stderr = publishCLI(t, adm.url, broken, tokenFile)
	if code != 1 || !strings.Contains(stderr, `"k9"`) || !strings.Contains(stderr, `"nowhere"`) {
		t.Fatalf("broken bundle: exit %d\n%s", code, stderr)
	}
	if after := dirListing(t, pubDir); !slices.Equal(before, after) {
		t.Fatalf("publish dir changed by a refused bundle:\n%q\n%q", before, after)
	}

	// Tampered: a byte changed in the active version's file after signing.
	target := filepath.Join(pubDir, "..data", "00-token.yaml")
	orig, err := os.ReadFile(target)
	check(t, err)
	check(t, os.WriteFile(target, bytes.Replace(orig, []byte("/one"), []byte("/evil"), 1), 0o644))
	for _, n := range nodes {
		n.Signal(syscall.SIGHUP) // SIGHUP: the periodic check would find it too
	}
	testkit.WaitFor(t, 15*time.Second, "tampered bundle refused", func() bool {
		for _, n := range nodes {
			if st := n.Status(); st.LastResult != "failure" || !strings.Contains(st.LastError, "do not match the signed manifest") {
				return false
			}
		}
		return true
	})
	if !serving("http://localhost/one")() {
		t.Fatal("last good config not kept after a tampered bundle")
	}
	check(t, os.WriteFile(target, orig, 0o644))

	// Unsigned: a node that verifies refuses a plain directory at start.
	plain := launch(t, src("http://localhost/plain"), verifyEnv)
	if code := plain.WaitExit(15 * time.Second); code != 1 || !plain.Logs.Contains("bundle is not signed") {
		t.Fatalf("unsigned dir: exit %d\n%s", code, plain.Logs)
	}

	// Load during ten publishes: zero failed requests.
	var failed, ok atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(n *node) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, p := range []string{"/oauth/v2/.well-known/openid-configuration", "/oauth/v2/jwks"} {
					if code, _ := testkit.Get(n.Public() + p); code == http.StatusOK {
						ok.Add(1)
					} else {
						failed.Add(1)
					}
				}
			}
		}(nodes[i%2])
	}
	files := map[string]string{"10-keys.yaml": keys}
	var last struct{ Version string }
	var lastAt time.Time
	for i := 0; i < 10; i++ {
		files["00-token.yaml"] = testkit.TokenConfig(unusedDB, "http://localhost/load"+string(rune('a'+i)), "k1")
		code, body := adm.call(t, "POST", "/admin/v1/bundles", token, map[string]any{"files": files, "author": "load"})
		if code != http.StatusCreated || json.Unmarshal(body, &last) != nil || last.Version == "" {
			t.Fatalf("publish %d: %d %s", i, code, body)
		}
		lastAt = time.Now()
		time.Sleep(100 * time.Millisecond) // pace the publishes so reloads overlap requests
	}
	waitPublished(t, "last load publish served", last.Version, lastAt, nodes, serving("http://localhost/loadj"))
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("during ten publishes: %d failed, %d ok", failed.Load(), ok.Load())
	}

	// Admin stopped: nodes keep serving and still reload from a file drop
	// (a signed version written with the bundle and publish packages).
	adm.Kill()
	pub, err := publish.New(pubDir, 10)
	check(t, err)
	next, err := pub.NextVersion()
	check(t, err)
	b, err := bundle.Build(src("http://localhost/drop"), bundle.Meta{Version: next, Author: "ops"}, nil)
	check(t, err)
	check(t, b.Sign(signKey))
	check(t, pub.Publish(b))
	waitPublished(t, "file drop served without the admin node", next, time.Now(), nodes, serving("http://localhost/drop"))
	// A later hint for the same publish may have found nothing new since
	// ("unchanged"): what matters is that no reload failed.
	if st := nodes[1].Status(); st.ConfigVersion != next || st.LastResult == "failure" || st.LastError != "" {
		t.Fatalf("status after file drop: %+v", st)
	}
}
