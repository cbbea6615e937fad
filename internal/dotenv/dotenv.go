// Package dotenv parses env files (env/staging.env) in dotenv syntax:
//
//	# comment
//	export PUBLIC_BASE_URL=https://id.example.com   # inline comment
//	WEB_APP_SECRET='literal, no escapes'
//	TOKEN_SIGNING_KEY="-----BEGIN PRIVATE KEY-----
//	...
//	-----END PRIVATE KEY-----"
//
// Values are literal: there is no variable expansion inside env files, so a
// "$" in a secret is just a "$". Placeholders are expanded once, in the
// config.d scalars that use these variables; expanding here as well would
// expand twice and make "$" in secrets unsafe.
//
// Unquoted values are trimmed and end at a "#" that follows a space or tab.
// Single-quoted values are literal. Double-quoted values support the escapes
// \n \r \t \" \\ \$. Both quoted forms may span lines (PEM keys). CRLF line
// endings (also inside quoted values) read as LF, and a UTF-8 BOM is ignored.
//
// A key set twice in one file is an error rather than an override, because in
// config-as-code a duplicate is almost always a mistake.
//
// Error messages name the file, line, column and key, never a value: values
// are often secrets, and errors end up in logs and CI output.
package dotenv

import (
	"errors"
	"fmt"
	"strings"
)

// Var is one assignment.
type Var struct {
	Name  string
	Value string
	Line  int // 1-based line where the assignment starts
}

// maxErrors stops a binary or badly mangled file from producing an error
// per line; fifty is more than anyone reads.
const maxErrors = 50

// Parse parses one env file's bytes; filename is used only in error messages.
// It returns every error at once, joined (errors.Join), each as "FILE:LINE: message".
// On error the returned Vars are the assignments that parsed cleanly.
func Parse(filename string, data []byte) ([]Var, error) {
	s := strings.TrimPrefix(string(data), "\uFEFF")
	if strings.Contains(s, "\r\n") {
		s = strings.ReplaceAll(s, "\r\n", "\n")
	}
	p := parser{file: filename, s: s, line: 1, seen: map[string]int{}}
	p.parse()
	return p.vars, errors.Join(p.errs...)
}

type parser struct {
	file      string
	s         string
	i         int // read position in s
	line      int // 1-based line of s[i]
	lineStart int // index in s where the current line starts, for columns
	vars      []Var
	seen      map[string]int // key -> line of its assignment
	errs      []error
}

func (p *parser) parse() {
	for p.i < len(p.s) {
		if len(p.errs) >= maxErrors {
			p.errs = append(p.errs, fmt.Errorf("%s: too many errors", p.file))
			return
		}
		line := p.line
		end := p.eol(p.i)
		text := p.s[p.i:end]
		body := strings.TrimLeft(text, " \t")
		if body == "" || body[0] == '#' {
			p.newline(end)
			continue
		}
		eq := strings.IndexByte(text, '=')
		if eq < 0 {
			p.errorf(line, `missing "=" (want KEY=value)`)
			p.newline(end)
			continue
		}

		key, keyOK := p.key(line, text[:eq])
		name := key // how value errors refer to the assignment
		if !keyOK {
			name = ""
		}
		p.i += eq + 1
		value, ok := p.value(name)
		if !keyOK || !ok {
			continue
		}
		if prev, dup := p.seen[key]; dup {
			p.errorf(line, "%s already set at line %d", key, prev)
			continue
		}
		p.seen[key] = line
		p.vars = append(p.vars, Var{Name: key, Value: value, Line: line})
	}
}

// key validates the text before "=" (an optional "export " prefix, then the
// key, with surrounding whitespace). An invalid key is not echoed: a line
// without a proper key may be a pasted secret.
func (p *parser) key(line int, text string) (string, bool) {
	col := len(text) - len(strings.TrimLeft(text, " \t")) // bytes before the key
	k := strings.TrimRight(text[col:], " \t")
	if rest, ok := strings.CutPrefix(k, "export"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
		trimmed := strings.TrimLeft(rest, " \t")
		col += len(k) - len(trimmed)
		k = trimmed
	}
	if k == "" {
		p.errorf(line, `missing key before "="`)
		return "", false
	}
	for j := 0; j < len(k); j++ {
		c := k[j]
		if c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || (j > 0 && '0' <= c && c <= '9') {
			continue
		}
		p.errorf(line, "invalid key at column %d: keys must match [A-Za-z_][A-Za-z0-9_]*", col+j+1)
		return "", false
	}
	return k, true
}

// value parses the value that starts at p.i (just after "=") and leaves p.i at
// the start of the next line. name is the key for messages ("" if invalid).
func (p *parser) value(name string) (string, bool) {
	start := p.i
	p.skipBlanks()
	if p.i >= len(p.s) || p.s[p.i] == '\n' {
		p.newline(p.i)
		return "", true
	}
	switch p.s[p.i] {
	case '\'':
		return p.singleQuoted(name)
	case '"':
		return p.doubleQuoted(name)
	}
	// Unquoted: up to the end of the line or a "#" after a blank. The blanks
	// skipped after "=" count, so "KEY= # note" is empty.
	end := p.eol(p.i)
	v := p.s[p.i:end]
	for j := 0; j < len(v); j++ {
		if v[j] == '#' && (j > 0 && (v[j-1] == ' ' || v[j-1] == '\t') || j == 0 && p.i > start) {
			v = v[:j]
			break
		}
	}
	p.newline(end)
	return strings.TrimRight(v, " \t"), true
}

func (p *parser) singleQuoted(name string) (string, bool) {
	open := p.line
	j := strings.IndexByte(p.s[p.i+1:], '\'')
	if j < 0 {
		p.errorf(open, "%ssingle quote opened on this line is never closed", prefix(name))
		p.i = len(p.s)
		return "", false
	}
	v := p.s[p.i+1 : p.i+1+j]
	for k := p.i; k < p.i+1+j; k++ {
		if p.s[k] == '\n' {
			p.line++
			p.lineStart = k + 1
		}
	}
	p.i += j + 2
	return v, p.afterQuote(name)
}

func (p *parser) doubleQuoted(name string) (string, bool) {
	open := p.line
	var b strings.Builder
	ok := true
	for i := p.i + 1; i < len(p.s); i++ {
		c := p.s[i]
		switch c {
		case '"':
			p.i = i + 1
			return b.String(), p.afterQuote(name) && ok
		case '\n':
			p.line++
			p.lineStart = i + 1
		case '\\':
			if i+1 >= len(p.s) {
				continue // unterminated; reported below
			}
			i++
			switch p.s[i] {
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case '"', '\\', '$':
				c = p.s[i]
			default:
				// Report only the first bad escape of a value; the rest are
				// usually the same mistake.
				if ok {
					p.errorf(p.line, `%sinvalid escape at column %d (double-quoted values support \n \r \t \" \\ \$)`,
						prefix(name), i-p.lineStart)
				}
				ok = false
				if p.s[i] == '\n' {
					p.line++
					p.lineStart = i + 1
				}
				continue
			}
		}
		b.WriteByte(c)
	}
	p.errorf(open, "%sdouble quote opened on this line is never closed", prefix(name))
	p.i = len(p.s)
	return "", false
}

// afterQuote accepts only blanks or a " # comment" after a closing quote.
func (p *parser) afterQuote(name string) bool {
	start := p.i
	p.skipBlanks()
	end := p.eol(p.i)
	if p.i == end || p.s[p.i] == '#' && p.i > start {
		p.newline(end)
		return true
	}
	p.errorf(p.line, "%sunexpected text after the closing quote at column %d", prefix(name), p.i-p.lineStart+1)
	p.newline(end)
	return false
}

func (p *parser) skipBlanks() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// eol returns the index of the "\n" ending the line at i, or len(s).
func (p *parser) eol(i int) int {
	if j := strings.IndexByte(p.s[i:], '\n'); j >= 0 {
		return i + j
	}
	return len(p.s)
}

// newline moves past the line ending at end (a "\n" or the end of input).
func (p *parser) newline(end int) {
	p.i = end
	if end < len(p.s) {
		p.i++
		p.line++
		p.lineStart = p.i
	}
}

func (p *parser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s:%d: %s", p.file, line, fmt.Sprintf(format, args...)))
}

func prefix(name string) string {
	if name == "" {
		return ""
	}
	return name + ": "
}
