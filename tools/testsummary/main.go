// Command testsummary runs `go test -json` with its arguments and prints
// what plain `go test` prints (each package's result line, the output of
// failing tests), then the tests that were skipped and why. A skipped
// test is otherwise invisible in a green run: the PostgreSQL and browser
// tests skip outside CI when their server or Chromium is missing, and a
// reader of a green run should see that they did not run. The exit code
// is go test's.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type skip struct{ pkg, test, reason string }

func main() {
	cmd := exec.Command("go", append([]string{"test", "-json"}, os.Args[1:]...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	skips := summarize(out, os.Stdout)
	err = cmd.Wait()
	report(os.Stdout, skips)
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
}

// summarize copies the stream's result lines and failing tests' output
// to w and returns the skipped tests.
func summarize(r io.Reader, w io.Writer) []skip {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	held := map[string][]string{} // package/test → its output so far
	var skips []skip
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			fmt.Fprintln(w, sc.Text()) // not test2json: a build error, say
			continue
		}
		key := e.Package + "\x00" + e.Test
		switch {
		case e.Action == "output" && e.Test == "":
			// The package's own lines: ok/FAIL/?, build output, panics.
			if !strings.HasPrefix(e.Output, "=== ") && !strings.HasPrefix(e.Output, "PASS\n") {
				fmt.Fprint(w, e.Output)
			}
		case e.Action == "output":
			held[key] = append(held[key], e.Output)
		case e.Action == "fail" && e.Test != "":
			fmt.Fprint(w, strings.Join(held[key], ""))
			delete(held, key)
		case e.Action == "skip" && e.Test != "":
			skips = append(skips, skip{e.Package, e.Test, reason(held[key])})
			delete(held, key)
		case e.Action == "pass" && e.Test != "":
			delete(held, key)
		}
	}
	return skips
}

// fileLine is the "name_test.go:12: " that t.Skip puts before its
// message: different for each caller of one skipping helper.
var fileLine = regexp.MustCompile(`^[\w.-]+\.go:\d+: `)

// reason is the skip message: the test's output lines other than the
// framework's own (=== RUN, --- SKIP), joined.
func reason(lines []string) string {
	var kept []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		kept = append(kept, fileLine.ReplaceAllString(t, ""))
	}
	if len(kept) == 0 {
		return "(no reason given)"
	}
	return strings.Join(kept, " ")
}

// report lists the skips grouped by package and reason (a suite's
// subtests skip for one reason), naming the first few tests of each.
func report(w io.Writer, skips []skip) {
	if len(skips) == 0 {
		fmt.Fprintln(w, "\nNo test skipped.")
		return
	}
	type group struct {
		pkg, reason string
		tests       []string
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, s := range skips {
		k := s.pkg + "\x00" + s.reason
		g := byKey[k]
		if g == nil {
			g = &group{pkg: strings.TrimPrefix(s.pkg, "github.com/keygate/keygate/"), reason: s.reason}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.tests = append(g.tests, s.test)
	}
	fmt.Fprintf(w, "\n%d tests skipped (not run):\n", len(skips))
	for _, g := range groups {
		names := g.tests
		more := ""
		if len(names) > 4 {
			names, more = names[:4], fmt.Sprintf(" and %d more", len(g.tests)-4)
		}
		fmt.Fprintf(w, "  %s: %s%s\n    why: %s\n", g.pkg, strings.Join(names, ", "), more, g.reason)
	}
}
