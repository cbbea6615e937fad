package token

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/time/rate"
)

// A refused request is an info line with the client it claims, the
// reason and the request id its response carries, never the secret; a
// flood of them is cut to the limiter's burst, and the next line says how
// many were dropped.
func TestRefusalLog(t *testing.T) {
	e := newEnv(t, "https://id.example.com/oauth/v2")
	var buf bytes.Buffer
	e.p.log = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	saved := refusals.limit
	t.Cleanup(func() { refusals.limit = saved })
	refusals.limit = rate.NewLimiter(rate.Inf, 0) // no limit until the flood below

	lines := func() []map[string]any {
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "oauth request refused" {
				out = append(out, m)
			}
		}
		return out
	}
	const wrong = "not-the-secret-5f2c1e"
	for _, tc := range []struct{ authz, body, client, reason, requestID string }{
		{basicAuth("svc", wrong), "grant_type=client_credentials", "svc", "wrong_secret", ""},
		{basicAuth("nobody", wrong), "grant_type=client_credentials", "nobody", "unknown_client", "proxy-id-7"},
		{"", "grant_type=client_credentials&client_id=opaque&client_secret=" + wrong, "opaque", "wrong_secret", ""},
		{basicAuth("code", codeSecret), "grant_type=client_credentials", "code", "grant_type_not_allowed", ""},
		{basicAuth("svc", svcSecret), "grant_type=client_credentials&scope=x:admin", "svc", "scope_not_allowed", ""},
	} {
		buf.Reset()
		req := httptest.NewRequest(http.MethodPost, "/oauth/v2/token", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if tc.authz != "" {
			req.Header.Set("Authorization", tc.authz)
		}
		if tc.requestID != "" {
			req.Header.Set(HeaderRequestID, tc.requestID)
		}
		resp, _ := e.do(req)
		got := lines()
		if len(got) != 1 {
			t.Fatalf("%s: %d refusal lines:\n%s", tc.reason, len(got), buf.String())
		}
		l := got[0]
		if l["level"] != "INFO" || l["client"] != tc.client || l["reason"] != tc.reason || l["endpoint"] != "token" {
			t.Errorf("%s: %v", tc.reason, l)
		}
		id := resp.Header.Get(HeaderRequestID)
		if id == "" || l["request_id"] != id || tc.requestID != "" && id != tc.requestID {
			t.Errorf("%s: request id %q in the response, %v in the log", tc.reason, id, l["request_id"])
		}
		if strings.Contains(buf.String(), wrong) || strings.Contains(buf.String(), svcSecret) {
			t.Errorf("%s: a secret is in the log:\n%s", tc.reason, buf.String())
		}
	}
	// The reason is a label of the errors metric too.
	if !strings.Contains(strings.Join(e.metrics.errors, " "), "token/token/invalid_client/wrong_secret") {
		t.Errorf("metric labels: %v", e.metrics.errors)
	}

	buf.Reset()
	refusals.limit = rate.NewLimiter(rate.Limit(1e-9), 5) // a burst of 5, then nothing for this test's life
	for range 50 {
		e.post("/token", "grant_type=client_credentials", basicAuth("svc", wrong))
	}
	if n := len(lines()); n != 5 {
		t.Errorf("%d lines for 50 refusals, want the burst of 5", n)
	}
	refusals.limit = rate.NewLimiter(rate.Inf, 0)
	e.post("/token", "grant_type=client_credentials", basicAuth("svc", wrong))
	got := lines()
	if last := got[len(got)-1]; last["suppressed_before"] != float64(45) {
		t.Errorf("the line after the flood: %v", last)
	}
}
