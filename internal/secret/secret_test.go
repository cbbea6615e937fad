package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Every way a value can be printed shows <redacted>, never the plaintext.
func TestRedactedEverywhere(t *testing.T) {
	const plain = "hunter2-plaintext"
	s := New(plain)
	type holder struct {
		Exported   String
		unexported String
	}
	h := holder{Exported: s, unexported: s}
	j, _ := json.Marshal(h)
	y, _ := yaml.Marshal(h)
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "s", s, "h", h)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "s", s, "h", h)
	outputs := []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, s, s, s, s),
		fmt.Sprintf("%v %+v %#v", h, h, h), fmt.Sprintf("%+v", &h),
		string(j), string(y), logs.String(),
	}
	for _, out := range outputs {
		if strings.Contains(out, plain) {
			t.Errorf("plaintext leaked: %s", out)
		}
	}
	if s.Reveal() != plain || !s.Equal(New(plain)) || s.Equal(New("other")) || (String{}).Reveal() != "" || !(String{}).IsZero() {
		t.Error("Reveal/Equal/IsZero")
	}
}
