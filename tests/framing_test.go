package tests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rawRequest sends raw bytes to addr and reads the one response.
func rawRequest(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", raw[:min(len(raw), 60)], err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// Requests that two HTTP parsers could frame differently are refused before
// any handler (a smuggling risk behind a proxy); oversized bodies and
// headers get JSON errors; an upper-case form media type is still a form;
// and a browser's usual cookies fit.
func TestHTTPFraming(t *testing.T) {
	addr := fedPort(t)
	n := startNode(t, faultConfig(t, addr, "{type: sqlite, path: "+filepath.Join(t.TempDir(), "k.db")+"}"), "KEYGATE_LISTEN_ADDR="+addr)
	host := strings.TrimPrefix(n.Public(), "http://")
	form := "grant_type=client_credentials"
	auth := "Authorization: Basic c3ZjLW9wYXF1ZTpzdmMtb3BhcXVlLXNlY3JldC0wMTIzNDU2Nzg5\r\n" // svc-opaque
	token := func(headers, body string) string {
		return "POST /oauth/v2/token HTTP/1.1\r\n" + headers + auth + "Content-Type: application/x-www-form-urlencoded\r\n" +
			fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
	}
	cases := []struct {
		name, raw string
		status    int
		says      string
	}{
		{"well formed", token("Host: x\r\n", form), 200, "access_token"},
		{"upper-case media type", strings.Replace(token("Host: x\r\n", form), "application/x-www-form-urlencoded", "APPLICATION/X-WWW-FORM-URLENCODED", 1), 200, "access_token"},
		{"two Content-Length", token("Host: x\r\nContent-Length: 3\r\n", form), 400, "more than one Content-Length"},
		{"Content-Length and chunked", "POST /oauth/v2/token HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Type: application/x-www-form-urlencoded\r\n" +
			"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(form), form), 400, "both Content-Length and Transfer-Encoding"},
		{"no Host", token("", form), 400, "needs a Host header"},
		{"two Host", token("Host: x\r\nHost: y\r\n", form), 400, "more than one Host"},
		{"obs-fold", token("Host: x\r\nX-Note: a\r\n b\r\n", form), 400, "obsolete line folding"},
		{"bare LF", strings.ReplaceAll(token("Host: x\r\n", form), "\r\n", "\n"), 400, "bare LF"},
		{"body over 64 KiB", token("Host: x\r\n", form+"&x="+strings.Repeat("a", 70000)), 413, "too large"},
		{"headers over 16 KiB", "GET /oauth/v2/jwks HTTP/1.1\r\nHost: x\r\nCookie: a=" + strings.Repeat("b", 20000) + "\r\n\r\n", 431, "headers are too large"},
		{"a browser's 8 KB of cookies", "GET /oauth/v2/jwks HTTP/1.1\r\nHost: x\r\nCookie: a=" + strings.Repeat("b", 8000) + "\r\n\r\n", 200, "keys"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawRequest(t, host, tc.raw)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.says) {
				t.Fatalf("%d %s, want %d saying %q", resp.StatusCode, body, tc.status, tc.says)
			}
			if tc.status != 200 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Errorf("error Content-Type %q, want JSON", resp.Header.Get("Content-Type"))
			}
		})
	}
}
