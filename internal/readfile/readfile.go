// Package readfile reads the files a node takes from outside — config
// files, env files, ${file:} targets, key and token files — in one bounded
// way: regular files only, at most a given size, within a time limit.
//
// An unbounded read is how a typo becomes an outage: ${file:/dev/zero}
// fills memory, a FIFO blocks the reader for ever, a 100 MB file that was
// meant for somewhere else kills the process. Errors name the path and the
// rule that refused it, never the file's content.
package readfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// Limits documented in the README ("Limits on what is read").
const (
	// MaxConfigFile caps one file of config.d; a 10,000-client bundle is
	// about 3 MiB.
	MaxConfigFile = 16 << 20
	// MaxSecretFile caps one ${file:} target, env file or key file:
	// secrets and PEM keys are a few kilobytes.
	MaxSecretFile = 1 << 20
	// MaxTotal caps everything one configuration load reads.
	MaxTotal = 64 << 20
	// Timeout bounds one read, so a hung network mount fails a reload
	// instead of stopping the reloader.
	Timeout = 5 * time.Second
)

var (
	// ErrTooLarge: the file is larger than the limit.
	ErrTooLarge = errors.New("file is too large")
	// ErrNotRegular: a FIFO, device, socket or directory.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTimeout: the read did not finish within Timeout.
	ErrTimeout = errors.New("read timed out")
)

// Read returns the content of the regular file at path (symlinks
// followed), refusing one larger than limit bytes or one whose read takes
// longer than Timeout. Errors are *os.PathError naming path.
func Read(path string, limit int64) ([]byte, error) {
	return ReadWithin(path, limit, Timeout)
}

// ReadWithin is Read with its own time limit.
func ReadWithin(path string, limit int64, timeout time.Duration) ([]byte, error) {
	return within(path, timeout, func() ([]byte, error) { return read(path, limit) })
}

// within runs fn and gives up on it after timeout.
func within(path string, timeout time.Duration, fn func() ([]byte, error)) ([]byte, error) {
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		data, err := fn()
		done <- result{data, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-done:
		return r.data, r.err
	case <-t.C:
		// The goroutine ends when the stuck read returns; nothing waits for it.
		return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w after %s", ErrTimeout, timeout)}
	}
}

func read(path string, limit int64) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO with no writer must not block. It has no
	// effect on reads of regular files, the only kind read below.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w (%s)", ErrNotRegular, kind(info.Mode()))}
	}
	if info.Size() > limit {
		return nil, tooLarge(path, limit)
	}
	// The size can grow between Stat and the read; read one byte past the
	// limit to tell.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: path, Err: err}
	}
	if int64(len(data)) > limit {
		return nil, tooLarge(path, limit)
	}
	return data, nil
}

func tooLarge(path string, limit int64) error {
	return &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w (the limit is %s)", ErrTooLarge, Size(limit))}
}

// Size formats a byte count for messages: "16 MiB", "512 KiB", "100 bytes".
func Size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

func kind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeDevice != 0:
		return "a device"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	default:
		return "not a regular file"
	}
}
