// Package publish writes signed config bundles to a shared directory with
// the layout kubelet uses for ConfigMap volumes, so a runtime node that
// mounts the publish directory as its config.d behaves exactly like one
// that mounts a ConfigMap:
//
//	publish-dir/
//	  ..v12_2026_11_23_18_00_00.000000000/   one complete version per directory:
//	      00-service.yaml …  bundle.json     its files and signed manifest
//	  ..v11_2026_11_22_09_00_00.000000000/   older versions, kept for rollback
//	  ..data -> ..v12_2026_11_23_18_00_00.000000000
//	  00-service.yaml -> ..data/00-service.yaml
//	  bundle.json -> ..data/bundle.json
//
// Publishing a version:
//
//  1. write the files and bundle.json into a hidden staging directory
//     (.staging-<version>-<random>), fsync each file and the directory;
//  2. rename the staging directory to ..<version>_<UTC timestamp> and fsync
//     the publish directory: a ..v* directory is complete by construction;
//  3. create the symlink ..data_tmp -> that directory and rename it over
//     ..data (the atomic switch), fsync;
//  4. add top-level symlinks name -> ..data/name for new files and remove
//     those of files the version no longer has, fsync;
//  5. delete the oldest versions beyond the retention (never the active one,
//     and never fewer than two, so a reader that resolved ..data just
//     before the switch still finds its files).
//
// Activate (rollback) repeats steps 3–5 for an existing version.
//
// Crash safety: ..data always points to a complete version (it changes by
// one rename, to a directory that was complete before the rename), and
// config.ReadDir reads through ..data, never the top-level links; so a crash
// at any step leaves the previous or the new version, whole. Recover, run at
// start-up, removes what a crash left: staging directories, a ..data_tmp
// link, version directories without a valid manifest, and top-level links
// that do not match the active version.
package publish

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/bundle"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/readfile"
)

const (
	dataLink    = "..data"
	dataTmpLink = "..data_tmp"
	stagingPfx  = ".staging-"
)

// ErrNotFound is returned by Activate for a version that is not kept.
var ErrNotFound = errors.New("version not found")

// faultHook is called at each step of a publish; tests set it to crash the
// process there (see the crash test).
var faultHook = func(point string) {}

// Fault points, in order.
const (
	FaultAfterWrite    = "after-write"    // staging directory written and synced
	FaultAfterRename   = "after-rename"   // version directory in place, ..data unchanged
	FaultAfterDataTmp  = "after-data-tmp" // ..data_tmp created, not yet renamed
	FaultAfterSwap     = "after-swap"     // ..data switched, top-level links not yet updated
	FaultAfterSymlinks = "after-symlinks" // links updated, old versions not yet pruned
)

// Publisher publishes to one directory. It is not safe for concurrent use:
// the admin node serializes publishes and activations.
type Publisher struct {
	dir       string
	retention int
}

// New returns a publisher for dir (created if missing) keeping retention
// versions (at least 2), and recovers from an interrupted publish.
func New(dir string, retention int) (*Publisher, error) {
	if dir == "" {
		return nil, errors.New("no publish directory (KEYGATE_PUBLISH_DIR)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &Publisher{dir: dir, retention: max(retention, 2)}
	return p, p.Recover()
}

// Dir is the publish directory.
func (p *Publisher) Dir() string { return p.dir }

// Version is one kept version.
type Version struct {
	Dir      string // ..v12_2026_…
	Number   int
	Manifest bundle.Manifest
	Active   bool
}

// versionNumber parses "..v12_…" (or "v12") into 12.
func versionNumber(name string) (int, bool) {
	name = strings.TrimPrefix(name, "..")
	rest, ok := strings.CutPrefix(name, "v")
	if !ok {
		return 0, false
	}
	num, _, _ := strings.Cut(rest, "_")
	n, err := strconv.Atoi(num)
	return n, err == nil && n > 0 && strconv.Itoa(n) == num
}

// Versions lists the complete kept versions, oldest first.
func (p *Publisher) Versions() ([]Version, error) {
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return nil, err
	}
	active, _ := os.Readlink(filepath.Join(p.dir, dataLink))
	var out []Version
	for _, e := range entries {
		n, ok := versionNumber(e.Name())
		if !ok || !e.IsDir() || !strings.HasPrefix(e.Name(), "..") {
			continue
		}
		data, err := readfile.Read(filepath.Join(p.dir, e.Name(), config.ManifestName), readfile.MaxSecretFile)
		if err != nil {
			continue
		}
		m, err := bundle.ParseManifest(data)
		if err != nil {
			continue
		}
		out = append(out, Version{Dir: e.Name(), Number: n, Manifest: *m, Active: e.Name() == active})
	}
	slices.SortFunc(out, func(a, b Version) int { return a.Number - b.Number })
	return out, nil
}

// NextVersion is the version the next publish gets: one more than the
// newest kept (the newest is never pruned), "v1" for an empty directory.
func (p *Publisher) NextVersion() (string, error) {
	vs, err := p.Versions()
	if err != nil {
		return "", err
	}
	next := 1
	if len(vs) > 0 {
		next = vs[len(vs)-1].Number + 1
	}
	return "v" + strconv.Itoa(next), nil
}

// Active returns the active version, or false if none is published.
func (p *Publisher) Active() (Version, bool, error) {
	vs, err := p.Versions()
	if err != nil {
		return Version{}, false, err
	}
	for _, v := range vs {
		if v.Active {
			return v, true, nil
		}
	}
	return Version{}, false, nil
}

// Publish writes b (signed, its Manifest.Version set) as a new version and
// makes it active.
func (p *Publisher) Publish(b *bundle.Bundle) error {
	version := b.Manifest.Version
	if _, ok := versionNumber(version); !ok {
		return fmt.Errorf("publish: version %q is not v<number>", version)
	}
	staging, err := os.MkdirTemp(p.dir, stagingPfx+version+"-")
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(staging)
		}
	}()
	if err := os.Chmod(staging, 0o755); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	names := make([]string, 0, len(b.Files)+1)
	for _, f := range b.Files {
		if err := writeFile(filepath.Join(staging, f.Name), f.Data); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		names = append(names, f.Name)
	}
	if err := writeFile(filepath.Join(staging, config.ManifestName), b.Manifest.JSON()); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if err := syncDir(staging); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	faultHook(FaultAfterWrite)
	final := ".." + version + "_" + time.Now().UTC().Format("2006_01_02_15_04_05.000000000")
	if err := os.Rename(staging, filepath.Join(p.dir, final)); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	ok = true
	if err := syncDir(p.dir); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	faultHook(FaultAfterRename)
	return p.switchTo(final)
}

// Activate makes a kept version active again (rollback or roll forward).
func (p *Publisher) Activate(version string) error {
	vs, err := p.Versions()
	if err != nil {
		return err
	}
	i := slices.IndexFunc(vs, func(v Version) bool { return v.Manifest.Version == version })
	if i < 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, version)
	}
	if vs[i].Active {
		return nil
	}
	return p.switchTo(vs[i].Dir)
}

// switchTo points ..data at the version directory target (kubelet's
// ..data_tmp + rename), then updates the top-level links and prunes.
func (p *Publisher) switchTo(target string) error {
	tmp := filepath.Join(p.dir, dataTmpLink)
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	faultHook(FaultAfterDataTmp)
	if err := os.Rename(tmp, filepath.Join(p.dir, dataLink)); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if err := syncDir(p.dir); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	faultHook(FaultAfterSwap)
	if err := p.syncLinks(); err != nil {
		return err
	}
	faultHook(FaultAfterSymlinks)
	return p.prune()
}

// syncLinks makes the top-level links exactly name -> ..data/name for each
// file of the active version.
func (p *Publisher) syncLinks() error {
	target, err := os.Readlink(filepath.Join(p.dir, dataLink))
	if err != nil {
		return nil // nothing published yet
	}
	entries, err := os.ReadDir(filepath.Join(p.dir, target))
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	want := map[string]bool{}
	for _, e := range entries {
		want[e.Name()] = true
		link := filepath.Join(p.dir, e.Name())
		if dest, err := os.Readlink(link); err == nil && dest == filepath.Join(dataLink, e.Name()) {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(filepath.Join(dataLink, e.Name()), link); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	top, err := os.ReadDir(p.dir)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	for _, e := range top {
		if strings.HasPrefix(e.Name(), ".") || want[e.Name()] || e.Type()&os.ModeSymlink == 0 {
			continue
		}
		if dest, err := os.Readlink(filepath.Join(p.dir, e.Name())); err == nil && strings.HasPrefix(dest, dataLink+string(filepath.Separator)) {
			if err := os.Remove(filepath.Join(p.dir, e.Name())); err != nil {
				return fmt.Errorf("publish: %w", err)
			}
		}
	}
	return syncDir(p.dir)
}

// prune deletes the oldest versions beyond the retention, never the active one.
func (p *Publisher) prune() error {
	vs, err := p.Versions()
	if err != nil {
		return err
	}
	excess := len(vs) - p.retention
	for _, v := range vs {
		if excess <= 0 {
			break
		}
		if v.Active {
			continue
		}
		if err := os.RemoveAll(filepath.Join(p.dir, v.Dir)); err != nil {
			return fmt.Errorf("publish: prune %s: %w", v.Manifest.Version, err)
		}
		excess--
	}
	return nil
}

// Recover removes what an interrupted publish left behind and brings the
// top-level links in line with the active version.
func (p *Publisher) Recover() error {
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return err
	}
	active, _ := os.Readlink(filepath.Join(p.dir, dataLink))
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(p.dir, name)
		switch {
		case strings.HasPrefix(name, stagingPfx), name == dataTmpLink:
			err = os.RemoveAll(path)
		case strings.HasPrefix(name, "..v") && name != active && e.IsDir():
			data, rerr := readfile.Read(filepath.Join(path, config.ManifestName), readfile.MaxSecretFile)
			if rerr == nil {
				if _, perr := bundle.ParseManifest(data); perr == nil {
					continue
				}
			}
			err = os.RemoveAll(path) // not a complete version
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("publish: recover: %w", err)
		}
	}
	return p.syncLinks()
}

func writeFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
