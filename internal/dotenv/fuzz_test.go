package dotenv

import (
	"strings"
	"testing"
)

// marker stands for a secret value. Its "-" can never be part of a valid key,
// and valid keys are the only input text errors ever repeat, so the marker
// must not appear in any error, wherever the fuzzer moves it.
const marker = "s3cr3t-MARKER-x9"

// quote writes v as a double-quoted value.
func quote(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`, "$", `\$`)
	return `"` + r.Replace(v) + `"`
}

// FuzzParse checks that Parse never panics, never puts a value in an error,
// returns well-formed Vars, and that quoting round-trips any value.
func FuzzParse(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte("A=" + marker + "\nB='" + marker + "\n" + marker + "'\nC=\"" + marker + "\\n\" # c\n"))
	f.Add([]byte("\uFEFFexport A = " + marker + " # c\r\nA='" + marker + "'x\r\n"))
	f.Add([]byte("K=\"" + marker + "\\q" + marker + "\nK2=" + marker))

	f.Fuzz(func(t *testing.T, data []byte) {
		vars, err := Parse("fuzz.env", data)
		if err != nil && strings.Contains(err.Error(), marker) {
			t.Fatalf("error leaks a value: %v", err)
		}
		lines := strings.Count(string(data), "\n") + 1
		seen := map[string]bool{}
		prev := 0
		for _, v := range vars {
			if !validKey(v.Name) || seen[v.Name] || v.Line <= prev || v.Line > lines {
				t.Fatalf("bad var %q (line %d after %d, %d lines)", v.Name, v.Line, prev, lines)
			}
			seen[v.Name] = true
			prev = v.Line
		}

		// Any value survives double quoting; single quoting for values
		// without a quote or CRLF (which reads as LF).
		v := string(data)
		checkRoundTrip(t, "K="+quote(v)+" # c\n", v)
		if !strings.Contains(v, "'") && !strings.Contains(v, "\r\n") && !strings.HasSuffix(v, "\r") {
			checkRoundTrip(t, "export K = '"+v+"'", v)
		}
	})
}

func checkRoundTrip(t *testing.T, file, want string) {
	t.Helper()
	vars, err := Parse("rt.env", []byte(file))
	if err != nil || len(vars) != 1 || vars[0].Name != "K" || vars[0].Value != want || vars[0].Line != 1 {
		t.Fatalf("round trip of %q: got %#v, %v", file, vars, err)
	}
}

func validKey(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return k != ""
}
