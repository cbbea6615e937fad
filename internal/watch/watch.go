// Package watch tells the reloader that the config directory or the extra files
// a snapshot read (env files, ${file:PATH} targets) may have changed.
//
// Notifications are hints only: the reloader recomputes the content hash and
// decides. So the watcher errs on the side of notifying: it watches directories,
// never files (editors save by rename-and-replace and kubelet swaps a ..data
// symlink, both of which silently break a watch on the file itself), coalesces
// bursts, re-establishes watches on directories that were removed or replaced,
// and ticks a jittered safety-net poll for filesystems that send no events
// (bind mounts, NFS, some overlay filesystems).
package watch

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Reason says what prompted a notification; it is for logs and metrics only.
type Reason string

const (
	// ReasonFsnotify: a filesystem event on a followed path, or an fsnotify
	// error such as a queue overflow (events may have been dropped).
	ReasonFsnotify Reason = "fsnotify"
	// ReasonPoll: a check not prompted by an event: the periodic safety-net
	// tick, a lost directory watch re-established, or SetExtra starting to
	// follow new files. Events may have been missed, so the consumer should look.
	ReasonPoll Reason = "poll"
)

// ErrClosed is returned by SetExtra after Close.
var ErrClosed = errors.New("watch: watcher closed")

const (
	defaultDebounce = 100 * time.Millisecond
	// maxWaitFactor bounds a burst's delay (in Debounces) so a constant trickle
	// of writes still gets reported.
	maxWaitFactor = 4
	// maxRetry bounds how long a lost directory watch stays down when Poll is
	// long or disabled.
	maxRetry = time.Second
	// drainLimit bounds how many queued events a firing debounce timer takes
	// first, so a burst is not split yet an event storm cannot starve the loop.
	drainLimit = 64
)

// Options configure a Watcher.
type Options struct {
	// Debounce coalesces a burst of events into one notification (default 100ms).
	// Notify after the burst has been quiet for Debounce, but never later than
	// 4*Debounce after its first event (so a constant trickle still reloads).
	Debounce time.Duration
	// Poll is the period of the safety-net check for events that never come
	// (bind mounts, NFS, some overlay filesystems). Each wait is Poll ± 20% jitter
	// so a fleet of nodes does not hit shared storage in lockstep. 0 disables. Default set by caller (e.g. 10s).
	Poll time.Duration
	// Logger receives lost/re-established watches and fsnotify errors
	// (default slog.Default()).
	Logger *slog.Logger
}

// Watcher reports that the watched files may have changed.
//
// All watch state belongs to one goroutine (the loop); the methods talk to it
// over channels, so there is no lock to hold.
type Watcher struct {
	out      chan Reason
	reqc     chan func(*loop)
	done     chan struct{} // closed by Close: asks the loop to stop
	exited   chan struct{} // closed by the loop when everything has stopped
	once     sync.Once
	closeErr error // written by the loop before exited is closed
}

// New watches dir (and starts the poll ticker). dir must exist.
//
// Create the watcher before the initial load: a change between the load and
// New would otherwise go unseen until the next poll tick.
func New(dir string, opts Options) (*Watcher, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	if opts.Debounce <= 0 {
		opts.Debounce = defaultDebounce
	}
	if opts.Poll < 0 {
		opts.Poll = 0
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	w := &Watcher{
		out:    make(chan Reason, 1),
		reqc:   make(chan func(*loop)),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	l := &loop{
		fsw:     fsw,
		log:     opts.Logger,
		out:     w.out,
		events:  fsw.Events,
		burst:   debouncer{quiet: opts.Debounce},
		poll:    opts.Poll,
		dir:     abs,
		extra:   map[string]map[string]struct{}{},
		watched: map[string]os.FileInfo{},
	}
	if err := l.watch(abs); err != nil {
		fsw.Close()
		return nil, err
	}
	go w.run(l)
	return w, nil
}

// Changes delivers a notification whenever something may have changed: a
// one-slot, latest-wins channel (a send never blocks; pending notifications coalesce).
// Reason is "fsnotify" or "poll" (for logs/metrics). It is closed by Close.
func (w *Watcher) Changes() <-chan Reason { return w.out }

// SetExtra replaces the set of extra files to follow (absolute or relative paths).
// The watcher watches each file's parent DIRECTORY (never the file itself),
// and only events relevant to those files (or to Kubernetes ..data swaps in
// those directories) count. Safe to call from any goroutine.
//
// Relative paths are resolved against the working directory now. An empty
// path is an error and changes nothing. A parent directory that cannot be
// watched (e.g. missing) is still followed: the error names it and it is
// retried like a lost watch. If the set gains a file, a ReasonPoll
// notification is sent, since the file may have changed before it was watched.
func (w *Watcher) SetExtra(paths []string) error {
	next := map[string]map[string]struct{}{}
	for _, p := range paths {
		if p == "" {
			return errors.New("watch: empty extra path")
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("watch %s: %w", p, err)
		}
		dir, base := filepath.Dir(abs), filepath.Base(abs)
		if next[dir] == nil {
			next[dir] = map[string]struct{}{}
		}
		next[dir][base] = struct{}{}
	}
	var err error
	if derr := w.do(func(l *loop) { err = l.setExtra(next) }); derr != nil {
		return derr
	}
	return err
}

// Close stops everything; after Close returns, no goroutine of the watcher is left
// and Changes is closed. Idempotent.
func (w *Watcher) Close() error {
	w.once.Do(func() { close(w.done) })
	<-w.exited
	return w.closeErr
}

// do runs f on the loop goroutine and waits for it, so f may touch loop state.
func (w *Watcher) do(f func(*loop)) error {
	ran := make(chan struct{})
	select {
	case w.reqc <- func(l *loop) { f(l); close(ran) }:
	case <-w.done:
		return ErrClosed
	}
	<-ran // the loop runs a received request before anything else
	return nil
}

// run is the loop goroutine: the only one that touches l.
func (w *Watcher) run(l *loop) {
	defer close(w.exited)

	// fsnotify's reader goroutine can block sending on Errors while it holds the
	// lock that Add and Remove take (inotify backend, IN_MOVE_SELF cleanup). The
	// loop calls Add and Remove, so it must not be the one receiving Errors:
	// this forwarder always drains them, and flags the loop without blocking.
	errFlag := make(chan struct{}, 1)
	fwdDone := make(chan struct{})
	go func() {
		defer close(fwdDone)
		for err := range l.fsw.Errors {
			l.log.Warn("config watch: fsnotify error; events may have been missed", "err", err)
			select {
			case errFlag <- struct{}{}:
			default:
			}
		}
	}()

	l.flush = time.NewTimer(time.Hour)
	l.flush.Stop()
	l.retry = time.NewTimer(time.Hour)
	l.retry.Stop()
	var pollC <-chan time.Time // nil (never ready) when Poll is disabled
	if l.poll > 0 {
		l.pollTimer = time.NewTimer(jitter(l.poll, rand.Float64()))
		pollC = l.pollTimer.C
	}

	for {
		select {
		case <-w.done:
			l.flush.Stop()
			l.retry.Stop()
			if l.pollTimer != nil {
				l.pollTimer.Stop()
			}
			w.closeErr = l.fsw.Close() // waits for fsnotify's reader; closes Errors
			<-fwdDone
			close(l.out)
			return
		case f := <-w.reqc:
			f(l)
		case ev, ok := <-l.events:
			l.onEvent(ev, ok)
		case <-errFlag:
			l.hint() // a dropped event must not be lost: treat as a change
		case <-l.flush.C:
			l.onFlush()
		case <-pollC:
			l.reconcile(true)
			l.send(ReasonPoll)
			l.pollTimer.Reset(jitter(l.poll, rand.Float64()))
		case <-l.retry.C:
			l.retryArmed = false
			if l.reconcile(false) {
				l.send(ReasonPoll)
			}
		}
	}
}

// loop is the watch state. Only the loop goroutine touches it.
type loop struct {
	fsw    *fsnotify.Watcher
	log    *slog.Logger
	out    chan Reason
	events <-chan fsnotify.Event // nil once fsnotify has closed it

	burst debouncer
	flush *time.Timer // fires at burst.due

	poll       time.Duration
	pollTimer  *time.Timer
	retry      *time.Timer // armed while a followed directory is not watched
	retryArmed bool

	dir     string                         // the config directory, absolute
	extra   map[string]map[string]struct{} // parent dir → base names of extra files
	watched map[string]os.FileInfo         // dirs with a live watch → what was watched
}

// onEvent turns an fsnotify event into a hint if it concerns a followed path.
func (l *loop) onEvent(ev fsnotify.Event, ok bool) {
	if !ok {
		// Only Close closes Events; if it ever happens otherwise, poll still works.
		l.log.Error("config watch: fsnotify stopped; relying on poll")
		l.events = nil
		return
	}
	name := filepath.Clean(ev.Name)
	if l.followed(name) {
		// An event on a followed directory itself: removed, renamed away, or
		// (seen from a watched parent) created again.
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			if _, ok := l.watched[name]; ok {
				l.log.Warn("config watch: directory removed or renamed; will re-watch", "dir", name)
				l.unwatch(name)
			}
		}
		if _, ok := l.watched[name]; !ok {
			l.rewatch(name)
		}
		l.hint()
		return
	}
	if l.relevant(name) {
		l.hint()
	}
}

// relevant reports whether an event on name (inside a watched directory) may
// change what the loader reads. Generous by design: the consumer compares hashes.
func (l *loop) relevant(name string) bool {
	dir, base := filepath.Dir(name), filepath.Base(name)
	if strings.HasPrefix(base, "..") {
		// kubelet's atomic writer: ..data, ..data_tmp, ..<timestamp>.
		_, extra := l.extra[dir]
		return dir == l.dir || extra
	}
	if _, ok := l.extra[dir][base]; ok {
		return true
	}
	return dir == l.dir && isConfigFile(base)
}

// isConfigFile matches the entries config.Load reads: *.yaml and *.yml, not
// hidden (so editor temp files such as .foo.yaml.swp, 4913, foo.yaml~ do not count).
func isConfigFile(base string) bool {
	if strings.HasPrefix(base, ".") {
		return false
	}
	ext := strings.ToLower(filepath.Ext(base))
	return ext == ".yaml" || ext == ".yml"
}

// followed reports whether dir is the config directory or a parent of an extra file.
func (l *loop) followed(dir string) bool {
	_, ok := l.extra[dir]
	return ok || dir == l.dir
}

// hint records an event of the current burst and (re)arms the flush timer.
func (l *loop) hint() {
	now := time.Now()
	l.flush.Reset(l.burst.add(now).Sub(now))
}

// onFlush reports the burst, unless events already queued extend it: when this
// goroutine was descheduled past the deadline, those belong to the same burst.
func (l *loop) onFlush() {
drain:
	for range drainLimit {
		select {
		case ev, ok := <-l.events:
			l.onEvent(ev, ok)
		default:
			break drain
		}
	}
	if !l.burst.pending() {
		return
	}
	if now := time.Now(); now.Before(l.burst.due) {
		l.flush.Reset(l.burst.due.Sub(now))
		return
	}
	l.flush.Stop()
	l.burst.reset()
	l.send(ReasonFsnotify)
}

// send delivers r, replacing any notification not yet received (latest wins).
func (l *loop) send(r Reason) {
	for {
		select {
		case l.out <- r:
			return
		default:
		}
		select {
		case <-l.out:
		default:
		}
	}
}

// watch starts watching dir and records which directory that is, so a poll
// tick can tell when the path now names another one.
func (l *loop) watch(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("watch %s: not a directory", dir)
	}
	if err := l.fsw.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	l.watched[dir] = fi
	return nil
}

// unwatch drops dir's watch. The kernel may already have dropped it (the
// directory was deleted), so errors are expected and only logged at debug.
func (l *loop) unwatch(dir string) {
	delete(l.watched, dir)
	if err := l.fsw.Remove(dir); err != nil && !errors.Is(err, fsnotify.ErrNonExistentWatch) {
		l.log.Debug("config watch: remove watch", "dir", dir, "err", err)
	}
}

// rewatch tries to watch a followed directory that has no watch, and arms the
// retry timer if it cannot yet. It reports whether the watch is back.
func (l *loop) rewatch(dir string) bool {
	if err := l.watch(dir); err != nil {
		l.log.Debug("config watch: cannot watch yet", "dir", dir, "err", err)
		l.armRetry()
		return false
	}
	l.log.Info("config watch: watching directory again", "dir", dir)
	return true
}

// reconcile brings the watches in line with the followed directories. With
// verify, it also re-watches a path that now names a different directory
// (removed and recreated, or a symlink re-pointed) without any event having
// said so. It reports whether any watch was (re-)established.
func (l *loop) reconcile(verify bool) bool {
	changed := false
	for dir := range l.followedDirs() {
		if fi, ok := l.watched[dir]; ok {
			if !verify {
				continue
			}
			if cur, err := os.Stat(dir); err == nil && os.SameFile(fi, cur) {
				continue
			}
			l.log.Warn("config watch: directory replaced or removed; re-watching", "dir", dir)
			l.unwatch(dir)
		}
		if l.rewatch(dir) {
			changed = true
		}
	}
	return changed
}

// followedDirs is the config directory plus every extra file's parent.
func (l *loop) followedDirs() map[string]struct{} {
	dirs := map[string]struct{}{l.dir: {}}
	for d := range l.extra {
		dirs[d] = struct{}{}
	}
	return dirs
}

// armRetry schedules a retry of unwatched directories: on the poll period if
// that is shorter, else maxRetry, so recovery does not wait a long poll.
func (l *loop) armRetry() {
	if l.retryArmed {
		return
	}
	d := maxRetry
	if l.poll > 0 && l.poll < d {
		d = l.poll
	}
	l.retry.Reset(d)
	l.retryArmed = true
}

// setExtra replaces the extra files, adjusting directory watches.
func (l *loop) setExtra(next map[string]map[string]struct{}) error {
	grew := false
	for dir, names := range next {
		for name := range names {
			if _, ok := l.extra[dir][name]; !ok {
				grew = true
			}
		}
	}
	l.extra = next
	for dir := range l.watched {
		if !l.followed(dir) {
			l.unwatch(dir)
		}
	}
	var errs []error
	for dir := range l.followedDirs() {
		if _, ok := l.watched[dir]; ok {
			continue
		}
		if err := l.watch(dir); err != nil {
			errs = append(errs, err)
			l.armRetry()
		}
	}
	if grew {
		l.send(ReasonPoll)
	}
	return errors.Join(errs...)
}

// debouncer coalesces a burst: due is quiet after the latest event, but no
// later than maxWaitFactor*quiet after the first.
type debouncer struct {
	quiet time.Duration
	first time.Time // zero when no burst is pending
	due   time.Time
}

// add records an event at now and returns when the burst should be reported.
func (d *debouncer) add(now time.Time) time.Time {
	if d.first.IsZero() {
		d.first = now
	}
	d.due = now.Add(d.quiet)
	if limit := d.first.Add(maxWaitFactor * d.quiet); limit.Before(d.due) {
		d.due = limit
	}
	return d.due
}

func (d *debouncer) pending() bool { return !d.first.IsZero() }
func (d *debouncer) reset()        { *d = debouncer{quiet: d.quiet} }

// jitter spreads d by ±20% (u in [0,1)), so a fleet does not poll in lockstep.
func jitter(d time.Duration, u float64) time.Duration {
	return max(time.Duration(float64(d)*(0.8+0.4*u)), 1)
}
