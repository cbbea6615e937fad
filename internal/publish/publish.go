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
// Role channels: every service role also has a directory of the same
// layout, roles/<role>/, whose ..data points at ../../..v12_…, so a node
// whose KEYGATE_CONFIG_DIR is roles/<role> loads that role's version. A
// plain publish moves every channel and the top level together; a staged
// rollout (the admin's) moves some roles first (Switch) and the rest, with
// the top level, once they have proved the version (SwitchAll).
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
	"io/fs"
	"maps"
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
	// RolesDir holds one channel directory per service role.
	RolesDir = "roles"
	// rolloutFile holds the admin's rollout record (hidden: config.ReadDir
	// skips it).
	rolloutFile = ".rollout.json"
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
	Active   bool     // the top-level ..data points at it
	Roles    []string // the role channels that point at it, sorted
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
	channels, err := p.channelTargets()
	if err != nil {
		return nil, err
	}
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
		v := Version{Dir: e.Name(), Number: n, Manifest: *m, Active: e.Name() == active, Roles: []string{}}
		for _, role := range sortedKeys(channels) {
			if channels[role] == e.Name() {
				v.Roles = append(v.Roles, role)
			}
		}
		out = append(out, v)
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

// Active returns the version the top level serves, or false if none is
// published.
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

// Channels maps each role channel to the version it serves ("v12").
func (p *Publisher) Channels() (map[string]string, error) {
	targets, err := p.channelTargets()
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(targets))
	for role, dir := range targets {
		if n, ok := versionNumber(dir); ok {
			out[role] = "v" + strconv.Itoa(n)
		}
	}
	return out, nil
}

// channelTargets maps each role channel to the version directory its
// ..data points at.
func (p *Publisher) channelTargets() (map[string]string, error) {
	entries, err := os.ReadDir(filepath.Join(p.dir, RolesDir))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range entries {
		if !e.IsDir() || !validRole(e.Name()) {
			continue
		}
		if dest, err := os.Readlink(filepath.Join(p.dir, RolesDir, e.Name(), dataLink)); err == nil {
			out[e.Name()] = filepath.Base(dest)
		}
	}
	return out, nil
}

// validRole keeps a role name usable as one directory name.
func validRole(role string) bool {
	return role != "" && len(role) <= 128 && !strings.HasPrefix(role, ".") && !strings.ContainsAny(role, "/\\\x00")
}

// Publish writes b (signed, its Manifest.Version set) as a new version and
// makes it active everywhere: every role channel and the top level.
func (p *Publisher) Publish(b *bundle.Bundle) error {
	if err := p.Write(b); err != nil {
		return err
	}
	return p.SwitchAll(b.Manifest.Version)
}

// Write writes b (signed, its Manifest.Version set) as a new version
// directory without making it active anywhere.
func (p *Publisher) Write(b *bundle.Bundle) error {
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
	for _, f := range b.Files {
		if err := writeFile(filepath.Join(staging, f.Name), f.Data); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
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
	return nil
}

// Activate makes a kept version active everywhere again (rollback or roll
// forward).
func (p *Publisher) Activate(version string) error { return p.SwitchAll(version) }

// SwitchAll points the top level, every existing role channel and a
// channel for each role of the version's bundle at the kept version.
func (p *Publisher) SwitchAll(version string) error {
	v, err := p.find(version)
	if err != nil {
		return err
	}
	channels, err := p.channelTargets()
	if err != nil {
		return err
	}
	roles := sortedKeys(v.Manifest.Variables)
	for role := range channels {
		if !slices.Contains(roles, role) {
			roles = append(roles, role)
		}
	}
	if err := p.link(p.dir, v.Dir); err != nil {
		return err
	}
	faultHook(FaultAfterSymlinks)
	if err := p.switchRoles(v, roles); err != nil {
		return err
	}
	return p.prune()
}

// Switch points the channels of roles (and, if top, the top level) at the
// kept version, leaving every other channel where it is.
func (p *Publisher) Switch(version string, roles []string, top bool) error {
	v, err := p.find(version)
	if err != nil {
		return err
	}
	if top {
		if err := p.link(p.dir, v.Dir); err != nil {
			return err
		}
	}
	if err := p.switchRoles(v, roles); err != nil {
		return err
	}
	return p.prune()
}

func (p *Publisher) find(version string) (Version, error) {
	vs, err := p.Versions()
	if err != nil {
		return Version{}, err
	}
	i := slices.IndexFunc(vs, func(v Version) bool { return v.Manifest.Version == version })
	if i < 0 {
		return Version{}, fmt.Errorf("%w: %s", ErrNotFound, version)
	}
	return vs[i], nil
}

func (p *Publisher) switchRoles(v Version, roles []string) error {
	for _, role := range roles {
		if !validRole(role) {
			return fmt.Errorf("publish: service role %q cannot name a channel directory", role)
		}
		dir := filepath.Join(p.dir, RolesDir, role)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		if err := p.link(dir, filepath.Join("..", "..", v.Dir)); err != nil {
			return err
		}
	}
	return nil
}

// link points dir/..data at target (kubelet's ..data_tmp + rename), then
// makes dir's top-level links match. It does nothing if ..data already
// points there.
func (p *Publisher) link(dir, target string) error {
	if cur, err := os.Readlink(filepath.Join(dir, dataLink)); err == nil && cur == target {
		return p.syncLinks(dir)
	}
	tmp := filepath.Join(dir, dataTmpLink)
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	faultHook(FaultAfterDataTmp)
	if err := os.Rename(tmp, filepath.Join(dir, dataLink)); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	faultHook(FaultAfterSwap)
	return p.syncLinks(dir)
}

// syncLinks makes dir's top-level links exactly name -> ..data/name for
// each file of the version its ..data points at.
func (p *Publisher) syncLinks(dir string) error {
	if _, err := os.Readlink(filepath.Join(dir, dataLink)); err != nil {
		return nil // nothing published yet
	}
	entries, err := os.ReadDir(filepath.Join(dir, dataLink))
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	want := map[string]bool{}
	for _, e := range entries {
		want[e.Name()] = true
		link := filepath.Join(dir, e.Name())
		if dest, err := os.Readlink(link); err == nil && dest == filepath.Join(dataLink, e.Name()) {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(filepath.Join(dataLink, e.Name()), link); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	top, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	for _, e := range top {
		if strings.HasPrefix(e.Name(), ".") || want[e.Name()] || e.Type()&os.ModeSymlink == 0 {
			continue
		}
		if dest, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(dest, dataLink+string(filepath.Separator)) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("publish: %w", err)
			}
		}
	}
	return syncDir(dir)
}

// prune deletes the oldest versions beyond the retention, never one that
// the top level or a role channel serves.
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
		if v.Active || len(v.Roles) > 0 {
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
// top-level links of the publish directory and of every role channel in
// line with the version each serves.
func (p *Publisher) Recover() error {
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return err
	}
	active, _ := os.Readlink(filepath.Join(p.dir, dataLink))
	channels, err := p.channelTargets()
	if err != nil {
		return fmt.Errorf("publish: recover: %w", err)
	}
	served := map[string]bool{active: true}
	for _, dir := range channels {
		served[dir] = true
	}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(p.dir, name)
		switch {
		case strings.HasPrefix(name, stagingPfx), name == dataTmpLink, name == rolloutFile+".tmp":
			err = os.RemoveAll(path)
		case strings.HasPrefix(name, "..v") && !served[name] && e.IsDir():
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
	for _, role := range sortedKeys(channels) {
		dir := filepath.Join(p.dir, RolesDir, role)
		if err := os.RemoveAll(filepath.Join(dir, dataTmpLink)); err != nil {
			return fmt.Errorf("publish: recover: %w", err)
		}
		if err := p.syncLinks(dir); err != nil {
			return err
		}
	}
	return p.syncLinks(p.dir)
}

// SaveRollout stores the admin's rollout record (replaced atomically).
func (p *Publisher) SaveRollout(data []byte) error {
	tmp := filepath.Join(p.dir, rolloutFile+".tmp")
	_ = os.Remove(tmp)
	if err := writeFile(tmp, data); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(p.dir, rolloutFile)); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return syncDir(p.dir)
}

// LoadRollout returns the stored rollout record, or nil if there is none.
func (p *Publisher) LoadRollout() ([]byte, error) {
	data, err := readfile.Read(filepath.Join(p.dir, rolloutFile), readfile.MaxSecretFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// sortedKeys is m's keys in order, for output and errors that must not
// depend on map iteration.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

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
