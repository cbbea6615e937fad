package scim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Filter limits: a filter is read from a URL or a body a client controls,
// so its size and nesting are bounded before anything is built from it.
const (
	MaxFilterLength = 4096
	MaxFilterDepth  = 32
	maxFilterTerms  = 256
)

// Expr is a parsed filter (RFC 7644 §3.4.2.2): *And, *Or, *Not, *Compare,
// *Present or *ValuePath.
type Expr interface{ isExpr() }

// And and Or join two filters; "and" binds tighter than "or".
type And struct{ Left, Right Expr }

// Or is the disjunction of two filters.
type Or struct{ Left, Right Expr }

// Not negates a parenthesised filter.
type Not struct{ X Expr }

// Compare is "attrPath op value". Value is a string, float64, bool or nil
// (null), decoded as JSON.
type Compare struct {
	Path  AttrPath
	Op    string // eq ne co sw ew gt ge lt le, lower case
	Value any
}

// Present is "attrPath pr".
type Present struct{ Path AttrPath }

// ValuePath is "attrPath[valFilter]": some value of the multi-valued
// attribute matches Filter, whose paths are relative to that value.
type ValuePath struct {
	Path   AttrPath
	Filter Expr
}

func (*And) isExpr()       {}
func (*Or) isExpr()        {}
func (*Not) isExpr()       {}
func (*Compare) isExpr()   {}
func (*Present) isExpr()   {}
func (*ValuePath) isExpr() {}

// AttrPath is "[URN:]attr[.sub]". Names keep the case they were written
// in; schemas resolve them case-insensitively.
type AttrPath struct {
	URN  string // "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", or ""
	Attr string
	Sub  string
}

func (p AttrPath) String() string {
	s := p.Attr
	if p.URN != "" {
		s = p.URN + ":" + s
	}
	if p.Sub != "" {
		s += "." + p.Sub
	}
	return s
}

// Operators (RFC 7644 §3.4.2.2, table 3).
var compareOps = map[string]bool{"eq": true, "ne": true, "co": true, "sw": true, "ew": true, "gt": true, "ge": true, "lt": true, "le": true}

// ParseFilter parses a SCIM filter. Errors are *Error with scimType
// invalidFilter and say where the filter went wrong.
func ParseFilter(s string) (Expr, error) {
	if len(s) > MaxFilterLength {
		return nil, Errorf(400, InvalidFilter, "the filter is %d bytes long; at most %d are accepted", len(s), MaxFilterLength)
	}
	p := &parser{src: s}
	if err := p.lex(); err != nil {
		return nil, err
	}
	e, err := p.filter(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		return nil, p.errAt(t, "unexpected %s", t.describe())
	}
	return e, nil
}

type tokKind int

const (
	tokEOF  tokKind = iota
	tokWord         // attribute path, operator, keyword, true/false/null, number
	tokString
	tokLParen
	tokRParen
	tokLBracket
	tokRBracket
)

type token struct {
	kind tokKind
	text string // the word, or the decoded string
	pos  int    // byte offset in the filter
}

func (t token) describe() string {
	switch t.kind {
	case tokEOF:
		return "end of filter"
	case tokString:
		return fmt.Sprintf("string %q", t.text)
	case tokWord:
		return fmt.Sprintf("%q", t.text)
	}
	return fmt.Sprintf("%q", t.text)
}

type parser struct {
	src   string
	toks  []token
	i     int
	terms int
}

func (p *parser) errAt(t token, format string, args ...any) error {
	return Errorf(400, InvalidFilter, "%s at position %d of the filter", fmt.Sprintf(format, args...), t.pos+1)
}

// lex splits the filter into tokens. Strings are JSON strings, decoded by
// encoding/json; everything else is a run of characters up to a space or a
// bracket.
func (p *parser) lex() error {
	s := p.src
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')' || c == '[' || c == ']':
			kind := map[byte]tokKind{'(': tokLParen, ')': tokRParen, '[': tokLBracket, ']': tokRBracket}[c]
			p.toks = append(p.toks, token{kind: kind, text: string(c), pos: i})
			i++
		case c == '"':
			end := i + 1
			for end < len(s) && s[end] != '"' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(s) {
				return Errorf(400, InvalidFilter, "unterminated string starting at position %d of the filter", i+1)
			}
			var v string
			dec := json.NewDecoder(bytes.NewReader([]byte(s[i : end+1])))
			if err := dec.Decode(&v); err != nil {
				return Errorf(400, InvalidFilter, "invalid string at position %d of the filter", i+1)
			}
			p.toks = append(p.toks, token{kind: tokString, text: v, pos: i})
			i = end + 1
		default:
			end := i
			for end < len(s) && !strings.ContainsRune(" \t\n\r()[]\"", rune(s[end])) {
				end++
			}
			p.toks = append(p.toks, token{kind: tokWord, text: s[i:end], pos: i})
			i = end
		}
		if len(p.toks) > 4*maxFilterTerms {
			return Errorf(400, InvalidFilter, "the filter has too many terms; at most %d comparisons are accepted", maxFilterTerms)
		}
	}
	return nil
}

func (p *parser) peek() token {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return token{kind: tokEOF, pos: len(p.src)}
}

func (p *parser) next() token {
	t := p.peek()
	if p.i < len(p.toks) {
		p.i++
	}
	return t
}

func (p *parser) keyword(t token, kw string) bool {
	return t.kind == tokWord && strings.EqualFold(t.text, kw)
}

// filter = term *("or" term)
func (p *parser) filter(depth int) (Expr, error) {
	if depth > MaxFilterDepth {
		return nil, p.errAt(p.peek(), "the filter nests deeper than %d levels", MaxFilterDepth)
	}
	return p.chain(depth, "or", p.term, func(l, r Expr) Expr { return &Or{l, r} })
}

// term = factor *("and" factor)
func (p *parser) term(depth int) (Expr, error) {
	return p.chain(depth, "and", p.factor, func(l, r Expr) Expr { return &And{l, r} })
}

// chain parses operand *(kw operand), joining left to right: "or" and
// "and" are both left-associative, differing only in what they join.
func (p *parser) chain(depth int, kw string, operand func(int) (Expr, error), join func(l, r Expr) Expr) (Expr, error) {
	left, err := operand(depth)
	if err != nil {
		return nil, err
	}
	for p.keyword(p.peek(), kw) {
		p.next()
		right, err := operand(depth)
		if err != nil {
			return nil, err
		}
		left = join(left, right)
	}
	return left, nil
}

// factor = "not" "(" filter ")" / "(" filter ")" / attrPath "[" filter "]" / attrExp
func (p *parser) factor(depth int) (Expr, error) {
	t := p.peek()
	switch {
	case p.keyword(t, "not"):
		p.next()
		if open := p.next(); open.kind != tokLParen {
			return nil, p.errAt(open, `"not" must be followed by "(", not %s`, open.describe())
		}
		x, err := p.group(depth, tokRParen)
		if err != nil {
			return nil, err
		}
		return &Not{x}, nil
	case t.kind == tokLParen:
		p.next()
		return p.group(depth, tokRParen)
	case t.kind != tokWord:
		return nil, p.errAt(t, "expected an attribute, \"not\" or \"(\", found %s", t.describe())
	}
	p.next()
	path, err := parseAttrPath(t.text)
	if err != nil {
		return nil, p.errAt(t, "%s", err.Detail)
	}
	if p.peek().kind == tokLBracket {
		p.next()
		if path.Sub != "" {
			return nil, p.errAt(t, "a value filter applies to an attribute, not to the sub-attribute %q", path.String())
		}
		inner, err := p.group(depth, tokRBracket)
		if err != nil {
			return nil, err
		}
		if containsValuePath(inner) {
			return nil, p.errAt(t, "value filters cannot nest")
		}
		return &ValuePath{Path: path, Filter: inner}, nil
	}
	return p.attrExp(path, t)
}

func (p *parser) group(depth int, closer tokKind) (Expr, error) {
	x, err := p.filter(depth + 1)
	if err != nil {
		return nil, err
	}
	if end := p.next(); end.kind != closer {
		want := map[tokKind]string{tokRParen: `")"`, tokRBracket: `"]"`}[closer]
		return nil, p.errAt(end, "expected %s, found %s", want, end.describe())
	}
	return x, nil
}

func (p *parser) attrExp(path AttrPath, at token) (Expr, error) {
	p.terms++
	if p.terms > maxFilterTerms {
		return nil, p.errAt(at, "the filter has more than %d comparisons", maxFilterTerms)
	}
	opTok := p.next()
	if opTok.kind != tokWord {
		return nil, p.errAt(opTok, "expected an operator after %q, found %s", path.String(), opTok.describe())
	}
	op := strings.ToLower(opTok.text)
	if op == "pr" {
		return &Present{Path: path}, nil
	}
	if !compareOps[op] {
		return nil, p.errAt(opTok, "unknown operator %q (want eq, ne, co, sw, ew, gt, ge, lt, le or pr)", opTok.text)
	}
	v := p.next()
	switch v.kind {
	case tokString:
		return &Compare{Path: path, Op: op, Value: v.text}, nil
	case tokWord:
		switch v.text {
		case "true":
			return &Compare{Path: path, Op: op, Value: true}, nil
		case "false":
			return &Compare{Path: path, Op: op, Value: false}, nil
		case "null":
			return &Compare{Path: path, Op: op, Value: nil}, nil
		}
		var n float64
		if err := json.Unmarshal([]byte(v.text), &n); err == nil && v.text != "" && (v.text[0] == '-' || (v.text[0] >= '0' && v.text[0] <= '9')) {
			return &Compare{Path: path, Op: op, Value: n}, nil
		}
	}
	return nil, p.errAt(v, "expected a value (a string in double quotes, a number, true, false or null) after %q, found %s", path.String()+" "+op, v.describe())
}

func containsValuePath(e Expr) bool {
	switch x := e.(type) {
	case *ValuePath:
		return true
	case *And:
		return containsValuePath(x.Left) || containsValuePath(x.Right)
	case *Or:
		return containsValuePath(x.Left) || containsValuePath(x.Right)
	case *Not:
		return containsValuePath(x.X)
	}
	return false
}

// parseAttrPath parses "[URN:]ATTRNAME[.subAttr]" (RFC 7644 §3.10).
func parseAttrPath(s string) (AttrPath, *Error) {
	var p AttrPath
	rest := s
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		p.URN, rest = s[:i], s[i+1:]
		if !strings.HasPrefix(strings.ToLower(p.URN), "urn:") {
			return p, Errorf(400, InvalidFilter, "%q is not an attribute path (a schema prefix starts with urn:)", s)
		}
	}
	attr, sub, hasSub := strings.Cut(rest, ".")
	if !validName(attr) || (hasSub && !validName(sub)) {
		return p, Errorf(400, InvalidFilter, "%q is not an attribute path", s)
	}
	p.Attr, p.Sub = attr, sub
	return p, nil
}

// validName is ATTRNAME = ALPHA *(nameChar); "$ref" is the one name with
// a "$" (RFC 7643 §2.1).
func validName(s string) bool {
	if s == "$ref" {
		return true
	}
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlpha(c) && !(c >= '0' && c <= '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

// Format writes e back as a filter, every compound in parentheses, so the
// tree's shape is visible (logs, tests).
func Format(e Expr) string {
	switch x := e.(type) {
	case *And:
		return "(" + Format(x.Left) + " and " + Format(x.Right) + ")"
	case *Or:
		return "(" + Format(x.Left) + " or " + Format(x.Right) + ")"
	case *Not:
		return "not(" + Format(x.X) + ")"
	case *Present:
		return x.Path.String() + " pr"
	case *ValuePath:
		return x.Path.String() + "[" + Format(x.Filter) + "]"
	case *Compare:
		v, _ := json.Marshal(x.Value)
		return x.Path.String() + " " + x.Op + " " + string(v)
	}
	return "?"
}
