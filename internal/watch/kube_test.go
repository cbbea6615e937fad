package watch

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// kubeAtomicWrite updates dir the way kubelet's AtomicWriter
// (pkg/volume/util/atomic_writer.go) updates a ConfigMap or Secret volume, so
// the watcher is tested against the real sequence of renames and symlinks:
//
//  1. write the payload into a new hidden ..<timestamp> directory;
//  2. symlink ..data_tmp → ..<timestamp> and rename it over ..data;
//  3. create top-level symlinks name → ..data/name for new files;
//  4. remove top-level symlinks of files no longer in the payload;
//  5. remove the old ..<timestamp> directory.
//
// On the first call there is no ..data yet and nothing to remove.
func kubeAtomicWrite(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	dataPath := filepath.Join(dir, "..data")
	oldTs, err := os.Readlink(dataPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var obsolete []string
	if oldTs != "" {
		entries, err := os.ReadDir(filepath.Join(dir, oldTs))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if _, ok := files[e.Name()]; !ok {
				obsolete = append(obsolete, e.Name())
			}
		}
	}

	// 1. kubelet's newTimestampDir: MkdirTemp with a ..<UTC timestamp>. prefix.
	tsDir, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(tsDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// 2. The relative symlink ..data_tmp → ..<ts>, atomically renamed over ..data.
	tmpPath := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(tsDir), tmpPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmpPath, dataPath); err != nil {
		t.Fatal(err)
	}

	// 3. User-visible symlinks for files that do not have one yet.
	for name := range files {
		visible := filepath.Join(dir, name)
		if _, err := os.Lstat(visible); errors.Is(err, fs.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", name), visible); err != nil {
				t.Fatal(err)
			}
		}
	}

	// 4. User-visible paths no longer in the payload.
	for _, name := range obsolete {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}

	// 5. The previous payload.
	if oldTs != "" {
		if err := os.RemoveAll(filepath.Join(dir, oldTs)); err != nil {
			t.Fatal(err)
		}
	}
}
