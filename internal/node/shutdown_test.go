package node

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testkit"
)

// A SIGTERM right after start: Shutdown racing Serve (before it, or just
// after it began) must close both listeners and let Serve return.
func TestShutdownRacingServe(t *testing.T) {
	for _, shutdownFirst := range []bool{true, false} {
		dir := t.TempDir()
		testkit.WriteAtomic(t, filepath.Join(dir, "profiles.yaml"), testkit.TokenConfig(testkit.SQLiteYAML(filepath.Join(dir, "k.db")), "http://localhost/id", "k1"))
		keyPath := testkit.KeyFile(t, t.TempDir(), "k1")
		testkit.WriteAtomic(t, filepath.Join(dir, "keys.yaml"), testkit.KeysConfig(map[string]string{"k1": keyPath}))
		n, err := New(testSettings(dir, 10*time.Millisecond, 0), nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := net.Listen("tcp", "127.0.0.1:0")
		opsLn, _ := net.Listen("tcp", "127.0.0.1:0")
		served := make(chan error, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if shutdownFirst {
			if err := n.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			go func() { served <- n.Serve(pub, opsLn) }()
		} else {
			go func() { served <- n.Serve(pub, opsLn) }()
			if err := n.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("shutdownFirst=%v: Serve returned %v", shutdownFirst, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("shutdownFirst=%v: Serve did not return after Shutdown", shutdownFirst)
		}
		cancel()
		if c, err := net.DialTimeout("tcp", pub.Addr().String(), time.Second); err == nil {
			c.Close()
			t.Errorf("shutdownFirst=%v: the public listener still accepts", shutdownFirst)
		}
	}
}
