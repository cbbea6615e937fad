// Package yamledit changes values in a YAML file by splicing its text, so
// that everything an edit does not touch — comments, blank lines, key
// order, quoting, anchors, indentation — stays byte for byte as written,
// and a commit of the result shows only the changed lines.
//
// yaml.v3's node tree says where each node starts; yamledit finds where it
// ends by scanning the text from there (quotes, brackets, block scalars,
// indentation), renders the new value with yaml.v3 in the style of the old
// one, and replaces that byte range. Every edit is then checked: the file
// must decode to exactly the old content with only the edited path
// changed, or the edit is refused and the text left as it was.
package yamledit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Doc is one YAML document being edited.
type Doc struct {
	src  []byte
	root *yaml.Node // the document's top node (a mapping)
}

// Parse reads a single-document YAML file whose top level is a mapping
// (or that is empty).
func Parse(src []byte) (*Doc, error) {
	if bytes.Contains(src, []byte("\r\n")) {
		return nil, errors.New("the file has CRLF line endings; convert it to LF to edit it here")
	}
	d := &Doc{src: bytes.Clone(src)}
	if err := d.reparse(); err != nil {
		return nil, err
	}
	return d, nil
}

// Bytes is the current text.
func (d *Doc) Bytes() []byte { return bytes.Clone(d.src) }

func (d *Doc) reparse() error {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(d.src))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.root = nil // an empty file
			return nil
		}
		return err
	}
	var extra yaml.Node
	if dec.Decode(&extra) == nil {
		return errors.New("the file holds more than one YAML document")
	}
	if len(doc.Content) == 0 {
		d.root = nil
		return nil
	}
	if doc.Content[0].Kind != yaml.MappingNode {
		return errors.New("the file's top level is not a mapping")
	}
	d.root = doc.Content[0]
	return nil
}

// Set sets the value at path (mapping keys from the top) to v. A missing
// key is added (after the last key of its mapping, or as a new top-level
// section at the end of the file); missing mappings on the way are
// created.
func (d *Doc) Set(path []string, v any) error {
	if err := d.shared(path); err != nil {
		return err
	}
	return d.edit(path, v, false, func() error { return d.set(path, v) })
}

// Append adds v to the end of the sequence at path (created if missing).
func (d *Doc) Append(path []string, v any) error {
	if err := d.shared(path); err != nil {
		return err
	}
	old, _ := d.decoded()
	want := appendAt(old, path, v)
	return d.editTo(want, func() error { return d.append(path, v) })
}

// Remove deletes the key at path, with its value. Removing a key that is
// not there is not an error.
func (d *Doc) Remove(path []string) error {
	if err := d.shared(path); err != nil {
		return err
	}
	return d.edit(path, nil, true, func() error { return d.remove(path) })
}

// RemoveItem deletes the i-th item of the sequence at path.
func (d *Doc) RemoveItem(path []string, i int) error {
	if err := d.shared(path); err != nil {
		return err
	}
	old, _ := d.decoded()
	want, err := removeItemAt(old, path, i)
	if err != nil {
		return err
	}
	return d.editTo(want, func() error { return d.removeItem(path, i) })
}

// shared refuses an edit inside a node that an anchor shares with other
// places (&name … *name): changing it there would change them too.
func (d *Doc) shared(path []string) error {
	cur := d.root
	for i, k := range path {
		if cur == nil || cur.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for j := 0; j+1 < len(cur.Content); j += 2 {
			if cur.Content[j].Value == k {
				next = cur.Content[j+1]
			}
		}
		if next == nil {
			return nil
		}
		where := strings.Join(path[:i+1], ".")
		switch {
		case next.Kind == yaml.AliasNode:
			return fmt.Errorf("%s is a copy of the anchor &%s (written *%s); edit the anchored entry by hand", where, next.Value, next.Value)
		case next.Anchor != "":
			return fmt.Errorf("%s is shared through the anchor &%s; edit it by hand", where, next.Anchor)
		}
		cur = next
	}
	return nil
}

// Get returns the decoded value at path, and whether it is there.
func (d *Doc) Get(path []string) (any, bool) {
	v, _ := d.decoded()
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// edit runs apply and checks that the file now decodes to the old content
// with path set to v (or removed).
func (d *Doc) edit(path []string, v any, remove bool, apply func() error) error {
	old, err := d.decoded()
	if err != nil {
		return err
	}
	var want any
	if remove {
		want = removeAt(old, path)
	} else {
		nv, err := normalize(v)
		if err != nil {
			return err
		}
		want = setAt(old, path, nv)
	}
	return d.editTo(want, apply)
}

func (d *Doc) editTo(want any, apply func() error) error {
	saved := bytes.Clone(d.src)
	fail := func(err error) error {
		d.src = saved
		_ = d.reparse()
		return err
	}
	if err := apply(); err != nil {
		return fail(err)
	}
	if err := d.reparse(); err != nil {
		return fail(fmt.Errorf("the edit would break the file (%v); it was not made", err))
	}
	got, err := d.decoded()
	if err != nil {
		return fail(err)
	}
	if !reflect.DeepEqual(got, want) {
		return fail(errors.New("the file's layout is too unusual to edit in place safely; it was not changed"))
	}
	return nil
}

// decoded is the document as plain Go values (maps, slices, scalars).
func (d *Doc) decoded() (any, error) {
	var v any
	if err := yaml.Unmarshal(d.src, &v); err != nil {
		return nil, err
	}
	if v == nil {
		return map[string]any{}, nil
	}
	return normalize(v)
}

// normalize makes v comparable with a decoded document: what yaml.v3
// decodes after encoding it.
func normalize(v any) (any, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	if err := yaml.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func setAt(doc any, path []string, v any) any {
	if len(path) == 0 {
		return v
	}
	m, ok := doc.(map[string]any)
	if !ok {
		m = map[string]any{}
	} else {
		m = shallow(m)
	}
	m[path[0]] = setAt(m[path[0]], path[1:], v)
	return m
}

func removeAt(doc any, path []string) any {
	m, ok := doc.(map[string]any)
	if !ok || len(path) == 0 {
		return doc
	}
	if _, there := m[path[0]]; !there {
		return doc
	}
	m = shallow(m)
	if len(path) == 1 {
		delete(m, path[0])
		return m
	}
	m[path[0]] = removeAt(m[path[0]], path[1:])
	return m
}

func appendAt(doc any, path []string, v any) any {
	cur := doc
	for _, k := range path {
		m, _ := cur.(map[string]any)
		cur = m[k]
	}
	list, _ := cur.([]any)
	nv, _ := normalize(v)
	return setAt(doc, path, append(append([]any{}, list...), nv))
}

func removeItemAt(doc any, path []string, i int) (any, error) {
	cur := doc
	for _, k := range path {
		m, _ := cur.(map[string]any)
		cur = m[k]
	}
	list, ok := cur.([]any)
	if !ok || i < 0 || i >= len(list) {
		return nil, fmt.Errorf("%s has no item %d", strings.Join(path, "."), i)
	}
	out := append(append([]any{}, list[:i]...), list[i+1:]...)
	return setAt(doc, path, out), nil
}

func shallow(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// --- locating nodes -------------------------------------------------------

// lookup walks path from the root: the mapping holding the last key, the
// key node and the value node (nil when absent), and how far it got.
func (d *Doc) lookup(path []string) (parent, key, val *yaml.Node, depth int) {
	cur := d.root
	for i, k := range path {
		if cur == nil || cur.Kind != yaml.MappingNode {
			return nil, nil, nil, i
		}
		var next *yaml.Node
		for j := 0; j+1 < len(cur.Content); j += 2 {
			if cur.Content[j].Value == k {
				key, next = cur.Content[j], cur.Content[j+1]
			}
		}
		if next == nil {
			return cur, nil, nil, i
		}
		if i == len(path)-1 {
			return cur, key, next, len(path)
		}
		cur = next
	}
	return nil, nil, d.root, 0
}

// offset is the byte offset of a node's (1-based, rune-counted) position.
func (d *Doc) offset(line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(d.src[off:], '\n')
		if i < 0 {
			return len(d.src)
		}
		off += i + 1
	}
	for c := 1; c < col && off < len(d.src) && d.src[off] != '\n'; c++ {
		_, size := utf8.DecodeRune(d.src[off:])
		off += size
	}
	return off
}

func (d *Doc) lineStart(off int) int {
	return bytes.LastIndexByte(d.src[:off], '\n') + 1
}

func (d *Doc) lineEnd(off int) int {
	if i := bytes.IndexByte(d.src[off:], '\n'); i >= 0 {
		return off + i
	}
	return len(d.src)
}

// valueStart skips a node's anchor and tag to where its content starts.
func (d *Doc) valueStart(n *yaml.Node) int {
	off := d.offset(n.Line, n.Column)
	for off < len(d.src) && (d.src[off] == '&' || d.src[off] == '!') {
		for off < len(d.src) && d.src[off] != ' ' && d.src[off] != '\n' && d.src[off] != '\t' {
			off++
		}
		for off < len(d.src) && (d.src[off] == ' ' || d.src[off] == '\t') {
			off++
		}
	}
	return off
}

// end is the byte offset just past a node's text. inFlow says the node is
// inside a flow collection ("[a, b]"), where plain scalars end at , ] }.
func (d *Doc) end(n *yaml.Node, inFlow bool) (int, error) {
	start := d.valueStart(n)
	switch {
	case n.Kind == yaml.AliasNode:
		i := start + 1
		for i < len(d.src) && !isSpaceOrFlow(d.src[i]) {
			i++
		}
		return i, nil
	case n.Kind == yaml.ScalarNode:
		return d.scalarEnd(n, start, inFlow)
	case n.Style&yaml.FlowStyle != 0:
		return d.flowEnd(start)
	case len(n.Content) == 0:
		return start, nil
	}
	last := n.Content[len(n.Content)-1]
	return d.end(last, false)
}

func isSpaceOrFlow(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == ']' || c == '}'
}

func (d *Doc) scalarEnd(n *yaml.Node, start int, inFlow bool) (int, error) {
	s := d.src
	switch {
	case n.Style&yaml.DoubleQuotedStyle != 0:
		for i := start + 1; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '"':
				return i + 1, nil
			}
		}
	case n.Style&yaml.SingleQuotedStyle != 0:
		for i := start + 1; i < len(s); i++ {
			if s[i] == '\'' {
				if i+1 < len(s) && s[i+1] == '\'' {
					i++
					continue
				}
				return i + 1, nil
			}
		}
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		// The header line, then every line indented deeper than the
		// parent's key, or blank; the last content line ends it.
		keyIndent := d.indentOf(d.lineStart(start))
		endOff := d.lineEnd(start)
		for off := endOff + 1; off < len(s); {
			le := d.lineEnd(off)
			line := s[off:le]
			if len(bytes.TrimSpace(line)) > 0 {
				if d.indentOf(off) <= keyIndent {
					break
				}
				endOff = le
			}
			if le >= len(s) {
				break
			}
			off = le + 1
		}
		return endOff, nil
	default: // plain
		le := d.lineEnd(start)
		i := start
		for ; i < le; i++ {
			c := s[i]
			if inFlow && (c == ',' || c == ']' || c == '}') {
				break
			}
			if c == '#' && i > start && (s[i-1] == ' ' || s[i-1] == '\t') {
				break
			}
		}
		for i > start && (s[i-1] == ' ' || s[i-1] == '\t') {
			i--
		}
		if string(s[start:i]) != n.Value {
			return 0, errors.New("a plain scalar over several lines cannot be edited in place")
		}
		return i, nil
	}
	return 0, errors.New("an unterminated quoted scalar")
}

// indentOf is the number of spaces starting the line at off.
func (d *Doc) indentOf(off int) int {
	n := 0
	for off+n < len(d.src) && d.src[off+n] == ' ' {
		n++
	}
	return n
}

// flowEnd matches the bracket at start, minding quotes.
func (d *Doc) flowEnd(start int) (int, error) {
	s := d.src
	depth := 0
	for i := start; i < len(s); i++ {
		switch s[i] {
		case '[', '{':
			depth++
		case ']', '}':
			depth--
			if depth == 0 {
				return i + 1, nil
			}
		case '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		case '\'':
			for i++; i < len(s); i++ {
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						i++
						continue
					}
					break
				}
			}
		case '#':
			if i > start && (s[i-1] == ' ' || s[i-1] == '\t') {
				i = d.lineEnd(i) - 1
			}
		}
	}
	return 0, errors.New("an unterminated flow collection")
}

func (d *Doc) splice(start, end int, text string) {
	out := make([]byte, 0, len(d.src)-(end-start)+len(text))
	out = append(out, d.src[:start]...)
	out = append(out, text...)
	out = append(out, d.src[end:]...)
	d.src = out
}

// ChangedLines is the changed middle of two texts — the lines a and b do
// not share once their common head and tail are set aside: what a commit
// of the edit shows.
func ChangedLines(a, b string) (removed, added []string) {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	i := 0
	for i < len(al) && i < len(bl) && al[i] == bl[i] {
		i++
	}
	j := 0
	for j < len(al)-i && j < len(bl)-i && al[len(al)-1-j] == bl[len(bl)-1-j] {
		j++
	}
	return al[i : len(al)-j], bl[i : len(bl)-j]
}
