package config

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/internal/secret"
)

// Render writes the resolved snapshot as YAML: every default applied, every
// placeholder resolved, every secret printed as <redacted>. Entries are sorted
// by name so two renders diff cleanly.
func Render(s *Snapshot) ([]byte, error) {
	root := &yaml.Node{Kind: yaml.MappingNode}
	add := func(key string, v *yaml.Node) {
		if v != nil {
			root.Content = append(root.Content, scalarNode(key), v)
		}
	}
	add("schema", typedNode("!!int", strconv.Itoa(s.Schema)))
	for _, sec := range s.sections() {
		add(sec.name, renderValue(sec.value))
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("render config: %w", err)
	}
	return buf.Bytes(), enc.Close()
}

type section struct {
	name  string
	value reflect.Value
}

func (s *Snapshot) sections() []section {
	return []section{
		{"service-roles", reflect.ValueOf(s.ServiceRoles)},
		{"zones", reflect.ValueOf(s.Zones)},
		{"data-sources", reflect.ValueOf(s.DataSources)},
		{"keys", reflect.ValueOf(s.Keys)},
		{"profiles", reflect.ValueOf(s.Profiles)},
		{"clients", reflect.ValueOf(s.Clients)},
	}
}

// renderValue returns the YAML node for v, or nil when v is empty (omitted).
func renderValue(v reflect.Value) *yaml.Node {
	switch v.Type() {
	case secretType:
		if v.Interface().(secret.String).IsZero() {
			return nil
		}
		return scalarNode(secret.Redacted)
	case durationType:
		if v.Int() == 0 {
			return nil
		}
		return scalarNode(v.Interface().(Duration).String())
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		if v.Elem().Kind() == reflect.Bool { // an explicit false is meaningful
			return typedNode("!!bool", strconv.FormatBool(v.Elem().Bool()))
		}
		return renderValue(v.Elem())
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		ft := fieldsOf(v.Type())
		for _, name := range ft.names {
			if name == "enabled" {
				continue // every rendered entry is enabled
			}
			if child := renderValue(v.FieldByIndex(ft.byName[name])); child != nil {
				n.Content = append(n.Content, scalarNode(name), child)
			}
		}
		if len(n.Content) == 0 {
			return nil
		}
		return n
	case reflect.Map:
		if v.Len() == 0 {
			return nil
		}
		n := &yaml.Node{Kind: yaml.MappingNode}
		names := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			names = append(names, k.String())
		}
		slices.Sort(names)
		for _, name := range names {
			child := renderValue(v.MapIndex(reflect.ValueOf(name)))
			if child == nil {
				child = &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
			}
			n.Content = append(n.Content, scalarNode(name), child)
		}
		return n
	case reflect.Slice:
		if v.Len() == 0 {
			return nil
		}
		n := &yaml.Node{Kind: yaml.SequenceNode}
		for i := range v.Len() {
			child := renderValue(v.Index(i))
			if child == nil { // an empty item keeps its place in the list
				child = scalarNode("")
			}
			n.Content = append(n.Content, child)
		}
		return n
	case reflect.String:
		if v.String() == "" {
			return nil
		}
		return scalarNode(v.String())
	case reflect.Int:
		if v.Int() == 0 {
			return nil
		}
		return typedNode("!!int", strconv.FormatInt(v.Int(), 10))
	case reflect.Bool:
		if !v.Bool() {
			return nil
		}
		return typedNode("!!bool", "true")
	}
	panic(fmt.Sprintf("config: cannot render %s", v.Type()))
}

// scalarNode is a string scalar; the !!str tag makes the encoder quote values
// YAML would read as another type ("true", "0755"), so a render round-trips.
func scalarNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func typedNode(tag, s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: s}
}

// Difference is one key whose resolved value differs between two snapshots.
type Difference struct {
	Path   string
	Before string // "" when only in After
	After  string // "" when only in Before
	Secret bool   // Before/After are "<redacted>": only whether it differs is shown
}

// Diff compares two resolved snapshots key by key. Secret values are compared
// but never shown.
func Diff(a, b *Snapshot) []Difference {
	fa, fb := flatten(a), flatten(b)
	var out []Difference
	paths := make([]string, 0, len(fa)+len(fb))
	for p := range fa {
		paths = append(paths, p)
	}
	for p := range fb {
		if _, ok := fa[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	for _, p := range paths {
		va, okA := fa[p]
		vb, okB := fb[p]
		if okA && okB && va.equal(vb) {
			continue
		}
		d := Difference{Path: p, Secret: va.secret || vb.secret}
		if okA {
			d.Before = va.show()
		}
		if okB {
			d.After = vb.show()
		}
		out = append(out, d)
	}
	return out
}

type leaf struct {
	text   string
	secret bool
}

func (l leaf) equal(o leaf) bool {
	if l.secret != o.secret {
		return false
	}
	if l.secret {
		return secret.New(l.text).Equal(secret.New(o.text))
	}
	return l.text == o.text
}

func (l leaf) show() string {
	if l.secret {
		return secret.Redacted
	}
	return l.text
}

func flatten(s *Snapshot) map[string]leaf {
	out := map[string]leaf{"schema": {text: strconv.Itoa(s.Schema)}}
	for _, sec := range s.sections() {
		flattenValue(sec.name, sec.value, out)
	}
	return out
}

func flattenValue(path string, v reflect.Value, out map[string]leaf) {
	switch v.Type() {
	case secretType:
		if s := v.Interface().(secret.String); !s.IsZero() {
			out[path] = leaf{text: s.Reveal(), secret: true}
		}
		return
	case durationType:
		if v.Int() != 0 {
			out[path] = leaf{text: v.Interface().(Duration).String()}
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			flattenValue(path, v.Elem(), out)
		}
	case reflect.Struct:
		ft := fieldsOf(v.Type())
		for _, name := range ft.names {
			if name != "enabled" {
				flattenValue(path+"."+name, v.FieldByIndex(ft.byName[name]), out)
			}
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			flattenValue(path+"."+k.String(), v.MapIndex(k), out)
		}
	case reflect.Slice:
		for i := range v.Len() {
			flattenValue(fmt.Sprintf("%s[%d]", path, i), v.Index(i), out)
		}
	case reflect.String:
		if v.String() != "" {
			out[path] = leaf{text: strconv.Quote(v.String())}
		}
	case reflect.Int:
		if v.Int() != 0 {
			out[path] = leaf{text: strconv.FormatInt(v.Int(), 10)}
		}
	case reflect.Bool:
		out[path] = leaf{text: strconv.FormatBool(v.Bool())}
	}
}
