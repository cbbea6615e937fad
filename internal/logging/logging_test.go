package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/secret"
)

const plaintext = "hunter2-very-secret"

// credentials mirrors how config structs carry secrets: an exported field.
type credentials struct {
	ClientID string
	Secret   secret.String
}

func TestSecretRedacted(t *testing.T) {
	for _, format := range Formats {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := New(&buf, "debug", format)
			if err != nil {
				t.Fatal(err)
			}
			s := secret.New(plaintext)
			log.Info("direct", "client_secret", s)
			log.Info("attr", slog.Any("client_secret", s))
			log.Info("group", slog.Group("client", slog.Any("secret", s)))
			log.With("client_secret", s).Info("with")
			log.WithGroup("g").Info("withgroup", "client_secret", s)
			log.Info("struct", "client", credentials{ClientID: "web-app", Secret: s})
			log.Info("pointer", "client", &credentials{ClientID: "web-app", Secret: s})

			out := buf.String()
			if strings.Contains(out, plaintext) {
				t.Fatalf("secret leaked in %s output:\n%s", format, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 7 {
				t.Fatalf("got %d lines, want 7:\n%s", len(lines), out)
			}
			for _, line := range lines {
				if !strings.Contains(line, secret.Redacted) {
					t.Errorf("line lacks %s: %s", secret.Redacted, line)
				}
			}
		})
	}
}

func TestJSONRedactedValue(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("m", "client_secret", secret.New(plaintext))
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not JSON: %v: %s", err, buf.Bytes())
	}
	if got := rec["client_secret"]; got != secret.Redacted {
		t.Errorf("client_secret = %v, want %q", got, secret.Redacted)
	}
}

func TestLevels(t *testing.T) {
	tests := []struct {
		level     string
		wantDebug bool
		wantInfo  bool
		wantWarn  bool
	}{
		{"debug", true, true, true},
		{"info", false, true, true},
		{"INFO", false, true, true},
		{"warn", false, false, true},
		{"error", false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := New(&buf, tt.level, "text")
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("d")
			log.Info("i")
			log.Warn("w")
			log.Error("e")
			out := buf.String()
			for msg, want := range map[string]bool{"msg=d": tt.wantDebug, "msg=i": tt.wantInfo, "msg=w": tt.wantWarn, "msg=e": true} {
				if got := strings.Contains(out, msg); got != want {
					t.Errorf("%s logged = %v, want %v\n%s", msg, got, want, out)
				}
			}
		})
	}
}

func TestFormats(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hello", "k", "v")
	if !json.Valid(bytes.TrimSpace(buf.Bytes())) {
		t.Errorf("json format wrote %q", buf.String())
	}

	buf.Reset()
	if log, err = New(&buf, "info", "text"); err != nil {
		t.Fatal(err)
	}
	log.Info("hello", "k", "v")
	if !strings.Contains(buf.String(), "msg=hello k=v") {
		t.Errorf("text format wrote %q", buf.String())
	}
}

func TestInvalid(t *testing.T) {
	tests := []struct{ level, format, wantErr string }{
		{"verbose", "json", `unknown log level "verbose"`},
		{"info+2", "json", `unknown log level "info+2"`},
		{"", "json", `unknown log level ""`},
		{"info", "logfmt", `unknown log format "logfmt"`},
	}
	for _, tt := range tests {
		_, err := New(&bytes.Buffer{}, tt.level, tt.format)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("New(%q, %q) error = %v, want %q", tt.level, tt.format, err, tt.wantErr)
		}
	}
}
