package served

import (
	"errors"
	"runtime/debug"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// Error codes by status. The codes are OAuth's where one fits (RFC 6749
// §5.2, §4.1.2.1); otherwise a snake_case name of the status. An internal
// error message never reaches a client.
var errorCodes = map[int]string{
	fiber.StatusBadRequest:            "invalid_request",
	fiber.StatusUnauthorized:          "unauthorized",
	fiber.StatusForbidden:             "access_denied",
	fiber.StatusNotFound:              "not_found",
	fiber.StatusMethodNotAllowed:      "method_not_allowed",
	fiber.StatusNotAcceptable:         "not_acceptable",
	fiber.StatusRequestEntityTooLarge: "request_too_large",
	fiber.StatusUnsupportedMediaType:  "unsupported_media_type",
	fiber.StatusTooManyRequests:       "too_many_requests",
	fiber.StatusNotImplemented:        "not_implemented",
	fiber.StatusServiceUnavailable:    "temporarily_unavailable",
	fiber.StatusInternalServerError:   "server_error",
}

// errorBodies are the JSON bodies of errorCodes, serialized once so an
// error response allocates nothing. The codes are plain snake_case, so
// they need no JSON escaping.
var errorBodies = func() map[int][]byte {
	bodies := make(map[int][]byte, len(errorCodes))
	for status, code := range errorCodes {
		bodies[status] = []byte(`{"error":"` + code + `"}`)
	}
	return bodies
}()

// errorBody maps an HTTP status to its JSON body and the status actually
// sent: statuses without a body of their own become 400 or 500.
func errorBody(status int) (int, []byte) {
	if body, ok := errorBodies[status]; ok {
		return status, body
	}
	if status >= 400 && status < 500 {
		return fiber.StatusBadRequest, errorBodies[fiber.StatusBadRequest]
	}
	return fiber.StatusInternalServerError, errorBodies[fiber.StatusInternalServerError]
}

// handleError is the app's fiber.ErrorHandler. A *fiber.Error keeps its
// status (its message is dropped: fiber's echo the request path); any
// other error is a 500 whose real cause is logged, never sent.
func (r *Set) handleError(c *fiber.Ctx, err error) error {
	status := fiber.StatusInternalServerError
	var fe *fiber.Error
	if errors.As(err, &fe) {
		status = fe.Code
	}
	status, _ = errorBody(status)
	if status >= fiber.StatusInternalServerError {
		r.log.Error("request failed", "method", c.Method(), "path", c.Path(), "status", status, "err", err)
	}
	writeError(c.Response(), status)
	return nil
}

// writeError writes the JSON error body for status. Error responses are
// never cached.
func writeError(resp *fasthttp.Response, status int) {
	status, body := errorBody(status)
	resp.SetStatusCode(status)
	resp.Header.SetContentType(fiber.MIMEApplicationJSON)
	resp.Header.Set(fiber.HeaderCacheControl, "no-store")
	resp.SetBodyRaw(body)
}

func stackTrace() []byte { return debug.Stack() }
