package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/testkit"
)

// An event reaches the zone's table and the log, with the trail's zone
// and a time filled in, at the level its type calls for.
func TestRecord(t *testing.T) {
	st := testkit.SQLite(t)
	var buf bytes.Buffer
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	tr := Trail{Store: st, Zone: "eu", Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Now: func() time.Time { return at }}
	ctx := context.Background()
	for _, ev := range []model.AuditEvent{
		{Type: Logout, Subject: "eu~u1", ClientID: "app", Details: map[string]any{"sid": "s1"}},
		{Type: RefreshReuse, Subject: "eu~u1", ClientID: "app"},
		{Type: "login_attempt", Subject: "anna"}, // bookkeeping: debug only
		{Type: "scim_user_created", Zone: "us", Subject: "us~u2"},
	} {
		if err := tr.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := st.Audit().List(ctx, model.AuditQuery{})
	if err != nil || len(evs) != 4 {
		t.Fatalf("stored %d events (%v), want 4", len(evs), err)
	}
	if evs[0].Zone != "eu" || !evs[0].Time.Equal(at) || evs[3].Zone != "us" {
		t.Errorf("zone and time: %+v / %+v", evs[0], evs[3])
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("%d log lines, want 3 (login_attempt is debug):\n%s", len(lines), buf.String())
	}
	for i, want := range []struct{ typ, level string }{{Logout, "INFO"}, {RefreshReuse, "WARN"}, {"scim_user_created", "INFO"}} {
		if lines[i]["type"] != want.typ || lines[i]["level"] != want.level || lines[i]["audit"] != true {
			t.Errorf("log line %d: %v, want type %s at %s", i, lines[i], want.typ, want.level)
		}
	}
	if lines[0]["sid"] != "s1" || lines[0]["client"] != "app" || lines[0]["zone"] != "eu" {
		t.Errorf("logout line lacks its fields: %v", lines[0])
	}
}

// A store that refuses the write: the error is returned and logged at
// error level, with the event still in the log.
func TestRecordStoreFailure(t *testing.T) {
	st := testkit.SQLite(t)
	st.Close()
	var buf bytes.Buffer
	tr := Trail{Store: st, Zone: "eu", Logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	if err := tr.Record(context.Background(), model.AuditEvent{Type: Logout, Subject: "eu~u1"}); err == nil {
		t.Fatal("a closed store took the event")
	}
	if !strings.Contains(buf.String(), `"level":"ERROR"`) || !strings.Contains(buf.String(), `"type":"logout"`) {
		t.Errorf("log: %s", buf.String())
	}
}
