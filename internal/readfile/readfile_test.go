package readfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadRegularFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, link} {
		data, err := Read(p, 7)
		if err != nil || string(data) != "s3cret\n" {
			t.Fatalf("Read(%s) = %q, %v", p, data, err)
		}
	}
}

func TestReadRefuses(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, []byte(strings.Repeat("TOPSECRET", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
		want       error
	}{
		{"over the limit", big, ErrTooLarge},
		{"device", "/dev/zero", ErrNotRegular},
		{"fifo without a writer", fifo, ErrNotRegular},
		{"directory", dir, ErrNotRegular},
		{"missing", filepath.Join(dir, "nope"), os.ErrNotExist},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := Read(tc.path, 512)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Read(%s) = %v, want %v", tc.path, err, tc.want)
			}
			if time.Since(start) > 2*time.Second {
				t.Errorf("refusing took %s", time.Since(start))
			}
			var pe *os.PathError
			if !errors.As(err, &pe) || pe.Path != tc.path {
				t.Errorf("error %v does not name the path", err)
			}
			if strings.Contains(err.Error(), "TOPSECRET") {
				t.Errorf("error quotes the content: %v", err)
			}
		})
	}
}

// A FIFO with a writer attached is still refused for its kind, without
// waiting for data.
func TestReadFIFOWithWriter(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := ReadWithin(fifo, 512, 10*time.Second); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("err = %v, want ErrNotRegular", err)
	}
}

// A read that never returns (a hung network mount) fails after the timeout.
func TestReadTimesOut(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	start := time.Now()
	_, err := within("/mnt/hung/secret", 100*time.Millisecond, func() ([]byte, error) {
		<-block
		return nil, nil
	})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "/mnt/hung/secret") {
		t.Fatalf("err = %v, want ErrTimeout naming the path", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{16 << 20: "16 MiB", 512 << 10: "512 KiB", 100: "100 bytes"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}
