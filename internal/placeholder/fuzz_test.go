package placeholder

import (
	"errors"
	"strings"
	"testing"
)

const (
	fuzzSecret  = "S3cr3t-VALUE-x9"
	fuzzContent = "F1le-SECRET-q7"
)

// fuzzLookup sets every name to the secret except names starting with U
// (unset) or E (empty), so defaults and Missing are exercised too.
func fuzzLookup(name string) (string, bool) {
	switch name[0] {
	case 'U':
		return "", false
	case 'E':
		return "", true
	}
	return fuzzSecret, true
}

func fuzzReadFile(string) ([]byte, error) { return []byte(fuzzContent + "\n"), nil }

// FuzzExpand checks that Expand never panics, that its errors never contain
// a variable value or file content, and a few invariants of the syntax.
func FuzzExpand(f *testing.F) {
	for _, tc := range expandCases {
		f.Add(tc.in)
	}
	f.Add("${U:-${E:-${file:${A}/x}}}$$$B")
	f.Add("${file:${U}/x}${file:/y}")
	f.Add("$$${A:-$$}${U:-$}")

	f.Fuzz(func(t *testing.T, s string) {
		res, err := Expand(s, fuzzLookup, fuzzReadFile)
		if err != nil {
			msg := err.Error()
			if strings.Contains(msg, fuzzSecret) || strings.Contains(msg, fuzzContent) {
				t.Fatalf("error leaks a secret: %v", msg)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || se.Offset < 0 || se.Offset >= len(s) || s[se.Offset] != '$' {
				t.Fatalf("error is not a *SyntaxError pointing at a $: %#v", err)
			}
			if res.Value != "" {
				t.Fatalf("value %q returned with an error", res.Value)
			}
		} else if !Has(s) && res.Value != s {
			t.Fatalf("no placeholders but Value %q != input", res.Value)
		}
		if err == nil && !strings.Contains(s, "${") && len(res.Files) > 0 {
			t.Fatalf("files %q read without ${file:}", res.Files)
		}
		for _, list := range [][]string{res.Missing, res.Files} {
			seen := map[string]bool{}
			for _, v := range list {
				if seen[v] {
					t.Fatalf("duplicate %q in %q", v, list)
				}
				seen[v] = true
			}
		}
		for _, name := range res.Missing {
			if name[0] != 'U' {
				t.Fatalf("set variable %q reported missing", name)
			}
		}

		// Escaping every "$" as "$$" must give back the input verbatim.
		esc, err := Expand(strings.ReplaceAll(s, "$", "$$"), fuzzLookup, fuzzReadFile)
		if err != nil || esc.Value != s || esc.Missing != nil || esc.Files != nil {
			t.Fatalf("escaped input did not round-trip: %#v, %v", esc, err)
		}

		// A failing reader must surface as an error, never a panic.
		_, err = Expand(s, fuzzLookup, func(string) ([]byte, error) { return nil, errors.New("boom") })
		var fe *FileError
		var se *SyntaxError
		if err != nil && !errors.As(err, &fe) && !errors.As(err, &se) {
			t.Fatalf("unexpected error type %T", err)
		}
	})
}
