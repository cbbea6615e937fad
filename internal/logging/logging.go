// Package logging builds the node's slog logger from KEYGATE_LOG_LEVEL and
// KEYGATE_LOG_FORMAT. Secrets stay redacted because secret.String is a
// slog.LogValuer, which both handlers resolve.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Levels and Formats are the accepted spellings, in the order the docs list them.
var (
	Levels  = []string{"debug", "info", "warn", "error"}
	Formats = []string{"json", "text"}
)

// New returns a logger writing to w at level in format (json or text).
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("unknown log format %q (want one of %s)", format, strings.Join(Formats, ", "))
}

// ParseLevel accepts exactly the names in Levels, in any case. It is stricter
// than slog.Level.UnmarshalText (no "INFO+2") so the settings docs stay true.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want one of %s)", s, strings.Join(Levels, ", "))
}

// ValidFormat reports whether New accepts format.
func ValidFormat(format string) bool {
	f := strings.ToLower(format)
	return f == "json" || f == "text"
}
