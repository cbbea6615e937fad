package dotenv

import (
	"reflect"
	"strings"
	"testing"
)

type parseCase struct {
	name string
	in   string
	want []Var
	err  string // joined errors, one per line
}

const pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----"

var parseCases = []parseCase{
	{name: "empty", in: "", want: nil},
	{name: "blank lines", in: "\n  \n\t\n", want: nil},
	{name: "comments", in: "# a\n   # b\n\t#c=d\n", want: nil},
	{name: "simple", in: "FOO=bar\n", want: []Var{{"FOO", "bar", 1}}},
	{name: "no final newline", in: "FOO=bar", want: []Var{{"FOO", "bar", 1}}},
	{name: "lines", in: "# c\n\nA=1\nB=2\n", want: []Var{{"A", "1", 3}, {"B", "2", 4}}},
	{name: "key chars", in: "_a_B9=x\n_=y\n", want: []Var{{"_a_B9", "x", 1}, {"_", "y", 2}}},
	{name: "export", in: "export FOO=bar\nexport\tBAR=baz\n  export   BAZ = q\n", want: []Var{{"FOO", "bar", 1}, {"BAR", "baz", 2}, {"BAZ", "q", 3}}},
	{name: "key named export", in: "export=1\nexportX=2\n", want: []Var{{"export", "1", 1}, {"exportX", "2", 2}}},
	{name: "whitespace around key and =", in: "  FOO  =  bar  \n\tBAR\t=\tbaz\t\n", want: []Var{{"FOO", "bar", 1}, {"BAR", "baz", 2}}},
	{name: "empty values", in: "A=\nB=   \nC=''\nD=\"\"\n", want: []Var{{"A", "", 1}, {"B", "", 2}, {"C", "", 3}, {"D", "", 4}}},
	{name: "unquoted inner spaces", in: "A=a b  c\n", want: []Var{{"A", "a b  c", 1}}},
	{name: "inline comment", in: "A=bar # note\nB=bar\t# note\nC=bar#not-a-comment\nD=#x\nE= # only a comment\nF=a #b #c\n",
		want: []Var{{"A", "bar", 1}, {"B", "bar", 2}, {"C", "bar#not-a-comment", 3}, {"D", "#x", 4}, {"E", "", 5}, {"F", "a", 6}}},
	{name: "equals in value", in: "URL=postgres://u:p@h/db?sslmode=require&a=b\n", want: []Var{{"URL", "postgres://u:p@h/db?sslmode=require&a=b", 1}}},
	{name: "quotes inside unquoted", in: `A=it's "fine"` + "\n", want: []Var{{"A", `it's "fine"`, 1}}},
	{name: "no expansion", in: "A=$HOME ${B} $$\nB='$X'\nC=\"$Y \\$Z\"\n", want: []Var{{"A", "$HOME ${B} $$", 1}, {"B", "$X", 2}, {"C", "$Y $Z", 3}}},
	{name: "single quoted literal", in: `A='a\nb "c" # d \\'` + "\n", want: []Var{{"A", `a\nb "c" # d \\`, 1}}},
	{name: "single quoted keeps blanks", in: "A='  x  '\n", want: []Var{{"A", "  x  ", 1}}},
	{name: "single quoted multi-line", in: "A='line1\nline2\n'\nB=2\n", want: []Var{{"A", "line1\nline2\n", 1}, {"B", "2", 4}}},
	{name: "double quoted escapes", in: `A="a\nb\rc\td\"e\\f\$g"` + "\n", want: []Var{{"A", "a\nb\rc\td\"e\\f$g", 1}}},
	{name: "double quoted hash and single quote", in: `A="x # y 'z'"` + "\n", want: []Var{{"A", "x # y 'z'", 1}}},
	{name: "double quoted PEM", in: "KEY=\"" + pem + "\"\nNEXT=1\n", want: []Var{{"KEY", pem, 1}, {"NEXT", "1", 4}}},
	{name: "double quoted escaped PEM", in: "KEY=\"" + strings.ReplaceAll(pem, "\n", `\n`) + "\"\n", want: []Var{{"KEY", pem, 1}}},
	{name: "comment after quotes", in: "A='x' # c\nB=\"y\"\t#c\nC=\"z\"   \n", want: []Var{{"A", "x", 1}, {"B", "y", 2}, {"C", "z", 3}}},
	{name: "unicode", in: "A=héllo wörld 日本 # c\nB=\"ü\\tü\"\n", want: []Var{{"A", "héllo wörld 日本", 1}, {"B", "ü\tü", 2}}},
	{name: "CRLF", in: "A=1\r\nB='x\r\ny'\r\nC=\"p\r\nq\"\r\n# c\r\nD=2 # c\r\n", want: []Var{{"A", "1", 1}, {"B", "x\ny", 2}, {"C", "p\nq", 4}, {"D", "2", 7}}},
	{name: "BOM", in: "\uFEFFA=1\nB=2\n", want: []Var{{"A", "1", 1}, {"B", "2", 2}}},
	{name: "lone CR kept", in: "A=x\ry\n", want: []Var{{"A", "x\ry", 1}}},

	// Errors: file:line, key and column only, never the value.
	{name: "missing =", in: "A=1\nthis-is-a-pasted-secret\n\nB=2\n",
		want: []Var{{"A", "1", 1}, {"B", "2", 4}},
		err:  `staging.env:2: missing "=" (want KEY=value)`},
	{name: "export without =", in: "export FOO\n", err: `staging.env:1: missing "=" (want KEY=value)`},
	{name: "missing key", in: "=value\n  = x\n", err: "staging.env:1: missing key before \"=\"\nstaging.env:2: missing key before \"=\""},
	{name: "invalid keys", in: "1A=x\nA-B=x\n  FOO BAR=x\nexport A.B=x\nÄ=x\n",
		err: "staging.env:1: invalid key at column 1: keys must match [A-Za-z_][A-Za-z0-9_]*\n" +
			"staging.env:2: invalid key at column 2: keys must match [A-Za-z_][A-Za-z0-9_]*\n" +
			"staging.env:3: invalid key at column 6: keys must match [A-Za-z_][A-Za-z0-9_]*\n" +
			"staging.env:4: invalid key at column 9: keys must match [A-Za-z_][A-Za-z0-9_]*\n" +
			"staging.env:5: invalid key at column 1: keys must match [A-Za-z_][A-Za-z0-9_]*"},
	{name: "invalid key still skips its multi-line value", in: "BAD-KEY=\"line1\nNOT=an assignment\"\nOK=1\n",
		want: []Var{{"OK", "1", 3}},
		err:  "staging.env:1: invalid key at column 4: keys must match [A-Za-z_][A-Za-z0-9_]*"},
	{name: "duplicate", in: "FOO=1\nBAR=2\n\nexport FOO=3\nFOO='4'\n",
		want: []Var{{"FOO", "1", 1}, {"BAR", "2", 2}},
		err:  "staging.env:4: FOO already set at line 1\nstaging.env:5: FOO already set at line 1"},
	{name: "unterminated single quote", in: "A=1\nB='abc\ndef\nC=2\n",
		want: []Var{{"A", "1", 1}},
		err:  "staging.env:2: B: single quote opened on this line is never closed"},
	{name: "unterminated double quote", in: "A=\"abc\nC=2\n",
		err: "staging.env:1: A: double quote opened on this line is never closed"},
	{name: "unterminated double quote by escape", in: `A="abc\"`,
		err: "staging.env:1: A: double quote opened on this line is never closed"},
	{name: "trailing backslash", in: `A="abc\`,
		err: "staging.env:1: A: double quote opened on this line is never closed"},
	{name: "garbage after quote", in: "A='x'y\nB=\"x\" y\nC='x'# no blank\nD=\"x\"\"y\"\nE=1\n",
		want: []Var{{"E", "1", 5}},
		err: "staging.env:1: A: unexpected text after the closing quote at column 6\n" +
			"staging.env:2: B: unexpected text after the closing quote at column 7\n" +
			"staging.env:3: C: unexpected text after the closing quote at column 6\n" +
			"staging.env:4: D: unexpected text after the closing quote at column 6"},
	{name: "garbage after multi-line quote", in: "A='x\ny' z\n",
		err: "staging.env:2: A: unexpected text after the closing quote at column 4"},
	{name: "invalid escape", in: `A="ok\qno\xno"` + "\nB=\"x\ny\\a\"\nC=\"\\\nz\"\n",
		err: "staging.env:1: A: invalid escape at column 6 (double-quoted values support \\n \\r \\t \\\" \\\\ \\$)\n" +
			"staging.env:3: B: invalid escape at column 2 (double-quoted values support \\n \\r \\t \\\" \\\\ \\$)\n" +
			"staging.env:4: C: invalid escape at column 4 (double-quoted values support \\n \\r \\t \\\" \\\\ \\$)"},
	{name: "errors with invalid key name no key", in: "A-B='x\n",
		err: "staging.env:1: invalid key at column 2: keys must match [A-Za-z_][A-Za-z0-9_]*\n" +
			"staging.env:1: single quote opened on this line is never closed"},
	{name: "errors on CRLF lines", in: "A=1\r\nB\r\nC='x\r\n",
		want: []Var{{"A", "1", 1}},
		err:  "staging.env:2: missing \"=\" (want KEY=value)\nstaging.env:3: C: single quote opened on this line is never closed"},
	{name: "all errors at once", in: "A\n1=x\nB=\"\\q\"\nB='y'z\nC=1\nC=2\n",
		want: []Var{{"C", "1", 5}},
		err: "staging.env:1: missing \"=\" (want KEY=value)\n" +
			"staging.env:2: invalid key at column 1: keys must match [A-Za-z_][A-Za-z0-9_]*\n" +
			"staging.env:3: B: invalid escape at column 4 (double-quoted values support \\n \\r \\t \\\" \\\\ \\$)\n" +
			"staging.env:4: B: unexpected text after the closing quote at column 6\n" +
			"staging.env:6: C already set at line 5"},
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse("staging.env", []byte(tc.in))
			if tc.err == "" && err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			if tc.err != "" {
				if err == nil {
					t.Fatalf("want error\n%s", tc.err)
				}
				if err.Error() != tc.err {
					t.Errorf("error\n got: %s\nwant: %s", err, tc.err)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("vars\n got: %#v\nwant: %#v", got, tc.want)
			}
		})
	}
}

func TestParseTooManyErrors(t *testing.T) {
	_, err := Parse("junk.env", []byte(strings.Repeat("junk\n", 200)))
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 || lines[maxErrors] != "junk.env: too many errors" {
		t.Errorf("got %d error lines, last %q", len(lines), lines[len(lines)-1])
	}
}

// Error messages must never contain values: every case above is rerun with
// each value replaced by a marker that can never be a valid key.
func TestParseErrorsNeverContainValues(t *testing.T) {
	for _, tc := range parseCases {
		in := tc.in
		for _, v := range tc.want {
			if v.Value != "" {
				in = strings.ReplaceAll(in, v.Value, marker)
			}
		}
		for _, file := range []string{in, in + "\nX=" + marker + "\nX='" + marker + "'\nY=\"" + marker + "\\q\"'"} {
			if _, err := Parse("s.env", []byte(file)); err != nil && strings.Contains(err.Error(), marker) {
				t.Errorf("%s: error leaks a value: %v", tc.name, err)
			}
		}
	}
}
