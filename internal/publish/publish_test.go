package publish

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/bundle"
	"github.com/keygate/keygate/internal/config"
)

// key is fixed so the crash helper process signs with the same key.
var key = ed25519.NewKeyFromSeed([]byte("keygate-publish-test-seed-32byte"))

func cfg(issuer string) string {
	return fmt.Sprintf(`schema: 1
service-roles:
  default: {zone: z, profiles: [authn]}
zones:
  z: {data-source: d}
data-sources:
  d: {type: sqlite, path: x.db}
profiles:
  authn: {type: authentication, path: /%s, authenticators: {password: {type: password}}}
`, issuer)
}

// newBundle builds and signs a bundle from files, version from p.
func newBundle(t testing.TB, p *Publisher, files map[string]string) *bundle.Bundle {
	t.Helper()
	src := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v, err := p.NextVersion()
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Build(src, bundle.Meta{Version: v, Author: "test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Sign(key); err != nil {
		t.Fatal(err)
	}
	return b
}

func publish(t testing.TB, p *Publisher, files map[string]string) string {
	t.Helper()
	b := newBundle(t, p, files)
	if err := p.Publish(b); err != nil {
		t.Fatal(err)
	}
	return b.Manifest.Version
}

// listing is every entry of dir: links with their targets, dirs with a /.
func listing(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		switch {
		case e.Type()&os.ModeSymlink != 0:
			dest, _ := os.Readlink(filepath.Join(dir, e.Name()))
			out = append(out, e.Name()+" -> "+dest)
		case e.IsDir():
			out = append(out, e.Name()+"/")
		default:
			out = append(out, e.Name())
		}
	}
	return out
}

// loaded returns the authn path that config.Load sees through the publish dir.
func loaded(t testing.TB, dir string) (path, version string) {
	t.Helper()
	snap, err := config.Load(config.Options{Dir: dir, Verify: bundle.Verifier(key.Public().(ed25519.PublicKey))})
	if err != nil {
		t.Fatalf("publish dir does not load: %v", err)
	}
	return snap.Profiles["authn"].Path, snap.BundleVersion
}

func TestLayoutIsKubelets(t *testing.T) {
	dir := t.TempDir()
	p, err := New(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	v1 := publish(t, p, map[string]string{"00-a.yaml": cfg("one"), "10-b.yaml": "# b\n"})
	v2 := publish(t, p, map[string]string{"00-a.yaml": cfg("two"), "20-c.yaml": "# c\n"})
	if v1 != "v1" || v2 != "v2" {
		t.Fatalf("versions %s %s", v1, v2)
	}
	got := listing(t, dir)
	if len(got) != 7 || !slices.Contains(got, "roles/") {
		t.Fatalf("listing: %q", got)
	}
	// ..data is a relative link to the newest version dir; files link through ..data.
	data, _ := os.Readlink(filepath.Join(dir, "..data"))
	if !strings.HasPrefix(data, "..v2_") || strings.Contains(data, "/") {
		t.Fatalf("..data -> %q", data)
	}
	want := []string{"..data -> " + data, "00-a.yaml -> ..data/00-a.yaml", "20-c.yaml -> ..data/20-c.yaml", "bundle.json -> ..data/bundle.json"}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("missing %q in %q", w, got)
		}
	}
	if slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "10-b.yaml") }) {
		t.Errorf("a file the new version dropped is still linked: %q", got)
	}
	if got := listing(t, filepath.Join(dir, data)); !slices.Equal(got, []string{"00-a.yaml", "20-c.yaml", "bundle.json"}) {
		t.Errorf("version dir: %q", got)
	}
	if path, v := loaded(t, dir); path != "/two" || v != "v2" {
		t.Fatalf("loaded %s %s", path, v)
	}
	// The role's channel has the same layout, its ..data reaching the
	// same version directory.
	channel := filepath.Join(dir, "roles", "default")
	want = []string{"..data -> ../../" + data, "00-a.yaml -> ..data/00-a.yaml", "20-c.yaml -> ..data/20-c.yaml", "bundle.json -> ..data/bundle.json"}
	if got := listing(t, channel); !slices.Equal(got, want) {
		t.Errorf("roles/default: %q, want %q", got, want)
	}
	if path, v := loaded(t, channel); path != "/two" || v != "v2" {
		t.Fatalf("roles/default loaded %s %s", path, v)
	}
}

// A staged switch moves only the named channels; the others, and the
// top level, keep serving their version, and no served version is pruned.
func TestSwitchMovesOnlyTheNamedChannels(t *testing.T) {
	dir := t.TempDir()
	p, err := New(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	two := func(issuer string) map[string]string {
		return map[string]string{"00-a.yaml": strings.Replace(cfg(issuer), "  default: {zone: z, profiles: [authn]}",
			"  default: {zone: z, profiles: [authn]}\n  canary: {zone: z, profiles: [authn]}", 1)}
	}
	publish(t, p, two("one"))
	for _, issuer := range []string{"two", "three"} {
		b := newBundle(t, p, two(issuer))
		if err := p.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := p.Switch(b.Manifest.Version, []string{"canary"}, false); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := p.Channels()
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(ch, map[string]string{"canary": "v3", "default": "v1"}) {
		t.Fatalf("channels %v", ch)
	}
	for dir, want := range map[string]string{dir: "/one", filepath.Join(dir, "roles", "default"): "/one", filepath.Join(dir, "roles", "canary"): "/three"} {
		if path, _ := loaded(t, dir); path != want {
			t.Errorf("%s loads %s, want %s", dir, path, want)
		}
	}
	// Retention 2 with three versions: v2 (served by nothing) goes, v1
	// (the top level, default) and v3 (canary) stay.
	vs, err := p.Versions()
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, v := range vs {
		kept = append(kept, fmt.Sprintf("%s%v active=%v", v.Manifest.Version, v.Roles, v.Active))
	}
	if want := []string{"v1[default] active=true", "v3[canary] active=false"}; !slices.Equal(kept, want) {
		t.Errorf("kept %q, want %q", kept, want)
	}
	if err := p.SwitchAll("v3"); err != nil {
		t.Fatal(err)
	}
	if ch, _ := p.Channels(); !maps.Equal(ch, map[string]string{"canary": "v3", "default": "v3"}) {
		t.Errorf("after SwitchAll: channels %v", ch)
	}
	if err := p.Switch("v9", []string{"canary"}, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("switch to an unknown version: %v", err)
	}
}

// The rollout record survives as written, and a torn write of it is
// cleaned up.
func TestRolloutRecord(t *testing.T) {
	dir := t.TempDir()
	p, err := New(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := p.LoadRollout(); data != nil || err != nil {
		t.Fatalf("no record yet: %q %v", data, err)
	}
	if err := p.SaveRollout([]byte(`{"version":"v1"}`)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".rollout.json.tmp"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(dir, 2); err != nil {
		t.Fatal(err)
	}
	if data, err := p.LoadRollout(); string(data) != `{"version":"v1"}` || err != nil {
		t.Errorf("record %q %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".rollout.json.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("torn record left behind: %v", err)
	}
}

func TestActivateAndRetention(t *testing.T) {
	dir := t.TempDir()
	p, err := New(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		publish(t, p, map[string]string{"a.yaml": cfg(fmt.Sprint("p", i))})
	}
	vs, err := p.Versions()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range vs {
		names = append(names, v.Manifest.Version)
	}
	if !slices.Equal(names, []string{"v3", "v4", "v5"}) || !vs[2].Active {
		t.Fatalf("kept %v", names)
	}
	if err := p.Activate("v3"); err != nil {
		t.Fatal(err)
	}
	if path, v := loaded(t, dir); path != "/p3" || v != "v3" {
		t.Fatalf("after rollback: %s %s", path, v)
	}
	if err := p.Activate("v1"); err == nil {
		t.Fatal("a pruned version activated")
	}
	// The next version still increases after a rollback.
	if v := publish(t, p, map[string]string{"a.yaml": cfg("p6")}); v != "v6" {
		t.Fatalf("next version %s", v)
	}
	vs, _ = p.Versions()
	names = nil
	for _, v := range vs {
		names = append(names, v.Manifest.Version)
	}
	if !slices.Equal(names, []string{"v4", "v5", "v6"}) {
		t.Fatalf("kept %v", names)
	}
}

// TestCrashMidPublish kills a publishing process at every step and checks
// that the directory loads as the previous or the new version, whole, and
// that a restart (New → Recover) leaves a clean kubelet layout.
func TestCrashMidPublish(t *testing.T) {
	for _, point := range []string{FaultAfterWrite, FaultAfterRename, FaultAfterDataTmp, FaultAfterSwap, FaultAfterSymlinks} {
		t.Run(point, func(t *testing.T) {
			dir := t.TempDir()
			p, err := New(dir, 10)
			if err != nil {
				t.Fatal(err)
			}
			publish(t, p, map[string]string{"a.yaml": cfg("old"), "b.yaml": "# b\n"})
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperPublish$")
			cmd.Env = append(os.Environ(), "PUBLISH_HELPER_DIR="+dir, "PUBLISH_HELPER_FAULT="+point)
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
				t.Fatalf("helper did not crash at %s: %v\n%s", point, err, out)
			}
			path, version := loaded(t, dir)
			switch point {
			case FaultAfterWrite, FaultAfterRename, FaultAfterDataTmp:
				if path != "/old" || version != "v1" {
					t.Fatalf("before the switch: loaded %s %s", path, version)
				}
			default:
				if path != "/new" || version != "v2" {
					t.Fatalf("after the switch: loaded %s %s", path, version)
				}
			}
			// Restart: leftovers go, links match the active version.
			if _, err := New(dir, 10); err != nil {
				t.Fatal(err)
			}
			for _, e := range listing(t, dir) {
				if strings.HasPrefix(e, ".staging-") || strings.HasPrefix(e, "..data_tmp") {
					t.Errorf("leftover %s", e)
				}
			}
			got := listing(t, dir)
			hasB := slices.Contains(got, "b.yaml -> ..data/b.yaml")
			if hasB != (version == "v1") {
				t.Errorf("links do not match %s: %q", version, got)
			}
			if p2, v2 := loaded(t, dir); p2 != path || v2 != version {
				t.Errorf("recover changed the version: %s %s", p2, v2)
			}
		})
	}
}

// TestHelperPublish is the crashing publisher of TestCrashMidPublish.
func TestHelperPublish(t *testing.T) {
	dir, point := os.Getenv("PUBLISH_HELPER_DIR"), os.Getenv("PUBLISH_HELPER_FAULT")
	if dir == "" {
		return // only TestCrashMidPublish runs it, as a child process; not a skipped test
	}
	faultHook = func(at string) {
		if at == point {
			os.Exit(3)
		}
	}
	p, err := New(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	b := newBundle(t, p, map[string]string{"a.yaml": cfg("new")})
	if err := p.Publish(b); err != nil {
		t.Fatal(err)
	}
	t.Fatal("publish finished without reaching the fault point")
}

func TestRecoverRemovesIncompleteVersions(t *testing.T) {
	dir := t.TempDir()
	p, err := New(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, p, map[string]string{"a.yaml": cfg("one")})
	before := listing(t, dir)
	for _, d := range []string{".staging-v2-123", "..v9_2026_01_01_00_00_00.000000000"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, d, "a.yaml"), []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("..v9_2026_01_01_00_00_00.000000000", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := p.Recover(); err != nil {
		t.Fatal(err)
	}
	if after := listing(t, dir); !slices.Equal(before, after) {
		t.Fatalf("before %q\nafter %q", before, after)
	}
	if v, _ := p.NextVersion(); v != "v2" {
		t.Fatalf("next %s", v)
	}
}
