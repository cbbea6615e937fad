// Package httpframe guards the public listener against requests whose
// framing two HTTP parsers could read differently (RFC 9112): behind a
// proxy that reads them another way, such a request is how one request is
// smuggled inside another. fasthttp accepts some of them, so they are
// refused here, before any handler, from the header lines as received.
//
// What it cannot see: the request line itself (fasthttp parses it before
// keeping the raw header lines), so a request line ended by a bare LF is
// only refused when a header line is too.
package httpframe

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/valyala/fasthttp"
)

// HeaderLimit is the most a request's line and headers may hold: enough
// for a browser's usual cookies (a few KiB) with room to spare.
const HeaderLimit = 16 << 10

// Check returns why the request's header is refused, or "".
func Check(h *fasthttp.RequestHeader) string {
	raw := h.RawHeaders()
	hosts, lengths, chunked := 0, 0, false
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			break
		}
		line := raw[:i]
		raw = raw[i+1:]
		if len(line) == 0 || line[len(line)-1] != '\r' {
			return "header lines must end with CRLF, not a bare LF (RFC 9112 section 2.2)"
		}
		line = line[:len(line)-1]
		if len(line) == 0 {
			break // end of the header
		}
		if line[0] == ' ' || line[0] == '\t' {
			return "obsolete line folding is not accepted (RFC 9112 section 5.2)"
		}
		name, _, ok := bytes.Cut(line, []byte{':'})
		if !ok || len(name) == 0 {
			return "a header line has no field name and colon"
		}
		switch {
		case bytes.EqualFold(name, []byte("host")):
			hosts++
		case bytes.EqualFold(name, []byte("content-length")):
			lengths++
		case bytes.EqualFold(name, []byte("transfer-encoding")):
			chunked = true
		}
	}
	switch {
	case lengths > 1:
		return "more than one Content-Length (RFC 9112 section 6.3)"
	case lengths > 0 && chunked:
		return "both Content-Length and Transfer-Encoding (RFC 9112 section 6.1)"
	case hosts > 1:
		return "more than one Host (RFC 9112 section 3.2)"
	case hosts == 0 && h.IsHTTP11():
		return "an HTTP/1.1 request needs a Host header (RFC 9112 section 3.2)"
	}
	return ""
}

// Handler refuses what Check refuses with a 400 JSON error and closes the
// connection; it also lower-cases the media type of Content-Type (media
// types are case-insensitive, RFC 9110 §8.3.1, but the form parser
// compares them exactly), then calls next.
func Handler(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if why := Check(&ctx.Request.Header); why != "" {
			Error(ctx, http.StatusBadRequest, "invalid_request", why)
			return
		}
		if ct := ctx.Request.Header.ContentType(); len(ct) > 0 {
			typ, params, _ := bytes.Cut(ct, []byte{';'})
			if hasUpper(typ) {
				lower := bytes.ToLower(typ)
				if len(params) > 0 {
					lower = append(append(lower, ';'), params...)
				}
				ctx.Request.Header.SetContentTypeBytes(lower)
			}
		}
		next(ctx)
	}
}

// hasUpper reports whether b has an ASCII capital, so that the common
// lower-case media type costs no copy.
func hasUpper(b []byte) bool {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

// ErrorHandler answers the requests fasthttp refuses before any handler
// runs, in the same JSON as every other error: 413 for a body over the
// limit, 431 for headers over HeaderLimit, 400 for the rest.
func ErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		Error(ctx, http.StatusRequestEntityTooLarge, "invalid_request", "the request body is too large")
	case errors.As(err, &small):
		Error(ctx, http.StatusRequestHeaderFieldsTooLarge, "invalid_request", "the request headers are too large")
	default:
		Error(ctx, http.StatusBadRequest, "invalid_request", "the request is not valid HTTP/1.1")
	}
}

// Error writes an OAuth-style JSON error (RFC 6749 §5.2 shape) and asks
// for the connection to be closed: after a framing error the next bytes
// on it cannot be trusted to start a request.
func Error(ctx *fasthttp.RequestCtx, status int, code, desc string) {
	b, _ := json.Marshal(map[string]string{"error": code, "error_description": desc})
	ctx.Response.Reset()
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.SetBody(b)
	ctx.SetConnectionClose()
}
