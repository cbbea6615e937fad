package yamledit

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

func (d *Doc) set(path []string, v any) error {
	if len(path) == 0 {
		return errors.New("an empty path")
	}
	parent, key, val, depth := d.lookup(path)
	if val == nil || key == nil {
		return d.insert(parent, path, depth, v)
	}
	inFlow := d.inFlow(path)
	start := d.valueStart(val)
	end, err := d.end(val, inFlow)
	if err != nil {
		return err
	}
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return err
	}
	if n.Kind == yaml.SequenceNode && val.Kind == yaml.SequenceNode && len(val.Content) > 0 {
		// New items are quoted as the old ones were.
		if q := val.Content[0].Style & (yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle); q != 0 {
			for _, item := range n.Content {
				if item.Kind == yaml.ScalarNode && item.Tag == "!!str" {
					item.Style = q
				}
			}
		}
	}
	var text string
	switch {
	case n.Kind == yaml.ScalarNode:
		text, err = renderScalar(&n, val, inFlow)
	case inFlow || val.Kind == yaml.ScalarNode || val.Style&yaml.FlowStyle != 0 || len(n.Content) == 0:
		text, err = renderFlow(&n)
	default:
		text, err = renderBlock(&n, d.offsetColumn(start))
	}
	if err != nil {
		return err
	}
	d.splice(start, end, text)
	return nil
}

// inFlow reports whether the value at path sits inside a flow collection.
func (d *Doc) inFlow(path []string) bool {
	cur := d.root
	for _, k := range path {
		if cur == nil {
			return false
		}
		if cur.Style&yaml.FlowStyle != 0 {
			return true
		}
		var next *yaml.Node
		for j := 0; j+1 < len(cur.Content); j += 2 {
			if cur.Content[j].Value == k {
				next = cur.Content[j+1]
			}
		}
		cur = next
	}
	return false
}

// offsetColumn is the 0-based column (in runes) of a byte offset.
func (d *Doc) offsetColumn(off int) int {
	return len([]rune(string(d.src[d.lineStart(off):off])))
}

// insert adds path[depth] (with path[depth+1:] as nested mappings around
// v) to the mapping parent (nil: the top level).
func (d *Doc) insert(parent *yaml.Node, path []string, depth int, v any) error {
	val := v
	for i := len(path) - 1; i > depth; i-- {
		val = map[string]any{path[i]: val}
	}
	key := path[depth]
	if parent == nil {
		parent = d.root
		if depth > 0 {
			return fmt.Errorf("%s is not a mapping", strings.Join(path[:depth], "."))
		}
	}
	if parent == nil { // an empty file
		text, err := renderPair(key, val, 0)
		if err != nil {
			return err
		}
		if len(d.src) > 0 && d.src[len(d.src)-1] != '\n' {
			text = "\n" + text
		}
		d.src = append(d.src, text+"\n"...)
		return nil
	}
	if parent.Kind != yaml.MappingNode {
		return fmt.Errorf("%s is not a mapping", strings.Join(path[:depth], "."))
	}
	if parent.Style&yaml.FlowStyle != 0 || d.inFlow(path[:depth]) {
		start := d.valueStart(parent)
		end, err := d.flowEnd(start)
		if err != nil {
			return err
		}
		var n yaml.Node
		if err := n.Encode(map[string]any{key: val}); err != nil {
			return err
		}
		text, err := renderFlow(&n)
		if err != nil {
			return err
		}
		text = strings.TrimSuffix(strings.TrimPrefix(text, "{"), "}")
		if len(parent.Content) > 0 {
			text = ", " + text
		}
		d.splice(end-1, end-1, text)
		return nil
	}
	if len(parent.Content) == 0 {
		return errors.New("cannot add to an empty block mapping")
	}
	lastEnd, err := d.end(parent.Content[len(parent.Content)-1], false)
	if err != nil {
		return err
	}
	col := d.offsetColumn(d.valueStart(parent.Content[0]))
	text, err := renderPair(key, val, col)
	if err != nil {
		return err
	}
	at := d.lineEnd(lastEnd)
	d.splice(at, at, "\n"+text)
	return nil
}

func (d *Doc) append(path []string, v any) error {
	_, key, val, _ := d.lookup(path)
	if val == nil || key == nil {
		return d.set(path, []any{v})
	}
	if val.Kind != yaml.SequenceNode {
		return fmt.Errorf("%s is not a list", strings.Join(path, "."))
	}
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return err
	}
	if len(val.Content) > 0 && n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		n.Style = val.Content[len(val.Content)-1].Style & (yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle)
	}
	start := d.valueStart(val)
	if val.Style&yaml.FlowStyle != 0 || d.inFlow(path) {
		end, err := d.flowEnd(start)
		if err != nil {
			return err
		}
		text, err := renderItemFlow(&n)
		if err != nil {
			return err
		}
		if len(val.Content) > 0 {
			text = ", " + text
		}
		d.splice(end-1, end-1, text)
		return nil
	}
	if len(val.Content) == 0 {
		return d.set(path, []any{v})
	}
	end, err := d.end(val, false)
	if err != nil {
		return err
	}
	col := d.offsetColumn(start)
	text, err := renderBlock(&yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: []*yaml.Node{&n}}, col)
	if err != nil {
		return err
	}
	at := d.lineEnd(end)
	d.splice(at, at, "\n"+strings.Repeat(" ", col)+text)
	return nil
}

func (d *Doc) remove(path []string) error {
	parent, key, val, _ := d.lookup(path)
	if key == nil {
		return nil
	}
	if len(parent.Content) == 2 && parent != d.root {
		return d.set(path[:len(path)-1], map[string]any{})
	}
	inFlow := parent.Style&yaml.FlowStyle != 0 || d.inFlow(path[:len(path)-1])
	return d.cut(key, val, inFlow)
}

func (d *Doc) removeItem(path []string, i int) error {
	_, key, val, _ := d.lookup(path)
	if key == nil || val.Kind != yaml.SequenceNode || i < 0 || i >= len(val.Content) {
		return fmt.Errorf("%s has no item %d", strings.Join(path, "."), i)
	}
	if len(val.Content) == 1 {
		return d.set(path, []any{})
	}
	item := val.Content[i]
	inFlow := val.Style&yaml.FlowStyle != 0 || d.inFlow(path)
	return d.cut(item, item, inFlow)
}

// cut removes the text from first (a key, or an item) to the end of last
// (its value, or the item itself): the entry from its flow collection, or
// its lines from a block one.
func (d *Doc) cut(first, last *yaml.Node, inFlow bool) error {
	start := d.offset(first.Line, first.Column)
	end, err := d.end(last, inFlow)
	if err != nil {
		return err
	}
	if inFlow {
		d.cutFlowItem(start, end)
		return nil
	}
	d.cutLines(start, end)
	return nil
}

// cutFlowItem removes [start,end) of a flow collection and one comma next
// to it.
func (d *Doc) cutFlowItem(start, end int) {
	s := d.src
	j := end
	for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	if j < len(s) && s[j] == ',' {
		j++
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		d.splice(start, j, "")
		return
	}
	i := start
	for i > 0 && (s[i-1] == ' ' || s[i-1] == '\t') {
		i--
	}
	if i > 0 && s[i-1] == ',' {
		i--
	}
	d.splice(i, end, "")
}

// cutLines removes the whole lines from start's to end's, with a line
// comment after end.
func (d *Doc) cutLines(start, end int) {
	from := d.lineStart(start)
	to := d.lineEnd(end)
	if to < len(d.src) {
		to++
	}
	d.splice(from, to, "")
}

// --- rendering ------------------------------------------------------------

func encode(n *yaml.Node) (string, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return "", err
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// renderScalar renders a new scalar in the quoting of the one it replaces,
// where that still means the same; in a flow collection, a plain scalar
// that would end early is double-quoted.
func renderScalar(n, old *yaml.Node, inFlow bool) (string, error) {
	if n.Tag == "!!str" && old.Kind == yaml.ScalarNode {
		switch {
		case old.Style&yaml.DoubleQuotedStyle != 0:
			n.Style = yaml.DoubleQuotedStyle
		case old.Style&yaml.SingleQuotedStyle != 0 && !strings.Contains(n.Value, "\n"):
			n.Style = yaml.SingleQuotedStyle
		}
	}
	if n.Tag == "!!str" && strings.Contains(n.Value, "\n") {
		n.Style = yaml.DoubleQuotedStyle // a block scalar would need the key's indentation
	}
	text, err := encode(n)
	if err != nil {
		return "", err
	}
	if inFlow && n.Style == 0 && strings.ContainsAny(text, ",[]{}#") {
		n.Style = yaml.DoubleQuotedStyle
		return encode(n)
	}
	return text, nil
}

func flowAll(n *yaml.Node) {
	if n.Kind == yaml.SequenceNode || n.Kind == yaml.MappingNode {
		n.Style |= yaml.FlowStyle
	}
	for _, c := range n.Content {
		flowAll(c)
	}
}

func renderFlow(n *yaml.Node) (string, error) {
	if n.Kind == yaml.SequenceNode && scalarsOnly(n) {
		// yaml.v3 quotes what YAML lets stand plain in a flow sequence
		// (URLs, "a:b"); write such items plain, as people do.
		parts := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			text, err := renderItemFlow(item)
			if err != nil {
				return "", err
			}
			parts = append(parts, text)
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	}
	flowAll(n)
	text, err := encode(n)
	if err != nil {
		return "", err
	}
	if strings.Contains(text, "\n") {
		return "", errors.New("the value is too long for one line")
	}
	return text, nil
}

// renderItemFlow renders a flow collection's item (a scalar quoted when it
// would end early).
func renderItemFlow(n *yaml.Node) (string, error) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && n.Style == 0 && plainInFlow(n.Value) {
		return n.Value, nil
	}
	if n.Kind == yaml.ScalarNode {
		return renderScalar(n, &yaml.Node{Kind: yaml.ScalarNode, Style: n.Style}, true)
	}
	return renderFlow(n)
}

// flowScalarLists writes lists of scalars on one line ("[a, b]"), as
// configuration files usually do.
func flowScalarLists(n *yaml.Node) {
	if n.Kind == yaml.SequenceNode {
		flat := true
		for _, c := range n.Content {
			flat = flat && c.Kind == yaml.ScalarNode
		}
		if flat {
			n.Style |= yaml.FlowStyle
		}
	}
	for _, c := range n.Content {
		flowScalarLists(c)
	}
}

func scalarsOnly(n *yaml.Node) bool {
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode {
			return false
		}
	}
	return true
}

// plainInFlow reports whether s, written plain as an item of a flow
// sequence, reads back as the string s (checked by parsing it).
func plainInFlow(s string) bool {
	if s == "" || strings.TrimSpace(s) != s || strings.ContainsAny(s, "\n\t") {
		return false
	}
	var got []any
	if err := yaml.Unmarshal([]byte("["+s+"]"), &got); err != nil || len(got) != 1 {
		return false
	}
	str, ok := got[0].(string)
	return ok && str == s
}

// renderBlock renders a block collection whose first line continues at
// column col and whose other lines start there.
func renderBlock(n *yaml.Node, col int) (string, error) {
	if n.Kind == yaml.MappingNode {
		flowScalarLists(n)
	}
	text, err := encode(n)
	if err != nil {
		return "", err
	}
	lines := strings.Split(text, "\n")
	for i := 1; i < len(lines); i++ {
		if lines[i] != "" {
			lines[i] = strings.Repeat(" ", col) + lines[i]
		}
	}
	return strings.Join(lines, "\n"), nil
}

// renderPair renders "key: value" at column col, as its own lines.
func renderPair(key string, v any, col int) (string, error) {
	var n yaml.Node
	if err := n.Encode(map[string]any{key: v}); err != nil {
		return "", err
	}
	flowScalarLists(&n)
	text, err := encode(&n)
	if err != nil {
		return "", err
	}
	lines := strings.Split(text, "\n")
	for i := range lines {
		if lines[i] != "" {
			lines[i] = strings.Repeat(" ", col) + lines[i]
		}
	}
	return strings.Join(lines, "\n"), nil
}
