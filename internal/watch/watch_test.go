package watch

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// deadline bounds every wait for a notification that must come.
	deadline = 5 * time.Second
	// quiet is how long a test waits to assert that no notification comes:
	// longer than any Debounce used with it, so a hint would show within it.
	quiet = 300 * time.Millisecond
)

// newWatcher starts a watcher on dir that logs to the test and is closed
// when the test ends.
func newWatcher(t *testing.T, dir string, opts Options) *Watcher {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w, err := New(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return w
}

// configDir is a fresh config directory inside the test's temp dir, so tests
// can remove and recreate it.
func configDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "config.d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitChange returns the next notification or fails after deadline.
func waitChange(t *testing.T, w *Watcher) Reason {
	t.Helper()
	select {
	case r, ok := <-w.Changes():
		if !ok {
			t.Fatal("Changes closed")
		}
		return r
	case <-time.After(deadline):
		t.Fatalf("no notification within %v", deadline)
	}
	return ""
}

// waitReason skips notifications until one with reason want arrives.
func waitReason(t *testing.T, w *Watcher, want Reason) {
	t.Helper()
	timeout := time.After(deadline)
	for {
		select {
		case r, ok := <-w.Changes():
			if !ok {
				t.Fatal("Changes closed")
			}
			if r == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %q notification within %v", want, deadline)
		}
	}
}

// expectQuiet asserts that no notification arrives within window.
func expectQuiet(t *testing.T, w *Watcher, window time.Duration) {
	t.Helper()
	select {
	case r := <-w.Changes():
		t.Fatalf("unexpected notification (%s)", r)
	case <-time.After(window):
	}
}

// drain discards a pending notification, if any.
func drain(w *Watcher) {
	select {
	case <-w.Changes():
	default:
	}
}

// pending returns the notification already waiting in Changes, or "".
func pending(w *Watcher) Reason {
	select {
	case r := <-w.Changes():
		return r
	default:
		return ""
	}
}

// waitWatched waits until the loop watches the directory dir now names and
// has no burst pending, then discards any notification: after it, only new
// filesystem activity can notify (with Poll disabled).
func waitWatched(t *testing.T, w *Watcher, dir string) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		cur, err := os.Stat(dir)
		var ok bool
		if err == nil {
			if derr := w.do(func(l *loop) {
				fi, watched := l.watched[dir]
				ok = watched && os.SameFile(fi, cur) && !l.burst.pending()
			}); derr != nil {
				t.Fatal(derr)
			}
		}
		if ok {
			drain(w)
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s not watched again within %v", dir, deadline)
		}
		time.Sleep(10 * time.Millisecond) // polling the loop's state, bounded by end
	}
}

// watchList is the set of paths fsnotify currently watches.
func watchList(t *testing.T, w *Watcher) []string {
	t.Helper()
	var list []string
	if err := w.do(func(l *loop) { list = l.fsw.WatchList() }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(list)
	return list
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := New(filepath.Join(dir, "missing"), Options{}); err == nil {
		t.Error("New on a missing directory: want an error")
	}
	file := filepath.Join(dir, "file.yaml")
	writeFile(t, file, "a: 1\n")
	if _, err := New(file, Options{}); err == nil {
		t.Error("New on a file: want an error")
	}
}

// 1. A new yaml file is a change.
func TestNewYAMLFile(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"clients.yaml", "keys.yml", "UPPER.YAML"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := configDir(t)
			w := newWatcher(t, dir, Options{})
			writeFile(t, filepath.Join(dir, name), "clients: {}\n")
			if r := waitChange(t, w); r != ReasonFsnotify {
				t.Errorf("reason = %q, want %q", r, ReasonFsnotify)
			}
		})
	}
}

// 2. An editor's save (write a temp file, rename it over the original) is one
// notification, however many events it makes.
func TestEditorSave(t *testing.T) {
	t.Parallel()
	// A Debounce well above scheduling stalls on a loaded CI machine, so the
	// burst cannot be split by the test goroutine being descheduled.
	opts := Options{Debounce: 250 * time.Millisecond}
	t.Run("rename over", func(t *testing.T) {
		t.Parallel()
		dir := configDir(t)
		target := filepath.Join(dir, "foo.yaml")
		writeFile(t, target, "a: 1\n")
		w := newWatcher(t, dir, opts)

		tmp := target + ".tmp"
		writeFile(t, tmp, "a: 2\n")
		if err := os.Rename(tmp, target); err != nil {
			t.Fatal(err)
		}
		waitChange(t, w)
		expectQuiet(t, w, quiet)
	})
	t.Run("vim backupcopy=no", func(t *testing.T) {
		t.Parallel()
		dir := configDir(t)
		target := filepath.Join(dir, "foo.yaml")
		writeFile(t, target, "a: 1\n")
		w := newWatcher(t, dir, opts)

		// vim probes the directory with "4913", moves the original to a
		// backup, writes a new file and deletes the backup.
		probe := filepath.Join(dir, "4913")
		writeFile(t, probe, "")
		if err := os.Remove(probe); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(target, target+"~"); err != nil {
			t.Fatal(err)
		}
		writeFile(t, target, "a: 2\n")
		if err := os.Remove(target + "~"); err != nil {
			t.Fatal(err)
		}
		waitChange(t, w)
		expectQuiet(t, w, quiet)
	})
}

// 3. Deleting a file and creating it again are each a change.
func TestDeleteRecreate(t *testing.T) {
	t.Parallel()
	dir := configDir(t)
	path := filepath.Join(dir, "foo.yaml")
	writeFile(t, path, "a: 1\n")
	w := newWatcher(t, dir, Options{})

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitChange(t, w)
	writeFile(t, path, "a: 2\n")
	waitChange(t, w)
}

// 4. A ConfigMap volume update by kubelet's atomic writer: a content-only
// update touches only hidden ..data/..<ts> entries, never foo.yaml itself.
func TestKubernetesAtomicWriter(t *testing.T) {
	t.Parallel()
	dir := configDir(t)
	kubeAtomicWrite(t, dir, map[string]string{"a.yaml": "a: 1\n", "b.yaml": "b: 1\n"})
	w := newWatcher(t, dir, Options{Debounce: 250 * time.Millisecond}) // see TestEditorSave

	// Content only: the top-level symlinks stay as they are.
	kubeAtomicWrite(t, dir, map[string]string{"a.yaml": "a: 2\n", "b.yaml": "b: 1\n"})
	if r := waitChange(t, w); r != ReasonFsnotify {
		t.Errorf("reason = %q, want %q", r, ReasonFsnotify)
	}
	expectQuiet(t, w, quiet) // one swap, one notification
	if got, err := os.ReadFile(filepath.Join(dir, "a.yaml")); err != nil || string(got) != "a: 2\n" {
		t.Fatalf("a.yaml through ..data = %q, %v", got, err)
	}

	// A file added and one removed.
	kubeAtomicWrite(t, dir, map[string]string{"a.yaml": "a: 2\n", "c.yaml": "c: 1\n"})
	waitChange(t, w)
	if _, err := os.Lstat(filepath.Join(dir, "b.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("b.yaml still there: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "c.yaml")); err != nil || string(got) != "c: 1\n" {
		t.Errorf("c.yaml = %q, %v", got, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ts []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") && e.Name() != "..data" {
			ts = append(ts, e.Name())
		}
	}
	if len(ts) != 1 {
		t.Errorf("timestamp dirs = %v, want exactly one", ts)
	}
}

// 5. A burst of writes is coalesced.
func TestBurstCoalesced(t *testing.T) {
	t.Parallel()
	dir := configDir(t)
	w := newWatcher(t, dir, Options{Debounce: 200 * time.Millisecond})
	for i := range 50 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%d.yaml", i%5)), fmt.Sprintf("n: %d\n", i))
	}
	waitChange(t, w)
	n := 1
	window := time.After(time.Second) // > 4×Debounce: all of the burst
	for done := false; !done; {
		select {
		case <-w.Changes():
			n++
		case <-window:
			done = true
		}
	}
	if n > 2 {
		t.Errorf("%d notifications for one burst, want 1 or 2", n)
	}
}

// A constant trickle of writes, never quiet for Debounce, is still reported
// (after at most 4×Debounce). TestDebouncer checks the arithmetic exactly; a
// descheduled writer can leave a quiet gap, so this end-to-end check uses a
// Debounce far above the trickle's period.
func TestTrickleMaxWait(t *testing.T) {
	t.Parallel()
	dir := configDir(t)
	w := newWatcher(t, dir, Options{Debounce: 250 * time.Millisecond})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
				// Not t.Fatal: this is not the test goroutine.
				_ = os.WriteFile(filepath.Join(dir, "trickle.yaml"), fmt.Appendf(nil, "n: %d\n", i), 0o644)
			}
		}
	})
	defer wg.Wait()
	defer close(stop)
	waitChange(t, w) // would only come after stop without the max wait
}

func TestNoise(t *testing.T) {
	t.Parallel()
	dir := configDir(t)
	writeFile(t, filepath.Join(dir, "foo.yaml"), "a: 1\n")
	w := newWatcher(t, dir, Options{})

	for _, name := range []string{"foo.yaml.swp", ".foo.yaml.swp", "4913", "foo.yaml~", ".#foo.yaml", "notes.txt", "foo.yaml.tmp"} {
		writeFile(t, filepath.Join(dir, name), "x")
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "sub", "nested.yaml"), "x: 1\n") // not read by the loader
	expectQuiet(t, w, quiet)

	writeFile(t, filepath.Join(dir, "foo.yaml"), "a: 2\n") // the watcher still works
	waitChange(t, w)
}

// 6. Extra files outside the config directory.
func TestExtraFiles(t *testing.T) {
	t.Parallel()
	dir := configDir(t)
	envDir := t.TempDir()
	envFile := filepath.Join(envDir, "staging.env")
	writeFile(t, envFile, "A=1\n")
	secretDir := t.TempDir()
	kubeAtomicWrite(t, secretDir, map[string]string{"db-url": "postgres://a"})
	dbURL := filepath.Join(secretDir, "db-url")

	w := newWatcher(t, dir, Options{})
	if err := w.SetExtra([]string{envFile, dbURL}); err != nil {
		t.Fatal(err)
	}
	// New files may have changed before they were watched.
	if r := pending(w); r != ReasonPoll {
		t.Fatalf("after SetExtra with new files: pending = %q, want %q", r, ReasonPoll)
	}
	if got, want := watchList(t, w), []string{dir, envDir, secretDir}; !slices.Equal(got, sorted(want)) {
		t.Fatalf("watching %v, want %v", got, sorted(want))
	}

	t.Log("env file modified")
	writeFile(t, envFile, "A=2\n")
	waitReason(t, w, ReasonFsnotify)

	t.Log("env file replaced by rename")
	writeFile(t, envFile+".new", "A=3\n")
	if err := os.Rename(envFile+".new", envFile); err != nil {
		t.Fatal(err)
	}
	waitReason(t, w, ReasonFsnotify)

	t.Log("other files in the extra directory are noise")
	writeFile(t, filepath.Join(envDir, "production.env"), "A=9\n")
	writeFile(t, filepath.Join(envDir, "unrelated.yaml"), "a: 1\n")
	expectQuiet(t, w, quiet)

	t.Log("secret volume swapped by kubelet")
	kubeAtomicWrite(t, secretDir, map[string]string{"db-url": "postgres://b"})
	waitReason(t, w, ReasonFsnotify)

	t.Log("the same set again: nothing new, no notification")
	if err := w.SetExtra([]string{dbURL, envFile}); err != nil {
		t.Fatal(err)
	}
	if r := pending(w); r != "" {
		t.Fatalf("SetExtra with the same set notified (%s)", r)
	}

	t.Log("removed from the set: no longer followed, watches dropped")
	if err := w.SetExtra(nil); err != nil {
		t.Fatal(err)
	}
	if got := watchList(t, w); !slices.Equal(got, []string{dir}) {
		t.Fatalf("watching %v after SetExtra(nil), want only %v", got, dir)
	}
	writeFile(t, envFile, "A=4\n")
	kubeAtomicWrite(t, secretDir, map[string]string{"db-url": "postgres://c"})
	expectQuiet(t, w, quiet)
}

// An extra file in the config directory itself must not drop the config
// directory's watch when it leaves the set.
func TestExtraInConfigDir(t *testing.T) {
	t.Parallel()
	dir := configDir(t)
	secret := filepath.Join(dir, "signing.pem")
	writeFile(t, secret, "pem")
	w := newWatcher(t, dir, Options{})

	if err := w.SetExtra([]string{secret}); err != nil {
		t.Fatal(err)
	}
	drain(w)
	writeFile(t, secret, "pem2")
	waitReason(t, w, ReasonFsnotify)

	if err := w.SetExtra(nil); err != nil {
		t.Fatal(err)
	}
	writeFile(t, secret, "pem3")
	expectQuiet(t, w, quiet)
	writeFile(t, filepath.Join(dir, "a.yaml"), "a: 1\n")
	waitReason(t, w, ReasonFsnotify)
}

// An extra file whose directory does not exist yet is followed once it appears.
func TestExtraMissingDir(t *testing.T) {
	t.Parallel()
	dir := configDir(t)
	missing := filepath.Join(t.TempDir(), "secrets")
	file := filepath.Join(missing, "db-url")
	w := newWatcher(t, dir, Options{}) // Poll disabled: the retry timer does it

	if err := w.SetExtra([]string{file}); err == nil {
		t.Fatal("SetExtra with a missing directory: want an error naming it")
	}
	drain(w)
	if err := os.Mkdir(missing, 0o755); err != nil {
		t.Fatal(err)
	}
	waitReason(t, w, ReasonPoll) // the directory is watched now
	writeFile(t, file, "postgres://a")
	waitReason(t, w, ReasonFsnotify)
}

func TestSetExtraRelative(t *testing.T) {
	// Not parallel: t.Chdir changes the process's working directory.
	dir := configDir(t)
	envDir := t.TempDir()
	t.Chdir(envDir)
	w := newWatcher(t, dir, Options{})
	if err := w.SetExtra([]string{"local.env"}); err != nil {
		t.Fatal(err)
	}
	drain(w)
	writeFile(t, filepath.Join(envDir, "local.env"), "A=1\n")
	waitReason(t, w, ReasonFsnotify)

	if err := w.SetExtra([]string{""}); err == nil {
		t.Error(`SetExtra([""]): want an error`)
	}
}

// 7. The safety-net poll notifies even when nothing sends an event.
func TestPoll(t *testing.T) {
	t.Parallel()
	dir := configDir(t)
	w := newWatcher(t, dir, Options{Poll: 50 * time.Millisecond})
	waitReason(t, w, ReasonPoll)
	waitReason(t, w, ReasonPoll) // and keeps ticking
}

func TestPollDisabled(t *testing.T) {
	t.Parallel()
	w := newWatcher(t, configDir(t), Options{})
	expectQuiet(t, w, quiet)
}

func TestJitter(t *testing.T) {
	t.Parallel()
	const d = 10 * time.Second
	if got := jitter(d, 0); got != 8*time.Second {
		t.Errorf("jitter(10s, 0) = %v, want 8s", got)
	}
	if got := jitter(d, 0.5); got != d {
		t.Errorf("jitter(10s, 0.5) = %v, want 10s", got)
	}
	if got := jitter(d, 0.9999999); got >= 12*time.Second || got < 11*time.Second {
		t.Errorf("jitter(10s, ~1) = %v, want just under 12s", got)
	}
	if got := jitter(1, 0); got <= 0 {
		t.Errorf("jitter(1ns, 0) = %v, want > 0", got)
	}
}

func TestDebouncer(t *testing.T) {
	t.Parallel()
	const q = 100 * time.Millisecond
	t0 := time.Now()
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	d := debouncer{quiet: q}

	if d.pending() {
		t.Fatal("pending before any event")
	}
	if got := d.add(t0); !got.Equal(at(q)) {
		t.Errorf("single event: due %v, want +100ms", got.Sub(t0))
	}
	// Every 50ms: due moves with each event until 4×quiet after the first.
	for _, ev := range []time.Duration{50, 100, 150, 200, 250} {
		if got, want := d.add(at(ev*time.Millisecond)), at(ev*time.Millisecond+q); !got.Equal(want) {
			t.Errorf("event at +%dms: due %v, want %v", ev, got.Sub(t0), want.Sub(t0))
		}
	}
	if got := d.add(at(350 * time.Millisecond)); !got.Equal(at(4 * q)) {
		t.Errorf("event at +350ms: due %v, want capped at +400ms", got.Sub(t0))
	}
	d.reset()
	if d.pending() {
		t.Fatal("pending after reset")
	}
	if got := d.add(at(time.Second)); !got.Equal(at(time.Second + q)) {
		t.Errorf("new burst: due %v, want +1.1s", got.Sub(t0))
	}
}

// 8. Close leaves nothing behind: no goroutine, no inotify instance, a closed
// Changes channel; it may be called twice, and concurrently with SetExtra.
func TestClose(t *testing.T) {
	// Not parallel: it counts the process's goroutines and inotify fds.
	baseGoroutines := runtime.NumGoroutine()
	baseFDs := inotifyFDs(t)

	dir := configDir(t)
	extra := filepath.Join(t.TempDir(), "x.env")
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := New(dir, Options{Debounce: 10 * time.Millisecond, Poll: 20 * time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetExtra([]string{extra}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "a.yaml"), "a: 1\n")

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				if err := w.SetExtra([]string{extra}); errors.Is(err, ErrClosed) {
					return
				} else if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	waitChange(t, w) // the loop is busy with events, ticks and SetExtra calls when Close comes
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	// Changes is closed, after at most one pending notification.
	drain(w)
	select {
	case _, ok := <-w.Changes():
		if ok {
			t.Fatal("Changes still open after Close")
		}
	default:
		t.Fatal("Changes still open after Close")
	}

	end := time.Now().Add(deadline)
	for runtime.NumGoroutine() > baseGoroutines {
		if time.Now().After(end) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), baseGoroutines, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	if got := inotifyFDs(t); got != baseFDs {
		t.Errorf("inotify fds: %d, baseline %d", got, baseFDs)
	}
}

// inotifyFDs counts this process's open inotify instances.
func inotifyFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && target == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

// 9. The watched directory itself removed and recreated.
func TestDirRemovedAndRecreated(t *testing.T) {
	t.Parallel()
	dir := configDir(t)
	writeFile(t, filepath.Join(dir, "foo.yaml"), "a: 1\n")
	w := newWatcher(t, dir, Options{}) // Poll disabled: only a re-watch says "poll"

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	waitChange(t, w)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	waitChange(t, w) // re-established (usually "poll" from the retry)
	waitWatched(t, w, dir)
	writeFile(t, filepath.Join(dir, "foo.yaml"), "a: 2\n")
	if r := waitChange(t, w); r != ReasonFsnotify {
		t.Fatalf("reason = %q, want %q", r, ReasonFsnotify)
	}
}

// The directory renamed away and another renamed into its place (a deploy
// script's "mv new config.d").
func TestDirReplacedByRename(t *testing.T) {
	t.Parallel()
	dir := configDir(t)
	staging := dir + ".new"
	if err := os.Mkdir(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	w := newWatcher(t, dir, Options{})

	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(staging, dir); err != nil {
		t.Fatal(err)
	}
	waitChange(t, w)
	waitWatched(t, w, dir)
	writeFile(t, filepath.Join(dir, "new.yaml"), "a: 1\n")
	if r := waitChange(t, w); r != ReasonFsnotify {
		t.Fatalf("reason = %q, want %q", r, ReasonFsnotify)
	}

	writeFile(t, filepath.Join(dir+".old", "stale.yaml"), "a: 1\n") // the old directory is not watched any more
	expectQuiet(t, w, quiet)
}

// A symlinked config directory re-pointed (current → releases/v2) sends no
// event at all; the poll tick notices the path names another directory.
func TestSymlinkedDirRepointed(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, v := range []string{"v1", "v2"} {
		if err := os.Mkdir(filepath.Join(root, v), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	current := filepath.Join(root, "current")
	if err := os.Symlink("v1", current); err != nil {
		t.Fatal(err)
	}
	w := newWatcher(t, current, Options{Poll: 50 * time.Millisecond})

	tmp := filepath.Join(root, "current.tmp")
	if err := os.Symlink("v2", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, current); err != nil {
		t.Fatal(err)
	}
	waitReason(t, w, ReasonPoll)
	waitWatched(t, w, current) // the poll tick noticed
	writeFile(t, filepath.Join(root, "v2", "a.yaml"), "a: 1\n")
	waitReason(t, w, ReasonFsnotify) // skipping poll ticks
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
