package httpframe

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzRequest feeds raw bytes to fasthttp's request parser and, for what
// it accepts, to Check and Handler: nothing may panic, and a request Check
// passes has CRLF header lines, one Host (HTTP/1.1), at most one
// Content-Length and not both framings.
func FuzzRequest(f *testing.F) {
	f.Add([]byte("POST /oauth/v2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 29\r\n\r\ngrant_type=client_credentials"))
	f.Add([]byte("POST /t HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"))
	f.Add([]byte("GET / HTTP/1.1\nHost: x\n\n"))
	f.Add([]byte("POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(bytes.NewReader(raw))); err != nil {
			return
		}
		if Check(&req.Header) != "" {
			return
		}
		headers := req.Header.RawHeaders()
		if bytes.Contains(bytes.ReplaceAll(headers, []byte("\r\n"), nil), []byte("\n")) {
			t.Fatalf("a bare LF passed: %q", headers)
		}
		if req.Header.IsHTTP11() && len(req.Header.Peek("Host")) == 0 && !bytes.Contains(bytes.ToLower(headers), []byte("host:")) {
			t.Fatalf("an HTTP/1.1 request without Host passed: %q", headers)
		}
		var ctx fasthttp.RequestCtx
		req.CopyTo(&ctx.Request)
		called := false
		Handler(func(*fasthttp.RequestCtx) { called = true })(&ctx)
		if !called {
			t.Fatalf("Handler refused what Check passed: %q", raw)
		}
	})
}
