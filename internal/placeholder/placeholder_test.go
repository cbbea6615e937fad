package placeholder

import (
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"
)

var testEnv = map[string]string{
	"HOST":        "db.example",
	"A":           "a",
	"B":           "b",
	"EMPTY":       "",
	"DOLLAR":      "p$ss$$w${X}$HOST",
	"SECRETS_DIR": "/run/secrets",
	"NAME_1":      "n1",
	"UNI":         "ü",
	"FDIR":        "/f",
}

var testFiles = map[string]string{
	"/run/secrets/db-url": "postgres://u:p@h/db\n",
	"/f/crlf":             "v\r\n",
	"/f/two":              "v\n\n",
	"/f/none":             "v",
	"/f/empty":            "",
	"/f/onlynl":           "\n",
	"/f/cr":               "v\r",
	"/f/dollar":           "$HOST ${A}\n",
	"/f/pem":              "-----BEGIN KEY-----\nabc\n-----END KEY-----\n",
}

func testLookup(name string) (string, bool) {
	v, ok := testEnv[name]
	return v, ok
}

func testReadFile(path string) ([]byte, error) {
	v, ok := testFiles[path]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	}
	return []byte(v), nil
}

type expandCase struct {
	in      string
	value   string
	missing []string
	files   []string
	err     string
}

var expandCases = []expandCase{
	// Literals and the no-"$" fast path.
	{in: "", value: ""},
	{in: "no placeholders {here}", value: "no placeholders {here}"},
	{in: "}", value: "}"},

	// $NAME and ${NAME}.
	{in: "$HOST", value: "db.example"},
	{in: "${HOST}", value: "db.example"},
	{in: "$HOST:8080", value: "db.example:8080"},
	{in: "postgres://$HOST:5432/db", value: "postgres://db.example:5432/db"},
	{in: "$A.$B", value: "a.b"},
	{in: "$A$B", value: "ab"},
	{in: "${A}${B}", value: "ab"},
	{in: "x${A}y", value: "xay"},
	{in: "$A-$B", value: "a-b"},
	{in: "$A}", value: "a}"},
	{in: "${NAME_1}x", value: "n1x"},
	{in: "$NAME_1x", value: "", missing: []string{"NAME_1x"}},
	{in: "$_", value: "", missing: []string{"_"}},
	{in: "$EMPTY", value: ""},
	{in: "${EMPTY}", value: ""},

	// Unicode around placeholders: a name ends at the first non-ASCII byte.
	{in: "ü$Aü", value: "üaü"},
	{in: "→${A}←", value: "→a←"},
	{in: "日本$A語", value: "日本a語"},
	{in: "$UNI$UNI", value: "üü"},

	// $$ is a literal $.
	{in: "$$", value: "$"},
	{in: "$$$$", value: "$$"},
	{in: "$$HOST", value: "$HOST"},
	{in: "$$$HOST", value: "$db.example"},
	{in: "a$$b", value: "a$b"},
	{in: "${HOST}$$", value: "db.example$"},
	{in: "$${HOST}", value: "${HOST}"},
	{in: "$$1", value: "$1"},
	{in: "price: 5$$", value: "price: 5$"},

	// Defaults, used when unset or empty, expanded lazily.
	{in: "${MISSING:-def}", value: "def"},
	{in: "${EMPTY:-def}", value: "def"},
	{in: "${A:-def}", value: "a"},
	{in: "${MISSING:-}", value: ""},
	{in: "${MISSING:-${B}}", value: "b"},
	{in: "${MISSING:-$B}", value: "b"},
	{in: "${MISSING:-x$B-y}", value: "xb-y"},
	{in: "${MISSING:-${OTHER:-deep}}", value: "deep"},
	{in: "${MISSING:-${OTHER}}", value: "", missing: []string{"OTHER"}},
	{in: "${A:-${OTHER}}", value: "a"},
	{in: "${A:-${file:/not-read}}", value: "a"},
	{in: "${MISSING:-$$}", value: "$"},
	{in: "${MISSING:-$$B}", value: "$B"},
	{in: "${MISSING:-a:b-c}", value: "a:b-c"},
	{in: "${MISSING:-http://x:1/}", value: "http://x:1/"},
	{in: "${MISSING:-{x}", value: "{x"},
	{in: "${MISSING:-a}b}", value: "ab}"},
	{in: "${MISSING:-ü}", value: "ü"},
	{in: "${KEYGATE_DATA_DIR:-./data}/keygate.db", value: "./data/keygate.db"},

	// Missing variables: reported in order, once each; not errors.
	{in: "$M1 $M2 $M1 ${M3:-x} ${M2}", value: "   x ", missing: []string{"M1", "M2"}},
	{in: "${file}", value: "", missing: []string{"file"}},
	{in: "$file", value: "", missing: []string{"file"}},
	{in: "${file:-d}", value: "d"},

	// Values are never re-expanded.
	{in: "${DOLLAR}", value: "p$ss$$w${X}$HOST"},
	{in: "$DOLLAR$A", value: "p$ss$$w${X}$HOSTa"},
	{in: "${DOLLAR:-x}", value: "p$ss$$w${X}$HOST"},
	{in: "${MISSING:-$DOLLAR}", value: "p$ss$$w${X}$HOST"},

	// ${file:PATH}.
	{in: "${file:/run/secrets/db-url}", value: "postgres://u:p@h/db", files: []string{"/run/secrets/db-url"}},
	{in: "${file:${SECRETS_DIR}/db-url}", value: "postgres://u:p@h/db", files: []string{"/run/secrets/db-url"}},
	{in: "${file:$SECRETS_DIR/db-url}", value: "postgres://u:p@h/db", files: []string{"/run/secrets/db-url"}},
	{in: "${file:${NOPE:-/f}/none}", value: "v", files: []string{"/f/none"}},
	{in: "${file:/f/crlf}", value: "v", files: []string{"/f/crlf"}},
	{in: "${file:/f/two}", value: "v\n", files: []string{"/f/two"}},
	{in: "${file:/f/none}", value: "v", files: []string{"/f/none"}},
	{in: "${file:/f/empty}", value: "", files: []string{"/f/empty"}},
	{in: "${file:/f/onlynl}", value: "", files: []string{"/f/onlynl"}},
	{in: "${file:/f/cr}", value: "v\r", files: []string{"/f/cr"}},
	{in: "${file:/f/dollar}", value: "$HOST ${A}", files: []string{"/f/dollar"}},
	{in: "${file:/f/pem}", value: "-----BEGIN KEY-----\nabc\n-----END KEY-----", files: []string{"/f/pem"}},
	{in: "${file:/f/none}${file:/f/none}", value: "vv", files: []string{"/f/none"}},
	{in: "a=${file:$FDIR/none};b=${file:/f/crlf}", value: "a=v;b=v", files: []string{"/f/none", "/f/crlf"}},
	{in: "${MISSING:-${file:/f/none}}", value: "v", files: []string{"/f/none"}},
	{in: "${file:${NOPE}/x}", value: "", missing: []string{"NOPE"}},
	{in: "$NOPE${file:${NOPE}/x}", value: "", missing: []string{"NOPE"}},

	// Syntax errors.
	{in: "$", err: `"$" at offset 0 must start $NAME, ${NAME} or $$ (write $$ for a literal $)`},
	{in: "abc$", err: `"$" at offset 3 must start $NAME, ${NAME} or $$ (write $$ for a literal $)`},
	{in: "$1", err: `"$" at offset 0 must start $NAME, ${NAME} or $$ (write $$ for a literal $)`},
	{in: "cost: 5$ each", err: `"$" at offset 7 must start $NAME, ${NAME} or $$ (write $$ for a literal $)`},
	{in: "$-x", err: `"$" at offset 0 must start $NAME, ${NAME} or $$ (write $$ for a literal $)`},
	{in: "ü$ü", err: `"$" at offset 2 must start $NAME, ${NAME} or $$ (write $$ for a literal $)`},
	{in: "$$$", err: `"$" at offset 2 must start $NAME, ${NAME} or $$ (write $$ for a literal $)`},
	{in: "$M $", missing: []string{"M"}, err: `"$" at offset 3 must start $NAME, ${NAME} or $$ (write $$ for a literal $)`},
	{in: "${", err: `"${" at offset 0 is not closed by "}"`},
	{in: "${A", err: `"${" at offset 0 is not closed by "}"`},
	{in: "${A:", err: `"${" at offset 0 is not closed by "}"`},
	{in: "${A:-x", err: `"${" at offset 0 is not closed by "}"`},
	{in: "x${A:-${B}", err: `"${" at offset 1 is not closed by "}"`},
	{in: "${file:/x", err: `"${" at offset 0 is not closed by "}"`},
	{in: "${}", err: `"${}" at offset 0 has no variable name`},
	{in: "ab${}", err: `"${}" at offset 2 has no variable name`},
	{in: "${1A}", err: `"${" at offset 0: variable name must start with a letter or "_", not '1' at offset 2`},
	{in: "${ A}", err: `"${" at offset 0: variable name must start with a letter or "_", not ' ' at offset 2`},
	{in: "${ü}", err: `"${" at offset 0: variable name must start with a letter or "_", not byte 0xc3 at offset 2`},
	{in: "${A B}", err: `"${" at offset 0: unexpected ' ' at offset 3 after variable name A (want ${A} or ${A:-default})`},
	{in: "${A.B}", err: `"${" at offset 0: unexpected '.' at offset 3 after variable name A (want ${A} or ${A:-default})`},
	{in: "${Aü}", err: `"${" at offset 0: unexpected byte 0xc3 at offset 3 after variable name A (want ${A} or ${A:-default})`},
	{in: "${A:x}", err: `"${" at offset 0: unsupported operator after A; only ${NAME:-default} is supported`},
	{in: "${A:}", err: `"${" at offset 0: unsupported operator after A; only ${NAME:-default} is supported`},
	{in: "${A:=x}", err: `"${" at offset 0: unsupported operator after A; only ${NAME:-default} is supported`},
	{in: "${A:?x}", err: `"${" at offset 0: unsupported operator after A; only ${NAME:-default} is supported`},
	{in: "${A:+x}", err: `"${" at offset 0: unsupported operator after A; only ${NAME:-default} is supported`},
	{in: "${A-x}", err: `"${" at offset 0: unsupported operator after A; only ${NAME:-default} is supported`},
	{in: "${A=x}", err: `"${" at offset 0: unsupported operator after A; only ${NAME:-default} is supported`},
	{in: "${FILE:/x}", err: `"${" at offset 0: unsupported operator after FILE; only ${NAME:-default} is supported`},
	{in: "${file:}", err: `"${file:}" at offset 0 has an empty path`},
	{in: "${file:${EMPTY}}", err: `"${file:...}" at offset 0 has a path that expands to ""`},
	// Syntax inside an unused default is still checked.
	{in: "${A:-$}", err: `"$" at offset 5 must start $NAME, ${NAME} or $$ (write $$ for a literal $)`},
	{in: "${A:-${1}}", err: `"${" at offset 5: variable name must start with a letter or "_", not '1' at offset 7`},
	{in: "${A:-${file:}}", err: `"${file:}" at offset 5 has an empty path`},

	// File read failures name the path only.
	{in: "${file:/nope}", files: []string{"/nope"}, err: `read ${file:/nope}: open /nope: file does not exist`},
	{in: "${file:/f/none}${file:$FDIR/nope}", files: []string{"/f/none", "/f/nope"}, err: `read ${file:/f/nope}: open /f/nope: file does not exist`},
}

func TestExpand(t *testing.T) {
	for _, tc := range expandCases {
		t.Run(tc.in, func(t *testing.T) {
			res, err := Expand(tc.in, testLookup, testReadFile)
			if tc.err != "" {
				if err == nil {
					t.Fatalf("Expand(%q) = %q, want error %q", tc.in, res.Value, tc.err)
				}
				if err.Error() != tc.err {
					t.Errorf("Expand(%q) error\n got: %s\nwant: %s", tc.in, err, tc.err)
				}
				if res.Value != "" {
					t.Errorf("Expand(%q) returned value %q with an error", tc.in, res.Value)
				}
			} else {
				if err != nil {
					t.Fatalf("Expand(%q) error: %v", tc.in, err)
				}
				if res.Value != tc.value {
					t.Errorf("Expand(%q).Value = %q, want %q", tc.in, res.Value, tc.value)
				}
			}
			if !reflect.DeepEqual(res.Missing, tc.missing) {
				t.Errorf("Expand(%q).Missing = %#v, want %#v", tc.in, res.Missing, tc.missing)
			}
			if !reflect.DeepEqual(res.Files, tc.files) {
				t.Errorf("Expand(%q).Files = %#v, want %#v", tc.in, res.Files, tc.files)
			}
		})
	}
}

func TestExpandErrorTypes(t *testing.T) {
	_, err := Expand("ab${A B}", testLookup, testReadFile)
	var se *SyntaxError
	if !errors.As(err, &se) || se.Offset != 2 {
		t.Errorf("want *SyntaxError at offset 2, got %#v", err)
	}

	_, err = Expand("x${file:/nope}", testLookup, testReadFile)
	var fe *FileError
	if !errors.As(err, &fe) || fe.Offset != 1 || fe.Path != "/nope" {
		t.Errorf("want *FileError at offset 1 for /nope, got %#v", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("FileError does not unwrap to fs.ErrNotExist: %v", err)
	}
}

func TestExpandNilFuncs(t *testing.T) {
	res, err := Expand("$A${B:-b}", nil, nil)
	if err != nil || res.Value != "b" || !reflect.DeepEqual(res.Missing, []string{"A"}) {
		t.Errorf("nil lookup: got %#v, %v", res, err)
	}
	_, err = Expand("${file:/f/none}", testLookup, nil)
	want := `"${file:...}" at offset 0: file placeholders are not allowed here`
	if err == nil || err.Error() != want {
		t.Errorf("nil readFile: got %v, want %s", err, want)
	}
	// An unused ${file:} needs no reader.
	if res, err := Expand("${A:-${file:/x}}", testLookup, nil); err != nil || res.Value != "a" {
		t.Errorf("unused file with nil readFile: got %#v, %v", res, err)
	}
}

func TestExpandNestingLimit(t *testing.T) {
	nest := func(n int) string {
		return strings.Repeat("${U:-", n) + "$A" + strings.Repeat("}", n)
	}
	if res, err := Expand(nest(maxDepth), testLookup, testReadFile); err != nil || res.Value != "a" {
		t.Errorf("depth %d: got %#v, %v", maxDepth, res, err)
	}
	_, err := Expand(nest(maxDepth+1), testLookup, testReadFile)
	want := `"${" at offset 160 is nested more than 32 levels deep`
	if err == nil || err.Error() != want {
		t.Errorf("depth %d: got %v, want %s", maxDepth+1, err, want)
	}
}

// Error messages must never reveal variable values or file contents, because
// either may be a secret.
func TestExpandErrorsNeverContainSecrets(t *testing.T) {
	const secret, content = "S3cr3t-VALUE-x9", "F1le-SECRET-q7"
	lookup := func(name string) (string, bool) { return secret, true }
	readFile := func(string) ([]byte, error) { return []byte(content), nil }
	for _, tc := range expandCases {
		for _, in := range []string{tc.in, "$A${file:/x}" + tc.in, "${file:/x}$A${A:-" + tc.in} {
			_, err := Expand(in, lookup, readFile)
			if err != nil && (strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), content)) {
				t.Errorf("Expand(%q) error leaks a secret: %v", in, err)
			}
		}
	}
}

func TestHas(t *testing.T) {
	for in, want := range map[string]bool{
		"":          false,
		"plain":     false,
		"$":         false,
		"a$":        false,
		"$1":        false,
		"$ $-$.":    false,
		"ü$ü":       false,
		"$A":        true,
		"x$_":       true,
		"${":        true,
		"$$":        true,
		"$1$A":      true,
		"a:$HOST:8": true,
	} {
		if got := Has(in); got != want {
			t.Errorf("Has(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestExpandNoDollarDoesNotAllocate(t *testing.T) {
	s := strings.Repeat("https://app.example.com/callback ", 4)
	allocs := testing.AllocsPerRun(100, func() {
		res, err := Expand(s, testLookup, testReadFile)
		if err != nil || res.Value != s {
			t.Fatal("unexpected result")
		}
		if Has(s) {
			t.Fatal("Has reported a placeholder")
		}
	})
	if allocs != 0 {
		t.Errorf("Expand without $ allocates %v times per call, want 0", allocs)
	}
}

func BenchmarkExpand(b *testing.B) {
	b.Run("literal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Expand("https://app.example.com/oauth/callback", testLookup, testReadFile)
		}
	})
	b.Run("placeholders", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Expand("https://${HOST}:${PORT:-443}/oauth/$A", testLookup, testReadFile)
		}
	})
}
