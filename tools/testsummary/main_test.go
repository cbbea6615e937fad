package main

import (
	"strings"
	"testing"
)

// A stream as go test -json writes it: a pass, a failure, a skip.
const stream = `{"Action":"run","Package":"p","Test":"TestOK"}
{"Action":"output","Package":"p","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"pass","Package":"p","Test":"TestOK"}
{"Action":"output","Package":"p","Test":"TestBad","Output":"=== RUN   TestBad\n"}
{"Action":"output","Package":"p","Test":"TestBad","Output":"    bad_test.go:9: want 1, got 2\n"}
{"Action":"output","Package":"p","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}
{"Action":"fail","Package":"p","Test":"TestBad"}
{"Action":"output","Package":"p","Test":"TestPG","Output":"=== RUN   TestPG\n"}
{"Action":"output","Package":"p","Test":"TestPG","Output":"    pg_test.go:11: PostgreSQL not reachable; skipping\n"}
{"Action":"output","Package":"p","Test":"TestPG","Output":"--- SKIP: TestPG (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestPG"}
{"Action":"output","Package":"p","Output":"FAIL\n"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t0.01s\n"}
{"Action":"fail","Package":"p"}
`

func TestSummarize(t *testing.T) {
	var out strings.Builder
	skips := summarize(strings.NewReader(stream), &out)
	got := out.String()
	if !strings.Contains(got, "want 1, got 2") || !strings.Contains(got, "FAIL\tp") {
		t.Errorf("the failure or the package line is missing:\n%s", got)
	}
	if strings.Contains(got, "TestOK") || strings.Contains(got, "not reachable") {
		t.Errorf("a passing or skipped test's output was printed:\n%s", got)
	}
	if len(skips) != 1 || skips[0].test != "TestPG" || skips[0].reason != "PostgreSQL not reachable; skipping" {
		t.Fatalf("skips: %+v", skips)
	}
	out.Reset()
	report(&out, skips)
	if !strings.Contains(out.String(), "1 tests skipped") || !strings.Contains(out.String(), "p: TestPG\n    why: PostgreSQL not reachable; skipping") {
		t.Errorf("report:\n%s", out.String())
	}
}
