package readfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRead: whatever a file holds and whatever the limit, Read returns the
// exact content or ErrTooLarge, and never more than limit bytes.
func FuzzRead(f *testing.F) {
	f.Add([]byte("secret\n"), int64(7))
	f.Add([]byte{}, int64(0))
	f.Add(bytes.Repeat([]byte{0xff}, 4097), int64(4096))
	f.Fuzz(func(t *testing.T, content []byte, limit int64) {
		if limit < 0 || limit > 1<<20 {
			limit = int64(len(content)) / 2
		}
		path := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		data, err := Read(path, limit)
		switch {
		case int64(len(content)) > limit:
			if !errors.Is(err, ErrTooLarge) || data != nil {
				t.Fatalf("%d bytes, limit %d: %d bytes, %v", len(content), limit, len(data), err)
			}
			if bytes.Contains([]byte(err.Error()), content) && len(content) > 8 {
				t.Fatalf("the error quotes the content: %v", err)
			}
		case err != nil || !bytes.Equal(data, content):
			t.Fatalf("%d bytes, limit %d: %d bytes, %v", len(content), limit, len(data), err)
		}
	})
}
