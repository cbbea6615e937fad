// Package tests holds black-box tests of the built keygate binary: they
// start it as a user would, with files and environment variables, and watch
// only what a user can see (HTTP, exit codes, logs). The processes, keys,
// configs and waits come from internal/testkit.
package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/internal/testkit"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keygate-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "keygate")
	if err := testkit.BuildKeygate(context.Background(), binary); err != nil {
		fmt.Fprintln(os.Stderr, "build keygate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// node is a running keygate runtime process of the built binary; the
// tests add their own requests to it.
type node struct{ *testkit.Node }

// startNode runs `keygate runtime` on dir and waits until it serves.
func startNode(t testing.TB, dir string, env ...string) *node {
	t.Helper()
	return &node{testkit.StartNode(t, binary, dir, env...)}
}

// launch runs `keygate runtime` on dir without waiting (AwaitServing).
func launch(t testing.TB, dir string, env ...string) *node {
	t.Helper()
	return &node{testkit.LaunchNode(t, binary, dir, env...)}
}

var client = testkit.Client

// unusedDB is the data source of configs whose nodes never touch their
// store; relative, so it lands in the node's scratch directory.
const unusedDB = "{type: sqlite, path: ./unused.db}"
