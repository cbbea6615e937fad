package scim

import (
	"encoding/json"
	"strings"
	"time"
)

// The meaning of a filter, shared by the in-memory evaluation here (value
// filters in PATCH paths) and the SQL translation of the store, which must
// answer the same:
//
//   - An attribute without a sub-attribute that is complex compares its
//     "value" sub-attribute (emails co "x" is emails.value co "x").
//   - On a multi-valued attribute a comparison holds when some value
//     satisfies it; ne holds when no value equals (it is not(eq)).
//   - Strings compare case-insensitively unless the attribute is caseExact;
//     case is folded with Go's strings.ToLower, and order is byte order of
//     the folded UTF-8 (so every backend agrees). dateTime values compare
//     as instants, numbers as numbers, booleans only with eq and ne.
//   - co, sw and ew need a string attribute; gt, ge, lt and le a string,
//     number or dateTime; pr holds when the attribute has a non-empty value.
//   - eq null holds when the attribute has no value; ne null when it has.

// Target is what a filter's attribute path compares: the attribute whose
// values are compared and how.
type Target struct {
	URN      string     // schema of the attribute ("" for id, externalId, meta)
	Attr     *Attribute // the top-level attribute
	Sub      *Attribute // the compared sub-attribute, or nil for a simple attribute
	Compared *Attribute // Sub, or Attr when it is simple
}

// target resolves a comparison's path (relative to within, the complex
// attribute of a value filter, when not nil).
func (rt *ResourceType) target(p AttrPath, within *Attribute) (Target, *Error) {
	if within != nil {
		if p.URN != "" || p.Sub != "" {
			return Target{}, Errorf(400, InvalidFilter, "%q: inside a value filter, name a sub-attribute of %s", p.String(), within.Name)
		}
		sub := within.Sub(p.Attr)
		if sub == nil {
			return Target{}, Errorf(400, InvalidFilter, "%q is not a sub-attribute of %s", p.Attr, within.Name)
		}
		return Target{Attr: within, Sub: sub, Compared: sub}, nil
	}
	urn, attr, sub, err := rt.Resolve(p)
	if err != nil {
		return Target{}, Errorf(400, InvalidFilter, "%s", err.Detail)
	}
	t := Target{URN: urn, Attr: attr, Sub: sub, Compared: sub}
	if sub == nil && attr.Type == TypeComplex {
		t.Sub = attr.Sub("value") // nil for name, meta: only pr applies
	}
	if t.Compared == nil {
		t.Compared = t.Sub
		if t.Compared == nil {
			t.Compared = attr
		}
	}
	if attr.Returned == ReturnedNever {
		return Target{}, Errorf(400, InvalidFilter, "%q cannot be filtered on", p.String())
	}
	return t, nil
}

// CheckFilter checks every path and operator of e against rt.
func (rt *ResourceType) CheckFilter(e Expr) *Error { return rt.checkFilter(e, nil) }

func (rt *ResourceType) checkFilter(e Expr, within *Attribute) *Error {
	switch x := e.(type) {
	case *And:
		if err := rt.checkFilter(x.Left, within); err != nil {
			return err
		}
		return rt.checkFilter(x.Right, within)
	case *Or:
		if err := rt.checkFilter(x.Left, within); err != nil {
			return err
		}
		return rt.checkFilter(x.Right, within)
	case *Not:
		return rt.checkFilter(x.X, within)
	case *Present:
		_, err := rt.target(x.Path, within)
		return err
	case *ValuePath:
		_, attr, _, err := rt.Resolve(x.Path)
		if err != nil {
			return Errorf(400, InvalidFilter, "%s", err.Detail)
		}
		if attr.Type != TypeComplex || !attr.MultiValued {
			return Errorf(400, InvalidFilter, "%q is not a multi-valued complex attribute: it takes no value filter", x.Path.String())
		}
		return rt.checkFilter(x.Filter, attr)
	case *Compare:
		t, err := rt.target(x.Path, within)
		if err != nil {
			return err
		}
		return checkOperator(t.Compared, x)
	}
	return Errorf(400, InvalidFilter, "unsupported filter")
}

func checkOperator(a *Attribute, c *Compare) *Error {
	if a.Type == TypeComplex {
		return Errorf(400, InvalidFilter, "%q is complex: compare one of its sub-attributes", c.Path.String())
	}
	if c.Value == nil {
		if c.Op != "eq" && c.Op != "ne" {
			return Errorf(400, InvalidFilter, "null compares only with eq and ne")
		}
		return nil
	}
	switch a.Type {
	case TypeBoolean:
		if _, ok := c.Value.(bool); !ok || (c.Op != "eq" && c.Op != "ne") {
			return Errorf(400, InvalidFilter, "%s is a boolean: compare it with eq or ne and true or false", c.Path.String())
		}
	case TypeDecimal, TypeInteger:
		if _, ok := c.Value.(float64); !ok || c.Op == "co" || c.Op == "sw" || c.Op == "ew" {
			return Errorf(400, InvalidFilter, "%s is a number: compare it with eq, ne, gt, ge, lt or le and a number", c.Path.String())
		}
	case TypeDateTime:
		s, ok := c.Value.(string)
		if _, err := time.Parse(time.RFC3339, s); !ok || err != nil {
			return Errorf(400, InvalidFilter, "%s is a date and time: compare it with a string such as \"2026-12-02T10:00:00Z\"", c.Path.String())
		}
	case TypeBinary:
		return Errorf(400, InvalidFilter, "%s is binary and cannot be filtered on", c.Path.String())
	default:
		if _, ok := c.Value.(string); !ok {
			return Errorf(400, InvalidFilter, "%s is a string: compare it with a string in double quotes", c.Path.String())
		}
	}
	return nil
}

// Match evaluates a checked filter on a resource.
func (rt *ResourceType) Match(e Expr, r Resource) bool { return rt.match(e, map[string]any(r), nil) }

// MatchValue evaluates a value filter on one value of the multi-valued
// complex attribute within.
func (rt *ResourceType) MatchValue(e Expr, within *Attribute, value map[string]any) bool {
	return rt.match(e, value, within)
}

func (rt *ResourceType) match(e Expr, doc map[string]any, within *Attribute) bool {
	switch x := e.(type) {
	case *And:
		return rt.match(x.Left, doc, within) && rt.match(x.Right, doc, within)
	case *Or:
		return rt.match(x.Left, doc, within) || rt.match(x.Right, doc, within)
	case *Not:
		return !rt.match(x.X, doc, within)
	case *ValuePath:
		urn, attr, _, _ := rt.Resolve(x.Path)
		for _, v := range asList(lookup(doc, urn, attr.Name)) {
			if m, ok := v.(map[string]any); ok && rt.match(x.Filter, m, attr) {
				return true
			}
		}
		return false
	case *Present:
		t, _ := rt.target(x.Path, within)
		return len(values(doc, t, within)) > 0
	case *Compare:
		t, _ := rt.target(x.Path, within)
		vals := values(doc, t, within)
		if x.Value == nil {
			return (len(vals) == 0) == (x.Op == "eq")
		}
		if x.Op == "ne" {
			eq := *x
			eq.Op = "eq"
			return !anyHolds(vals, t.Compared, &eq)
		}
		return anyHolds(vals, t.Compared, x)
	}
	return false
}

// values are the non-empty values a target has in doc (doc is one value
// of within, when within is not nil).
func values(doc map[string]any, t Target, within *Attribute) []any {
	var top any
	if within != nil {
		top = doc[t.Sub.Name]
		return nonEmpty(asList(top))
	}
	top = lookup(doc, t.URN, t.Attr.Name)
	if t.Sub == nil {
		return nonEmpty(asList(top))
	}
	var out []any
	for _, v := range asList(top) {
		if m, ok := v.(map[string]any); ok {
			out = append(out, nonEmpty(asList(m[t.Sub.Name]))...)
		}
	}
	return out
}

func lookup(doc map[string]any, urn, name string) any {
	if urn != "" && urn != UserSchema && urn != GroupSchema {
		ext, _ := doc[urn].(map[string]any)
		return ext[name]
	}
	return doc[name]
}

func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

func nonEmpty(list []any) []any {
	out := list[:0:0]
	for _, v := range list {
		if !empty(v) {
			out = append(out, v)
		}
	}
	return out
}

func anyHolds(vals []any, a *Attribute, c *Compare) bool {
	for _, v := range vals {
		if holds(v, a, c) {
			return true
		}
	}
	return false
}

func holds(v any, a *Attribute, c *Compare) bool {
	switch a.Type {
	case TypeBoolean:
		b, ok := v.(bool)
		return ok && b == c.Value.(bool)
	case TypeDecimal, TypeInteger:
		n, ok := v.(json.Number)
		f, err := n.Float64()
		if !ok || err != nil {
			return false
		}
		return order(compareFloat(f, c.Value.(float64)), c.Op)
	case TypeDateTime:
		s, _ := v.(string)
		got, err1 := time.Parse(time.RFC3339, s)
		want, err2 := time.Parse(time.RFC3339, c.Value.(string))
		if err1 != nil || err2 != nil {
			return false
		}
		return order(got.Compare(want), c.Op)
	}
	s, ok := v.(string)
	if !ok {
		return false
	}
	want := c.Value.(string)
	if !a.CaseExact {
		s, want = Fold(s), Fold(want)
	}
	switch c.Op {
	case "co":
		return strings.Contains(s, want)
	case "sw":
		return strings.HasPrefix(s, want)
	case "ew":
		return strings.HasSuffix(s, want)
	}
	return order(strings.Compare(s, want), c.Op)
}

// Fold is how case-insensitive strings are compared and ordered.
func Fold(s string) string { return strings.ToLower(s) }

func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func order(cmp int, op string) bool {
	switch op {
	case "eq":
		return cmp == 0
	case "gt":
		return cmp > 0
	case "ge":
		return cmp >= 0
	case "lt":
		return cmp < 0
	case "le":
		return cmp <= 0
	}
	return false
}

// Folded is r with every case-insensitive string value folded (Fold), the
// copy a store compares case-insensitive filters against, so that every
// backend folds exactly as Match does.
func (rt *ResourceType) Folded(r Resource) Resource {
	out := Resource{}
	for name, v := range r {
		if ext := rt.extension(name); ext != nil {
			sub := map[string]any{}
			extAttrs(ext, v, func(an string, a *Attribute, av any) { sub[an] = foldValue(a, av) })
			out[name] = sub
			continue
		}
		_, a, _, err := rt.Resolve(AttrPath{Attr: name})
		if err != nil {
			out[name] = v
			continue
		}
		out[name] = foldValue(a, v)
	}
	return out
}

func foldValue(a *Attribute, v any) any {
	switch x := v.(type) {
	case string:
		if !a.CaseExact && a.Type != TypeBinary && a.Type != TypeDateTime {
			return Fold(x)
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			out[i] = foldValue(a, item)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, sv := range x {
			if sub := a.Sub(k); sub != nil {
				out[k] = foldValue(sub, sv)
			} else {
				out[k] = sv
			}
		}
		return out
	}
	return v
}

// TargetOf resolves a filter's attribute path (relative to within, the
// attribute of a value filter, when not nil), as Match does.
func (rt *ResourceType) TargetOf(p AttrPath, within *Attribute) (Target, *Error) {
	return rt.target(p, within)
}
