// Package placeholder expands $NAME, ${NAME}, ${NAME:-default}, $$ and
// ${file:PATH} inside one already-parsed YAML scalar.
//
// It works on scalars, never on raw file text, so a substituted value can
// never inject YAML structure. Variable values and file contents are inserted
// verbatim and never re-expanded, so a password containing "$" is safe.
//
// Errors refer to byte offsets and variable names only: they never contain
// variable values or file contents (both may be secrets), and they do not echo
// the input beyond a single character.
package placeholder

import (
	"fmt"
	"strings"
)

// Lookup returns a variable's value and whether it is set.
type Lookup func(name string) (string, bool)

// ReadFile reads the target of ${file:PATH}.
type ReadFile func(path string) ([]byte, error)

// Result is the outcome of Expand.
type Result struct {
	Value   string   // the expanded value ("" parts for missing variables)
	Missing []string // names of unset variables without default, in order of appearance, unique
	Files   []string // paths read through ${file:PATH}, in order, unique
}

// SyntaxError is a malformed placeholder. Offset is the byte offset in the
// expanded string of the "$" that starts the offending placeholder, so callers
// can add their own position prefix. Msg is the complete message (it already
// mentions the offset).
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string { return e.Msg }

// FileError is a failed ${file:PATH} read. Paths are not secret, so the
// message names the path; Err is the reader's error, unwrapped for errors.Is.
// A ReadFile implementation must therefore not put file contents in its errors.
type FileError struct {
	Offset int // offset of the "$" of the ${file:...} placeholder
	Path   string
	Err    error
}

func (e *FileError) Error() string { return "read ${file:" + e.Path + "}: " + e.Err.Error() }

func (e *FileError) Unwrap() error { return e.Err }

// maxDepth bounds the nesting of ${...} so hostile input cannot recurse
// without limit; real configs nest two or three levels at most.
const maxDepth = 32

// Expand expands s. A syntax error or a failed file read returns a non-nil error;
// missing variables are NOT errors (they are listed in Result.Missing so the caller
// can report them all with positions).
//
// A nil lookup treats every variable as unset; a nil readFile makes every
// ${file:PATH} that would be read an error. Defaults are evaluated lazily like
// the shell: variables and files inside a default that is not used are neither
// reported missing nor read (but their syntax is still checked).
//
// On error, Value is empty while Missing and Files hold what was found before
// the error; Files includes the path whose read failed, so a watcher can wait
// for it to appear.
func Expand(s string, lookup Lookup, readFile ReadFile) (Result, error) {
	// Fast path: most scalars have no "$"; this must not allocate.
	if strings.IndexByte(s, '$') < 0 {
		return Result{Value: s}, nil
	}
	e := expander{s: s, lookup: lookup, readFile: readFile}
	var b strings.Builder
	b.Grow(len(s))
	if _, err := e.expand(&b, 0, -1, true, 0); err != nil {
		return Result{Missing: e.missing, Files: e.files}, err
	}
	return Result{Value: b.String(), Missing: e.missing, Files: e.files}, nil
}

// Has reports whether s contains any placeholder syntax ($ followed by name, { or $).
// A "$" followed by anything else is not a placeholder but is a syntax error
// for Expand, so callers that must reject it should call Expand (it is as
// cheap as Has on strings without "$").
func Has(s string) bool {
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 || i+1 >= len(s) {
			return false
		}
		if c := s[i+1]; c == '{' || c == '$' || isNameStart(c) {
			return true
		}
		s = s[i+1:]
	}
}

type expander struct {
	s        string
	lookup   Lookup
	readFile ReadFile
	missing  []string
	files    []string
	// misses counts every missing-variable occurrence (missing is deduplicated),
	// so a ${file:PATH} can tell whether its own PATH had a missing variable.
	misses int
}

// expand scans s from i. At top level (open < 0) it runs to the end of s; inside
// a ${...} that started at offset open it stops at the closing "}" and returns
// its index. Output is written to b only when active, which is how unused
// defaults are syntax-checked without being evaluated.
func (e *expander) expand(b *strings.Builder, i, open int, active bool, depth int) (int, error) {
	s := e.s
	for i < len(s) {
		// Copy the literal run up to the next "$" (or "}" when nested) at once.
		j := i
		for j < len(s) && s[j] != '$' && (open < 0 || s[j] != '}') {
			j++
		}
		if active {
			b.WriteString(s[i:j])
		}
		i = j
		if i >= len(s) {
			break
		}
		if s[i] == '}' {
			return i, nil
		}
		// s[i] == '$'
		if i+1 >= len(s) {
			return 0, dollarError(i)
		}
		switch c := s[i+1]; {
		case c == '$':
			if active {
				b.WriteByte('$')
			}
			i += 2
		case isNameStart(c):
			k := scanName(s, i+1)
			if active {
				e.variable(b, s[i+1:k])
			}
			i = k
		case c == '{':
			end, err := e.brace(b, i, active, depth+1)
			if err != nil {
				return 0, err
			}
			i = end
		default:
			return 0, dollarError(i)
		}
	}
	if open >= 0 {
		return 0, syntaxErrorf(open, `"${" at offset %d is not closed by "}"`, open)
	}
	return i, nil
}

// brace handles the ${...} starting at s[start] == '$' and returns the index
// just after its closing "}".
func (e *expander) brace(b *strings.Builder, start int, active bool, depth int) (int, error) {
	s := e.s
	if depth > maxDepth {
		return 0, syntaxErrorf(start, `"${" at offset %d is nested more than %d levels deep`, start, maxDepth)
	}
	i := start + 2
	if i >= len(s) {
		return 0, syntaxErrorf(start, `"${" at offset %d is not closed by "}"`, start)
	}
	if s[i] == '}' {
		return 0, syntaxErrorf(start, `"${}" at offset %d has no variable name`, start)
	}
	if !isNameStart(s[i]) {
		return 0, syntaxErrorf(start, `"${" at offset %d: variable name must start with a letter or "_", not %s`,
			start, charAt(s, i))
	}
	j := scanName(s, i)
	name := s[i:j]
	if j >= len(s) {
		return 0, syntaxErrorf(start, `"${" at offset %d is not closed by "}"`, start)
	}
	switch s[j] {
	case '}':
		if active {
			e.variable(b, name)
		}
		return j + 1, nil
	case ':':
		if j+1 < len(s) && s[j+1] == '-' {
			return e.withDefault(b, start, name, j+2, active, depth)
		}
		if name == "file" {
			return e.file(b, start, j+1, active, depth)
		}
		if j+1 >= len(s) {
			return 0, syntaxErrorf(start, `"${" at offset %d is not closed by "}"`, start)
		}
		return 0, operatorError(start, name)
	case '-', '=', '?', '+':
		return 0, operatorError(start, name)
	default:
		return 0, syntaxErrorf(start, `"${" at offset %d: unexpected %s after variable name %s (want ${%s} or ${%s:-default})`,
			start, charAt(s, j), name, name, name)
	}
}

// withDefault handles ${NAME:-default}; i is the start of the default text.
// Like the shell, the default applies when NAME is unset or empty.
func (e *expander) withDefault(b *strings.Builder, start int, name string, i int, active bool, depth int) (int, error) {
	useDefault := false
	if active {
		v, ok := e.get(name)
		if ok && v != "" {
			b.WriteString(v)
		} else {
			useDefault = true
		}
	}
	end, err := e.expand(b, i, start, useDefault, depth)
	if err != nil {
		return 0, err
	}
	return end + 1, nil
}

// file handles ${file:PATH}; i is the start of PATH, which may itself contain
// placeholders. The file is not read when PATH has a missing variable (that is
// already reported through Missing) or when the placeholder is inactive.
func (e *expander) file(b *strings.Builder, start, i int, active bool, depth int) (int, error) {
	var pb strings.Builder
	missesBefore := e.misses
	end, err := e.expand(&pb, i, start, active, depth)
	if err != nil {
		return 0, err
	}
	if end == i {
		return 0, syntaxErrorf(start, `"${file:}" at offset %d has an empty path`, start)
	}
	if !active || e.misses > missesBefore {
		return end + 1, nil
	}
	path := pb.String()
	if path == "" {
		return 0, syntaxErrorf(start, `"${file:...}" at offset %d has a path that expands to ""`, start)
	}
	if e.readFile == nil {
		return 0, syntaxErrorf(start, `"${file:...}" at offset %d: file placeholders are not allowed here`, start)
	}
	if !contains(e.files, path) {
		e.files = append(e.files, path)
	}
	data, err := e.readFile(path)
	if err != nil {
		return 0, &FileError{Offset: start, Path: path, Err: err}
	}
	// Secret files written by echo or templates end in a newline that is not
	// part of the secret.
	n := len(data)
	if n > 0 && data[n-1] == '\n' {
		n--
		if n > 0 && data[n-1] == '\r' {
			n--
		}
	}
	b.Write(data[:n])
	return end + 1, nil
}

// variable writes the value of an active $NAME / ${NAME}, recording it as
// missing when unset.
func (e *expander) variable(b *strings.Builder, name string) {
	v, ok := e.get(name)
	if !ok {
		e.misses++
		if !contains(e.missing, name) {
			e.missing = append(e.missing, name)
		}
		return
	}
	b.WriteString(v)
}

func (e *expander) get(name string) (string, bool) {
	if e.lookup == nil {
		return "", false
	}
	return e.lookup(name)
}

func dollarError(off int) error {
	return syntaxErrorf(off, `"$" at offset %d must start $NAME, ${NAME} or $$ (write $$ for a literal $)`, off)
}

func operatorError(off int, name string) error {
	return syntaxErrorf(off, `"${" at offset %d: unsupported operator after %s; only ${NAME:-default} is supported`, off, name)
}

func syntaxErrorf(off int, format string, args ...any) error {
	return &SyntaxError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// charAt quotes the single byte at s[i] for an error message; one character
// of the input is enough to point at the problem without echoing it.
func charAt(s string, i int) string {
	c := s[i]
	if c < 0x20 || c >= 0x7f {
		return fmt.Sprintf("byte 0x%02x at offset %d", c, i)
	}
	return fmt.Sprintf("%q at offset %d", c, i)
}

func isNameStart(c byte) bool {
	return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func isNameChar(c byte) bool { return isNameStart(c) || ('0' <= c && c <= '9') }

// scanName returns the end of the name that starts at s[i].
func scanName(s string, i int) int {
	for i < len(s) && isNameChar(s[i]) {
		i++
	}
	return i
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
