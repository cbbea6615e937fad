package scim

import (
	"strings"
)

// Projection is a request's attributes or excludedAttributes (RFC 7644
// §3.4.2.5): which attributes a response carries.
type Projection struct {
	only    []AttrPath // attributes: only these (and those returned always)
	exclude []AttrPath // excludedAttributes: not these
}

// ParseProjection reads the two query parameters (comma-separated
// attribute paths); a request names at most one of them.
func (rt *ResourceType) ParseProjection(attributes, excluded string) (Projection, *Error) {
	if attributes != "" && excluded != "" {
		return Projection{}, Errorf(400, InvalidValue, "give attributes or excludedAttributes, not both")
	}
	parse := func(list string) ([]AttrPath, *Error) {
		var out []AttrPath
		for _, item := range strings.Split(list, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			p, err := parseAttrPath(item)
			if err != nil {
				return nil, Errorf(400, InvalidPath, "%s", err.Detail)
			}
			if _, _, _, err := rt.Resolve(p); err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		return out, nil
	}
	var p Projection
	var err *Error
	if p.only, err = parse(attributes); err != nil {
		return p, err
	}
	p.exclude, err = parse(excluded)
	return p, err
}

// Apply returns the attributes of doc (a full representation: schemas, id,
// meta, the attributes, extensions under their URN) that the response
// carries: returned "always" ones always, "never" ones never, "request"
// ones only when asked for, "default" ones unless excluded or not asked
// for.
func (rt *ResourceType) Apply(p Projection, doc map[string]any) map[string]any {
	out := map[string]any{}
	for name, v := range doc {
		if ext := rt.extension(name); ext != nil {
			sub := map[string]any{}
			extAttrs(ext, v, func(_ string, a *Attribute, av any) {
				if pv, ok := rt.pick(p, AttrPath{URN: ext.ID, Attr: a.Name}, a, av); ok {
					sub[a.Name] = pv
				}
			})
			if len(sub) > 0 {
				out[ext.ID] = sub
			}
			continue
		}
		urn, a, _, err := rt.Resolve(AttrPath{Attr: name})
		if err != nil {
			continue
		}
		if pv, ok := rt.pick(p, AttrPath{URN: urn, Attr: a.Name}, a, v); ok {
			out[name] = pv
		}
	}
	return out
}

// pick decides one attribute (and, for a complex one, its sub-attributes).
func (rt *ResourceType) pick(p Projection, path AttrPath, a *Attribute, v any) (any, bool) {
	switch a.Returned {
	case ReturnedAlways:
		return v, true
	case ReturnedNever:
		return nil, false
	}
	if len(p.only) > 0 {
		whole, subs := p.named(path, p.only)
		switch {
		case whole:
			return v, true
		case len(subs) > 0 && a.Type == TypeComplex:
			return keepSubs(v, func(name string) bool { return containsFold(subs, name) }), true
		}
		return nil, false
	}
	if a.Returned == ReturnedRequest {
		return nil, false
	}
	whole, subs := p.named(path, p.exclude)
	switch {
	case whole:
		return nil, false
	case len(subs) > 0 && a.Type == TypeComplex:
		return keepSubs(v, func(name string) bool { return !containsFold(subs, name) }), true
	}
	return v, true
}

// named reports whether list names the attribute at path whole, or which
// of its sub-attributes it names.
func (Projection) named(path AttrPath, list []AttrPath) (whole bool, subs []string) {
	for _, q := range list {
		sameSchema := strings.EqualFold(q.URN, path.URN) || (q.URN == "" && (path.URN == UserSchema || path.URN == GroupSchema || path.URN == ""))
		if !sameSchema || !strings.EqualFold(q.Attr, path.Attr) {
			continue
		}
		if q.Sub == "" {
			return true, nil
		}
		subs = append(subs, q.Sub)
	}
	return false, subs
}

func keepSubs(v any, keep func(string) bool) any {
	filter := func(m map[string]any) map[string]any {
		out := map[string]any{}
		for k, sv := range m {
			if keep(k) {
				out[k] = sv
			}
		}
		return out
	}
	switch x := v.(type) {
	case map[string]any:
		return filter(x)
	case []any:
		out := make([]any, 0, len(x))
		for _, item := range x {
			if m, ok := item.(map[string]any); ok {
				out = append(out, filter(m))
			}
		}
		return out
	}
	return v
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
