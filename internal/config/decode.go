package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/internal/placeholder"
	"github.com/keygate/keygate/internal/secret"
	"github.com/keygate/keygate/internal/suggest"
)

// decoder turns yaml.Node trees into the schema types, strictly: unknown and
// duplicate keys are errors, placeholders are expanded inside each scalar
// (never in the raw text, so a value cannot inject YAML), and every value's
// position is remembered so later checks can point at it.
type decoder struct {
	file   string
	expand func(string) (placeholder.Result, error)
	// s receives the errors, value positions and failed paths of what is
	// being decoded: the current entry, or the file itself outside entries.
	s *sink
	// missing collects unset variables of the entry being decoded; the
	// loader reports them only if the service role uses that entry.
	missing *[]missingVar
}

// sink is what decoding one entry (or the parts of a file outside entries)
// produced: its errors, where each of its values was written, and which key
// paths could not be decoded.
type sink struct {
	file string // the config file, for positions
	errs Errors
	// pos lists key path → where its value was written, in decoding order;
	// a later record for the same path wins. A slice, not a map: positions
	// are only looked up when an error is reported or for a few "is this
	// key set" checks, so recording must be cheap.
	pos []posRec
	// posIndex indexes pos for large entries; built on first lookup.
	posIndex map[string]Position
	// failed marks key paths whose value could not be decoded, so later
	// checks do not pile "is required" on top of the real error.
	failed map[string]bool
	// expanded maps the key paths whose value came through a placeholder
	// to the text as written: errors quote that text, never the value,
	// which came from the environment or a file and may be a secret.
	expanded map[string]string
}

func (s *sink) setExpanded(path, raw string) {
	if s.expanded == nil {
		s.expanded = map[string]string{}
	}
	s.expanded[path] = raw
}

// shown quotes v, the value at path, for an error message: as written in
// the config file if it came through a placeholder (the value itself is
// never shown), else as it is.
func shown(expanded map[string]string, path, v string) string {
	if raw, ok := expanded[path]; ok {
		return fmt.Sprintf("%q (value not shown)", raw)
	}
	return strconv.Quote(v)
}

type posRec struct {
	path         string
	line, column int32
}

func (s *sink) setFailed(path string) {
	if s.failed == nil {
		s.failed = map[string]bool{}
	}
	s.failed[path] = true
}

// posOf returns where the value at path was written, if it was.
func (s *sink) posOf(path string) (Position, bool) {
	if len(s.pos) > 32 {
		if s.posIndex == nil {
			s.posIndex = make(map[string]Position, len(s.pos))
			for _, r := range s.pos {
				s.posIndex[r.path] = s.position(r) // later records win, as in the slice
			}
		}
		p, ok := s.posIndex[path]
		return p, ok
	}
	for i := len(s.pos) - 1; i >= 0; i-- {
		if s.pos[i].path == path {
			return s.position(s.pos[i]), true
		}
	}
	return Position{}, false
}

func (s *sink) position(r posRec) Position {
	return Position{File: s.file, Line: int(r.line), Column: int(r.column)}
}

type missingVar struct {
	Name string
	Pos  Position
	Path string
}

var (
	secretType   = reflect.TypeFor[secret.String]()
	durationType = reflect.TypeFor[Duration]()
	ignoreType   = reflect.TypeFor[LintIgnore]()
	namePattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

func (d *decoder) position(n *yaml.Node) Position {
	return Position{File: d.file, Line: n.Line, Column: n.Column}
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.s.setFailed(path)
	d.s.errs = append(d.s.errs, &Error{Pos: d.position(n), Path: path, Msg: fmt.Sprintf(format, args...)})
}

// value decodes n into v, which is addressable.
func (d *decoder) value(n *yaml.Node, path string, v reflect.Value) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.s.pos = append(d.s.pos, posRec{path, int32(n.Line), int32(n.Column)})
	if isNull(n) {
		return // an empty value leaves the zero value; required checks catch it
	}
	t := v.Type()
	switch {
	case t == secretType:
		if s, ok := d.scalar(n, path, "a string"); ok {
			v.Set(reflect.ValueOf(secret.New(s)))
		}
		return
	case t == durationType:
		if s, ok := d.scalar(n, path, "a duration"); ok {
			dur, err := time.ParseDuration(s)
			switch {
			case err != nil:
				d.errorf(n, path, "must be a duration such as 90s, 5m or 720h, got %s", shown(d.s.expanded, path, s))
			case dur <= 0:
				d.errorf(n, path, "must be positive, got %s", shown(d.s.expanded, path, s))
			default:
				v.SetInt(int64(dur))
			}
		}
		return
	case t == ignoreType:
		d.lintIgnore(n, path, v)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		d.value(n, path, p.Elem())
		v.Set(p)
	case reflect.Struct:
		d.structure(n, path, v)
	case reflect.Map:
		d.namedMap(n, path, v)
	case reflect.Slice:
		d.sequence(n, path, v)
	case reflect.String:
		if s, ok := d.scalar(n, path, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Int:
		if s, ok := d.scalar(n, path, "an integer"); ok {
			i, err := strconv.Atoi(s)
			if err != nil {
				d.errorf(n, path, "must be an integer, got %s", shown(d.s.expanded, path, s))
				return
			}
			v.SetInt(int64(i))
		}
	case reflect.Bool:
		if s, ok := d.scalar(n, path, "true or false"); ok {
			switch s {
			case "true":
				v.SetBool(true)
			case "false":
				v.SetBool(false)
			default:
				d.errorf(n, path, "must be true or false, got %s", shown(d.s.expanded, path, s))
			}
		}
	default:
		panic(fmt.Sprintf("config: no decoder for %s", t)) // a schema bug, caught by tests
	}
}

// scalar returns the expanded text of a scalar node. ok is false when the
// node is not a scalar, a placeholder is bad, or a variable is missing.
func (d *decoder) scalar(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "must be %s, got %s", want, kindName(n))
		return "", false
	}
	res, err := d.expand(n.Value)
	if err != nil {
		d.errorf(n, path, "%v", err)
		return "", false
	}
	if len(res.Missing) > 0 {
		for _, name := range res.Missing {
			*d.missing = append(*d.missing, missingVar{Name: name, Pos: d.position(n), Path: path})
		}
		d.s.setFailed(path) // its only error is the missing variable
		return "", false
	}
	if res.Value != n.Value || placeholder.Has(n.Value) {
		d.s.setExpanded(path, n.Value)
	}
	return res.Value, true
}

func (d *decoder) structure(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping of keys, got %s", kindName(n))
		return
	}
	fields := fieldsOf(v.Type())
	d.pairs(n, path, func(key string, k, val *yaml.Node) {
		f, ok := fields.byName[key]
		if !ok {
			msg := fmt.Sprintf("unknown key %q", key)
			if s, ok := suggest.Closest(key, fields.names); ok {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.errorf(k, join(path, key), "%s", msg)
			return
		}
		d.value(val, join(path, key), v.FieldByIndex(f))
	})
}

// namedMap decodes a mapping of named entries (authenticators) into
// map[string]*T, setting each entry's Name and Pos.
func (d *decoder) namedMap(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping of named entries, got %s", kindName(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	d.pairs(n, path, func(name string, k, val *yaml.Node) {
		if !d.validName(k, path, name) {
			return
		}
		e := reflect.New(v.Type().Elem().Elem())
		d.value(val, join(path, name), e.Elem())
		setNamePos(e.Elem(), name, d.position(k))
		v.SetMapIndex(reflect.ValueOf(name), e)
	})
}

// lintIgnore decodes lint-ignore: a mapping of rule id to a reason. A
// silenced finding must say why, so an empty reason is an error.
func (d *decoder) lintIgnore(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping of lint rule ids to reasons, got %s", kindName(n))
		return
	}
	m := LintIgnore{}
	d.pairs(n, path, func(rule string, k, val *yaml.Node) {
		p := join(path, rule)
		d.s.pos = append(d.s.pos, posRec{p, int32(val.Line), int32(val.Column)})
		s, ok := d.scalar(val, p, "a string (the reason)")
		if !ok {
			return
		}
		if strings.TrimSpace(s) == "" {
			d.errorf(val, p, "a silenced lint rule needs a reason")
			return
		}
		m[rule] = s
	})
	v.Set(reflect.ValueOf(m))
}

func (d *decoder) sequence(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "must be a list, got %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.value(item, fmt.Sprintf("%s[%d]", path, i), s.Index(i))
	}
	v.Set(s)
}

// pairs walks a mapping's keys in order, rejecting non-scalar, merge and
// duplicate keys (yaml.v3 only checks duplicates when decoding into Go maps).
func (d *decoder) pairs(n *yaml.Node, path string, fn func(key string, k, v *yaml.Node)) {
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "keys must be plain strings, got %s", kindName(k))
			continue
		}
		if k.Tag == "!!merge" {
			d.errorf(k, path, "YAML merge keys (<<) are not supported; write the keys out")
			continue
		}
		if line, dup := seen[k.Value]; dup {
			d.errorf(k, join(path, k.Value), "key already set at line %d of this file", line)
			continue
		}
		seen[k.Value] = k.Line
		fn(k.Value, k, val)
	}
}

func (d *decoder) validName(k *yaml.Node, path, name string) bool {
	if namePattern.MatchString(name) {
		return true
	}
	d.errorf(k, join(path, name), "invalid name: use letters, digits, '.', '_' and '-' (at most 128, starting with a letter or digit)")
	return false
}

func setNamePos(v reflect.Value, name string, pos Position) {
	v.FieldByName("Name").SetString(name)
	v.FieldByName("Pos").Set(reflect.ValueOf(pos))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	default:
		return "an unsupported YAML node"
	}
}

// The decoder follows every alias, so a few kilobytes of anchors that
// refer to anchors ("billion laughs") would decode into billions of values
// and exhaust memory. yaml.v3 guards decoding into Go values this way, but
// not into yaml.Node. A file may expand through aliases to at most
// aliasExpansionFactor times its own node count plus aliasExpansionFloor.
const (
	aliasExpansionFactor = 10
	aliasExpansionFloor  = 100_000
)

// aliasLimit returns the expansion limit for root and whether root stays
// within it.
func aliasLimit(root *yaml.Node) (limit int, ok bool) {
	limit = aliasExpansionFactor*nodeCount(root) + aliasExpansionFloor
	return limit, expandedSize(root, limit, map[*yaml.Node]int{}) <= limit
}

func nodeCount(n *yaml.Node) int {
	c := 1
	for _, child := range n.Content {
		c += nodeCount(child)
	}
	return c
}

// expandedSize counts the nodes of n with every alias expanded, up to
// limit+1; an alias inside its own anchor counts as unbounded.
func expandedSize(n *yaml.Node, limit int, memo map[*yaml.Node]int) int {
	if size, ok := memo[n]; ok {
		return size
	}
	memo[n] = limit + 1 // while counting n: a cycle back to n is unbounded
	size := 1
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		size = expandedSize(n.Alias, limit, memo)
	}
	for _, child := range n.Content {
		if size > limit {
			break
		}
		size += expandedSize(child, limit, memo)
	}
	size = min(size, limit+1)
	memo[n] = size
	return size
}

// fieldTable is the yaml keys of a struct type, inline embedded structs included.
type fieldTable struct {
	byName map[string][]int
	names  []string // for did-you-mean, in declaration order
}

var fieldTables sync.Map // reflect.Type → *fieldTable

func fieldsOf(t reflect.Type) *fieldTable {
	if ft, ok := fieldTables.Load(t); ok {
		return ft.(*fieldTable)
	}
	ft := &fieldTable{byName: map[string][]int{}}
	for _, f := range reflect.VisibleFields(t) {
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || opts == "inline" || !f.IsExported() || name == "" {
			continue
		}
		ft.byName[name] = f.Index
		ft.names = append(ft.names, name)
	}
	fieldTables.Store(t, ft)
	return ft
}

// yamlKeys lists the yaml keys of a struct type (for per-type key rules and docs).
func yamlKeys(t reflect.Type) []string { return fieldsOf(t).names }
