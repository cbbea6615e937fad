// Package ops serves the ops listener (SPEC §5): /healthz, /readyz, /status
// and /metrics, on its own address so probes and scrapes never compete with,
// or are exposed like, the public profiles.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ReadyTimeout bounds one readiness check, so a hung data source yields a
// 503 with a reason instead of a hung probe. Probes need a longer timeout
// (Kubernetes' timeoutSeconds defaults to 1).
const ReadyTimeout = 2 * time.Second

// Server is the ops listener.
type Server struct {
	app    *fiber.App
	ready  func(context.Context) error
	status func() any

	// ctx is cancelled by Shutdown, so readiness checks in flight stop.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	ln     net.Listener
	closed bool
}

// New returns a server exposing reg on /metrics. ready reports whether the
// node can serve (nil) or why not; its error text is shown on /readyz, so it
// must not carry secrets. status returns the /status document (encoded with
// encoding/json, so secret.String fields show as <redacted>). Both are
// called concurrently, once per request.
func New(reg *prometheus.Registry, ready func(context.Context) error, status func() any) *Server {
	s := &Server{ready: ready, status: status}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.app = fiber.New(fiber.Config{
		AppName:               "keygate-ops",
		DisableStartupMessage: true,
		// Timeouts let Shutdown finish on idle keep-alive connections.
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  60 * time.Second,
		ErrorHandler: errorHandler,
	})
	// fasthttp does not recover panics; without this a panicking status func
	// would take the whole node down.
	s.app.Use(recover.New(recover.Config{
		EnableStackTrace: true,
		StackTraceHandler: func(c *fiber.Ctx, e any) {
			slog.Default().Error("ops handler panicked", "path", c.Path(), "panic", e, "stack", string(debug.Stack()))
		},
	}))
	s.app.Use(func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderCacheControl, "no-store")
		return c.Next()
	})
	s.app.Get("/healthz", func(c *fiber.Ctx) error {
		return sendJSON(c, fiber.StatusOK, map[string]string{"status": "ok"})
	})
	s.app.Get("/readyz", s.readyz)
	s.app.Get("/status", s.statusz)
	s.app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError, // a failing collector must not hide the rest
	})))
	s.app.Use(func(c *fiber.Ctx) error {
		return sendJSON(c, fiber.StatusNotFound, map[string]string{"error": "not found"})
	})
	return s
}

// Serve serves on ln until Shutdown, then returns nil. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.ln = ln
	s.mu.Unlock()
	return s.app.Listener(ln)
}

// Shutdown stops accepting, cancels readiness checks in flight, and waits
// for open requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	ln := s.ln
	s.mu.Unlock()
	s.cancel()
	err := s.app.ShutdownWithContext(ctx)
	if ln != nil {
		// fasthttp forgets a listener Serve had not yet handed it; closing it
		// here makes that Serve return instead of running on.
		ln.Close()
	}
	return err
}

func (s *Server) readyz(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(s.ctx, ReadyTimeout)
	defer cancel()
	if err := s.ready(ctx); err != nil {
		return sendJSON(c, fiber.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
	}
	return sendJSON(c, fiber.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) statusz(c *fiber.Ctx) error {
	return sendJSON(c, fiber.StatusOK, s.status())
}

// sendJSON encodes with encoding/json (not fiber's configurable encoder) so
// the secret.String MarshalJSON contract is what runs.
func sendJSON(c *fiber.Ctx, code int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.Status(code)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	return c.Send(body)
}

// errorHandler answers in JSON without internal detail (SPEC §5: never an
// internal message), keeping fiber's status for its own errors (413, 431…).
// Other errors are logged through slog.Default, which cmd sets.
func errorHandler(c *fiber.Ctx, err error) error {
	code := fiber.StatusInternalServerError
	msg := "internal error"
	var fe *fiber.Error
	if errors.As(err, &fe) {
		code, msg = fe.Code, fe.Message
	} else {
		slog.Default().Error("ops request failed", "path", c.Path(), "error", err)
	}
	body, _ := json.Marshal(map[string]string{"error": msg})
	c.Status(code)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	return c.Send(body)
}
