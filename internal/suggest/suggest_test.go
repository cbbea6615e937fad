package suggest

import "testing"

func TestClosest(t *testing.T) {
	settings := []string{"SERVICE_ROLE", "LOG_LEVEL", "LOG_FORMAT", "LISTEN_ADDR", "OPS_LISTEN_ADDR", "CONFIG_DIR"}
	keys := []string{"redirect-uris", "grant-types", "scopes", "secret", "profile"}
	tests := []struct {
		name       string
		word       string
		candidates []string
		want       string
		wantOK     bool
	}{
		{"deletion", "SERVICE_ROL", settings, "SERVICE_ROLE", true},
		{"insertion", "LOG_LEVELL", settings, "LOG_LEVEL", true},
		{"substitution", "LOG_FORMAR", settings, "LOG_FORMAT", true},
		{"transposition counts once", "LOG_LEVLE", settings, "LOG_LEVEL", true},
		{"two edits", "CONFG_DIRR", settings, "CONFIG_DIR", true},
		{"len/3 allows more on long words", "OPS_LSTN_ADR", settings, "OPS_LISTEN_ADDR", true},
		{"nearest wins", "LISTEN_ADR", settings, "LISTEN_ADDR", true},
		{"exact match", "LOG_LEVEL", settings, "LOG_LEVEL", true},
		{"yaml key", "redirect-uri", keys, "redirect-uris", true},
		{"yaml key transposed", "scpoes", keys, "scopes", true},
		{"too far", "DATA_DIR", settings, "", false},
		{"unrelated", "hostname", keys, "", false},
		{"short word rewritten entirely", "ab", []string{"xy"}, "", false},
		{"short word one edit", "ab", []string{"abc"}, "abc", true},
		{"case-sensitive", "log_level", settings, "", false},
		{"no candidates", "x", nil, "", false},
		{"empty word", "", []string{"a"}, "", false},
		{"tie goes to lexically smallest", "cat", []string{"cut", "bat"}, "bat", true},
		{"unicode counts runes", "héllo", []string{"hello"}, "hello", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Closest(tt.word, tt.candidates)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Closest(%q) = %q, %v; want %q, %v", tt.word, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"kitten", "sitting", 3},
		{"ab", "ba", 1},
		{"ca", "abc", 3}, // optimal string alignment, not full Damerau
		{"flaw", "lawn", 2},
	}
	for _, tt := range tests {
		if got := distance([]rune(tt.a), []rune(tt.b)); got != tt.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
