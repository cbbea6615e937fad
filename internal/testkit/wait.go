package testkit

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// Poll reports whether cond held before timeout, checking every interval.
func Poll(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
	return true
}

// WaitFor polls cond every 20 ms until it holds, and fails the test when
// timeout passes first.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	WaitEvery(tb, timeout, 20*time.Millisecond, what, cond)
}

// WaitEvery is WaitFor checking every interval, for waits whose length is
// measured.
func WaitEvery(tb testing.TB, timeout, interval time.Duration, what string, cond func() bool) {
	tb.Helper()
	if !Poll(timeout, interval, cond) {
		tb.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// Client is the kit's HTTP client: a node under test answers within 5 s
// or the test has found a bug.
var Client = &http.Client{Timeout: 5 * time.Second}

// HTTPGet returns the status and body; a transport error is returned as is.
func HTTPGet(c *http.Client, url string) (int, []byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// Get returns status and body with Client; a transport error is status 0.
func Get(url string) (int, []byte) {
	code, body, _ := HTTPGet(Client, url) // a body cut short still has its status
	return code, body
}

// GetJSON decodes a 200 answer into into, or fails the test.
func GetJSON(tb testing.TB, url string, into any) {
	tb.Helper()
	code, body := Get(url)
	if code != http.StatusOK {
		tb.Fatalf("GET %s: %d %s", url, code, body)
	}
	if err := json.Unmarshal(body, into); err != nil {
		tb.Fatalf("GET %s: %v in %s", url, err, body)
	}
}
