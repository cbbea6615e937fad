package postgres

import (
	"context"
	"errors"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Describe says why a call to PostgreSQL failed without naming the host,
// port, user or database: pgx's connection errors print all four, and
// logs and /status promise to name the data source only.
func Describe(err error) string {
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer within the timeout"
	case errors.Is(err, context.Canceled):
		return "the call was cancelled"
	case errors.As(err, &pgErr):
		switch {
		case pgErr.Code == "28P01" || pgErr.Code == "28000":
			return "authentication failed"
		case pgErr.Code == "3D000":
			return "the database does not exist"
		case pgErr.Code == "25006":
			return "the database refuses writes (read-only)"
		case pgErr.Code == "53300":
			return "the server has too many connections"
		case pgErr.Code[:2] == "57":
			return "the server is shutting down or starting up (SQLSTATE " + pgErr.Code + ")"
		case pgErr.Code[:2] == "08":
			return "connection failure (SQLSTATE " + pgErr.Code + ")"
		}
		return "server error (SQLSTATE " + pgErr.Code + ")"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "cannot connect: connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "the connection was reset"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "cannot connect: host not found"
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return "no answer within the timeout"
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) || errors.As(err, &netErr) {
		return "cannot connect"
	}
	return ""
}

// safe replaces err's text by Describe's when it has one (keeping the
// chain for errors.Is and errors.As).
func safe(prefix string, err error) error {
	if d := Describe(err); d != "" {
		return &describedError{msg: prefix + ": " + d, err: err}
	}
	return &describedError{msg: prefix + ": " + err.Error(), err: err}
}

type describedError struct {
	msg string
	err error
}

func (e *describedError) Error() string { return e.msg }
func (e *describedError) Unwrap() error { return e.err }
