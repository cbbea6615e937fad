package scim

import (
	"slices"
	"strings"
)

// Path is a PATCH operation's target (RFC 7644 §3.5.2):
// attrPath, or attrPath[valFilter] with an optional .subAttr after it.
type Path struct {
	Attr   AttrPath // with Sub for "name.familyName"
	Filter Expr     // the value filter, or nil
	Sub    string   // the sub-attribute after a value filter ("emails[…].value")
}

func (p Path) String() string {
	s := p.Attr.String()
	if p.Filter != nil {
		s += "[" + Format(p.Filter) + "]"
	}
	if p.Sub != "" {
		s += "." + p.Sub
	}
	return s
}

// ParsePath parses a PATCH path; errors are invalidPath.
func ParsePath(s string) (Path, *Error) {
	bad := func(detail string) (Path, *Error) {
		return Path{}, Errorf(400, InvalidPath, "path %q: %s", s, detail)
	}
	if len(s) > MaxFilterLength {
		return bad("too long")
	}
	p := &parser{src: s}
	if err := p.lex(); err != nil {
		return bad(err.(*Error).Detail)
	}
	t := p.next()
	if t.kind != tokWord {
		return bad("it must start with an attribute name")
	}
	attr, aerr := parseAttrPath(t.text)
	if aerr != nil {
		return bad(aerr.Detail)
	}
	out := Path{Attr: attr}
	if p.peek().kind == tokLBracket {
		if attr.Sub != "" {
			return bad("a value filter applies to an attribute, not a sub-attribute")
		}
		p.next()
		f, err := p.group(0, tokRBracket)
		if err != nil {
			return bad(err.(*Error).Detail)
		}
		out.Filter = f
		if next := p.peek(); next.kind == tokWord {
			p.next()
			sub, ok := strings.CutPrefix(next.text, ".")
			if !ok || !validName(sub) {
				return bad("after the value filter only .subAttribute may follow")
			}
			out.Sub = sub
		}
	}
	if p.peek().kind != tokEOF {
		return bad("unexpected " + p.peek().describe())
	}
	return out, nil
}

// Operation is one PATCH operation, decoded.
type Operation struct {
	Op    string // add, remove or replace (lower case)
	Path  *Path  // nil: the value names the attributes
	Value any
}

// DecodePatch reads a PatchOp request body (RFC 7644 §3.5.2).
func DecodePatch(body map[string]any, maxOps int) ([]Operation, *Error) {
	schemas, _ := body["schemas"].([]any)
	if !slices.ContainsFunc(schemas, func(v any) bool { s, _ := v.(string); return strings.EqualFold(s, PatchOpSchema) }) {
		return nil, Errorf(400, InvalidSyntax, "schemas must list %s", PatchOpSchema)
	}
	for k := range body {
		if !strings.EqualFold(k, "schemas") && !strings.EqualFold(k, "Operations") {
			return nil, Errorf(400, InvalidSyntax, "%q is not a member of a PatchOp request", k)
		}
	}
	var raw []any
	for k, v := range body {
		if strings.EqualFold(k, "Operations") {
			raw, _ = v.([]any)
		}
	}
	if len(raw) == 0 {
		return nil, Errorf(400, InvalidSyntax, "Operations must be a non-empty array")
	}
	if len(raw) > maxOps {
		return nil, Errorf(400, TooMany, "a PATCH may carry at most %d operations", maxOps)
	}
	ops := make([]Operation, 0, len(raw))
	for i, r := range raw {
		m, ok := r.(map[string]any)
		if !ok {
			return nil, Errorf(400, InvalidSyntax, "Operations[%d] must be an object", i)
		}
		var op Operation
		for k, v := range m {
			switch strings.ToLower(k) {
			case "op":
				s, _ := v.(string)
				op.Op = strings.ToLower(s)
			case "path":
				s, ok := v.(string)
				if !ok {
					return nil, Errorf(400, InvalidPath, "Operations[%d].path must be a string", i)
				}
				p, err := ParsePath(s)
				if err != nil {
					return nil, err
				}
				op.Path = &p
			case "value":
				op.Value = v
			default:
				return nil, Errorf(400, InvalidSyntax, "Operations[%d]: %q is not a member of an operation", i, k)
			}
		}
		switch op.Op {
		case "add", "replace":
			if op.Value == nil {
				return nil, Errorf(400, InvalidValue, "Operations[%d]: %s needs a value", i, op.Op)
			}
			if op.Path == nil {
				if _, ok := op.Value.(map[string]any); !ok {
					return nil, Errorf(400, InvalidValue, "Operations[%d]: without a path the value must be an object of attributes", i)
				}
			}
		case "remove":
			if op.Path == nil {
				return nil, Errorf(400, NoTarget, "Operations[%d]: remove needs a path", i)
			}
		default:
			return nil, Errorf(400, InvalidSyntax, "Operations[%d].op must be add, remove or replace", i)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// Patch applies ops to a copy of r and returns the result, checked as a
// whole (Check): all operations apply or none does.
func (rt *ResourceType) Patch(r Resource, ops []Operation) (Resource, *Error) {
	doc := map[string]any(r.Clone())
	for _, op := range ops {
		var err *Error
		if op.Path == nil {
			err = rt.patchAttributes(doc, op)
		} else {
			err = rt.patchPath(doc, op)
		}
		if err != nil {
			return nil, err
		}
	}
	// Check wants the client's shape: schemas, then every attribute.
	in := map[string]any{"schemas": rt.schemaList(doc)}
	for k, v := range doc {
		in[k] = v
	}
	return rt.Check(in)
}

func (rt *ResourceType) schemaList(doc map[string]any) []any {
	list := []any{rt.Schema.ID}
	for _, ext := range rt.Extensions {
		if _, ok := doc[ext.ID]; ok {
			list = append(list, ext.ID)
		}
	}
	return list
}

// patchAttributes applies an add or replace whose value names attributes.
func (rt *ResourceType) patchAttributes(doc map[string]any, op Operation) *Error {
	for name, v := range op.Value.(map[string]any) {
		if ext := rt.extension(name); ext != nil {
			obj, ok := v.(map[string]any)
			if !ok {
				return Errorf(400, InvalidValue, "%s must be an object of the extension's attributes", ext.ID)
			}
			for sub, sv := range obj {
				p := Path{Attr: AttrPath{URN: ext.ID, Attr: sub}}
				if err := rt.patchPath(doc, Operation{Op: op.Op, Path: &p, Value: sv}); err != nil {
					return err
				}
			}
			continue
		}
		if strings.EqualFold(name, "schemas") {
			continue
		}
		p := Path{Attr: AttrPath{Attr: name}}
		if err := rt.patchPath(doc, Operation{Op: op.Op, Path: &p, Value: v}); err != nil {
			return err
		}
	}
	return nil
}

// container returns the map holding the path's top-level attribute (the
// extension's object, created on demand when create is set).
func container(doc map[string]any, urn string, create bool) map[string]any {
	if urn == "" || urn == UserSchema || urn == GroupSchema {
		return doc
	}
	ext, ok := doc[urn].(map[string]any)
	if !ok && create {
		ext = map[string]any{}
		doc[urn] = ext
	}
	return ext
}

func (rt *ResourceType) patchPath(doc map[string]any, op Operation) *Error {
	p := *op.Path
	urn, attr, sub, err := rt.Resolve(p.Attr)
	if err != nil {
		return err
	}
	if urn == "" && !strings.EqualFold(attr.Name, "externalId") {
		return Errorf(400, Mutability, "%s is the server's and cannot be changed", attr.Name)
	}
	if attr.Mutability == ReadOnly || (sub != nil && sub.Mutability == ReadOnly) {
		return Errorf(400, Mutability, "%s is read-only", p.String())
	}
	c := container(doc, urn, op.Op != "remove")
	if c == nil { // removing from an extension the resource does not have
		return nil
	}
	name := attr.Name
	if urn == "" {
		name = "externalId"
	}

	if p.Filter != nil {
		return rt.patchValues(c, name, attr, p, op)
	}
	if sub != nil { // name.familyName
		obj, _ := c[name].(map[string]any)
		if attr.MultiValued {
			// emails.type without a filter: every value's sub-attribute.
			list, _ := c[name].([]any)
			for _, v := range list {
				if m, ok := v.(map[string]any); ok {
					setSub(m, sub.Name, op)
				}
			}
			return nil
		}
		if obj == nil {
			if op.Op == "remove" {
				return nil
			}
			obj = map[string]any{}
			c[name] = obj
		}
		setSub(obj, sub.Name, op)
		return nil
	}
	switch op.Op {
	case "remove":
		if attr.Required {
			return Errorf(400, Mutability, "%s is required and cannot be removed", name)
		}
		delete(c, name)
	case "add":
		if attr.MultiValued {
			added := asList(op.Value)
			existing, _ := c[name].([]any)
			if hasPrimary(added) {
				clearPrimary(existing)
			}
			c[name] = appendNew(existing, added)
			return nil
		}
		if old, ok := c[name].(map[string]any); ok && attr.Type == TypeComplex {
			if nv, ok := op.Value.(map[string]any); ok {
				for k, v := range nv {
					put(old, k, v)
				}
				return nil
			}
		}
		c[name] = op.Value
	case "replace":
		if attr.MultiValued {
			c[name] = asList(op.Value)
			return nil
		}
		c[name] = op.Value
	}
	return nil
}

// patchValues applies an operation to the values of a multi-valued
// attribute that match the path's value filter.
func (rt *ResourceType) patchValues(c map[string]any, name string, attr *Attribute, p Path, op Operation) *Error {
	if attr.Type != TypeComplex || !attr.MultiValued {
		return Errorf(400, InvalidPath, "%s takes no value filter: it is not a multi-valued complex attribute", attr.Name)
	}
	if err := rt.checkFilter(p.Filter, attr); err != nil {
		return Errorf(400, InvalidPath, "%s", err.Detail)
	}
	var sub *Attribute
	if p.Sub != "" {
		if sub = attr.Sub(p.Sub); sub == nil {
			return Errorf(400, InvalidPath, "%q is not a sub-attribute of %s", p.Sub, attr.Name)
		}
		if sub.Mutability == ReadOnly {
			return Errorf(400, Mutability, "%s is read-only", p.String())
		}
	}
	list, _ := c[name].([]any)
	var kept []any
	matched := 0
	for _, v := range list {
		m, ok := v.(map[string]any)
		if !ok || !rt.MatchValue(p.Filter, attr, m) {
			kept = append(kept, v)
			continue
		}
		matched++
		switch {
		case sub != nil:
			setSub(m, sub.Name, op)
			kept = append(kept, m)
		case op.Op == "remove":
			// dropped
		case op.Op == "replace":
			nv, ok := op.Value.(map[string]any)
			if !ok {
				return Errorf(400, InvalidValue, "%s: the value replacing a matched value must be an object", p.String())
			}
			kept = append(kept, nv)
		default: // add to a matched value: merge its sub-attributes
			nv, ok := op.Value.(map[string]any)
			if !ok {
				return Errorf(400, InvalidValue, "%s: the value added to a matched value must be an object", p.String())
			}
			for k, v := range nv {
				put(m, k, v)
			}
			kept = append(kept, m)
		}
	}
	if matched == 0 {
		return Errorf(400, NoTarget, "no value of %s matches %s", attr.Name, Format(p.Filter))
	}
	if op.Op != "remove" && hasPrimary(asList(op.Value)) {
		// The value made primary wins; the others stop being primary.
		for _, v := range kept {
			if m, ok := v.(map[string]any); ok && !rt.MatchValue(p.Filter, attr, m) {
				delete(m, "primary")
			}
		}
	}
	if len(kept) == 0 {
		delete(c, name)
	} else {
		c[name] = kept
	}
	return nil
}

func setSub(m map[string]any, name string, op Operation) {
	if op.Op == "remove" {
		put(m, name, nil)
		return
	}
	put(m, name, op.Value)
}

// put sets m[name] (deletes it for nil), replacing the key in whatever
// case it is stored.
func put(m map[string]any, name string, v any) {
	for k := range m {
		if strings.EqualFold(k, name) {
			delete(m, k)
		}
	}
	if v != nil {
		m[name] = v
	}
}

func hasPrimary(list []any) bool {
	for _, v := range list {
		if m, ok := v.(map[string]any); ok {
			for k, pv := range m {
				if b, _ := pv.(bool); b && strings.EqualFold(k, "primary") {
					return true
				}
			}
		}
	}
	return false
}

func clearPrimary(list []any) {
	for _, v := range list {
		if m, ok := v.(map[string]any); ok {
			delete(m, "primary")
		}
	}
}

// appendNew adds the values not already present (RFC 7644 §3.5.2.1: a
// value already there is not added twice).
func appendNew(existing, added []any) []any {
	out := slices.Clone(existing)
	for _, v := range added {
		if !slices.ContainsFunc(out, func(o any) bool { return sameValue(o, v) }) {
			out = append(out, v)
		}
	}
	return out
}

func sameValue(a, b any) bool {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		av, bv := am["value"], bm["value"]
		return av != nil && av == bv
	}
	return a == b
}
