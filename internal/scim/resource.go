package scim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Resource is a resource's attributes as JSON decodes them (numbers as
// json.Number), names in their schema's case, an extension's attributes
// under its URN. id, meta and schemas are not part of it: the server
// writes them.
type Resource map[string]any

// MaxStringLength bounds one string value; the request body's cap bounds
// the whole.
const MaxStringLength = 8192

// Decode reads one JSON object, refusing what JSON does not allow and
// anything after the object.
func Decode(r io.Reader) (map[string]any, *Error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return nil, Errorf(400, InvalidSyntax, "the body is not a JSON object: %s", jsonProblem(err))
	}
	if dec.More() {
		return nil, Errorf(400, InvalidSyntax, "the body has more than one JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, Errorf(400, InvalidSyntax, "the body has more than one JSON value")
	}
	return v, nil
}

// jsonProblem describes a decoding error without quoting the input.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return "the body must be a JSON object"
	case err == io.EOF:
		return "it is empty"
	case err == io.ErrUnexpectedEOF:
		return "it ends in the middle of a value"
	}
	return "invalid JSON"
}

// Check validates a client's representation of a resource of type rt (a
// POST or PUT body, or the result of a PATCH) and returns it normalized:
// attribute names in their schema's case, read-only attributes dropped
// (RFC 7644 §3.5.1 says they are ignored), "schemas" checked. Unknown
// attributes and values of the wrong type are refused.
func (rt *ResourceType) Check(in map[string]any) (Resource, *Error) {
	out := Resource{}
	schemas, err := rt.checkSchemas(in["schemas"], in)
	if err != nil {
		return nil, err
	}
	for name, v := range in {
		switch {
		case strings.EqualFold(name, "schemas"), strings.EqualFold(name, "id"), strings.EqualFold(name, "meta"):
			continue // the server's
		case strings.EqualFold(name, "externalId"):
			if v == nil {
				continue
			}
			s, ok := v.(string)
			if !ok {
				return nil, Errorf(400, InvalidValue, "externalId must be a string")
			}
			out["externalId"] = s
			continue
		}
		if ext := rt.extension(name); ext != nil {
			if !schemas[ext.ID] {
				return nil, Errorf(400, InvalidValue, "the extension %s is used but not listed in schemas", ext.ID)
			}
			obj, ok := v.(map[string]any)
			if !ok {
				return nil, Errorf(400, InvalidValue, "%s must be an object of the extension's attributes", ext.ID)
			}
			attrs, err := checkAttrs(ext, obj, ext.ID+":")
			if err != nil {
				return nil, err
			}
			if len(attrs) > 0 {
				out[ext.ID] = attrs
			}
			continue
		}
		a := rt.Schema.Attr(name)
		if a == nil {
			return nil, Errorf(400, InvalidSyntax, "%q is not an attribute of the %s resource", name, rt.Name)
		}
		if a.Mutability == ReadOnly || v == nil {
			continue
		}
		cv, err := checkValue(a, v, a.Name)
		if err != nil {
			return nil, err
		}
		if !empty(cv) {
			out[a.Name] = cv
		}
	}
	for _, a := range rt.Schema.Attributes {
		if a.Required && empty(out[a.Name]) {
			return nil, Errorf(400, InvalidValue, "%s is required", a.Name)
		}
	}
	return out, nil
}

// checkSchemas: "schemas" lists the core schema and only known extensions.
func (rt *ResourceType) checkSchemas(v any, in map[string]any) (map[string]bool, *Error) {
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return nil, Errorf(400, InvalidValue, "schemas must list %s", rt.Schema.ID)
	}
	seen := map[string]bool{}
	for _, s := range list {
		urn, ok := s.(string)
		if !ok {
			return nil, Errorf(400, InvalidValue, "schemas must be a list of URNs")
		}
		switch ext := rt.extension(urn); {
		case strings.EqualFold(urn, rt.Schema.ID):
			seen[rt.Schema.ID] = true
		case ext != nil:
			seen[ext.ID] = true
		default:
			return nil, Errorf(400, InvalidValue, "schemas: %q is not a schema of the %s resource", urn, rt.Name)
		}
	}
	if !seen[rt.Schema.ID] {
		return nil, Errorf(400, InvalidValue, "schemas must list %s", rt.Schema.ID)
	}
	return seen, nil
}

func (rt *ResourceType) extension(urn string) *Schema {
	for _, ext := range rt.Extensions {
		if strings.EqualFold(urn, ext.ID) {
			return ext
		}
	}
	return nil
}

// extAttrs calls fn with each member of the extension object v that ext
// defines, as written and with its definition; members ext does not define,
// and a v that is not an object, are passed over.
func extAttrs(ext *Schema, v any, fn func(name string, a *Attribute, av any)) {
	obj, _ := v.(map[string]any)
	for an, av := range obj {
		if a := ext.Attr(an); a != nil {
			fn(an, a, av)
		}
	}
}

func checkAttrs(s *Schema, obj map[string]any, prefix string) (map[string]any, *Error) {
	out := map[string]any{}
	for name, v := range obj {
		a := s.Attr(name)
		if a == nil {
			return nil, Errorf(400, InvalidSyntax, "%q is not an attribute of %s", prefix+name, s.ID)
		}
		if a.Mutability == ReadOnly || v == nil {
			continue
		}
		cv, err := checkValue(a, v, prefix+a.Name)
		if err != nil {
			return nil, err
		}
		if !empty(cv) {
			out[a.Name] = cv
		}
	}
	return out, nil
}

// checkValue checks one attribute's value against its definition.
func checkValue(a *Attribute, v any, path string) (any, *Error) {
	if a.MultiValued {
		list, ok := v.([]any)
		if !ok {
			return nil, Errorf(400, InvalidValue, "%s is multi-valued: its value must be a JSON array", path)
		}
		out := make([]any, 0, len(list))
		primaries := 0
		for _, item := range list {
			if item == nil {
				continue
			}
			cv, err := checkSingle(a, item, path)
			if err != nil {
				return nil, err
			}
			if m, ok := cv.(map[string]any); ok {
				if p, _ := m["primary"].(bool); p {
					primaries++
				}
				if len(m) == 0 {
					continue
				}
			}
			out = append(out, cv)
		}
		if primaries > 1 {
			return nil, Errorf(400, InvalidValue, "%s: at most one value may be primary", path)
		}
		return out, nil
	}
	return checkSingle(a, v, path)
}

func checkSingle(a *Attribute, v any, path string) (any, *Error) {
	bad := func(want string) *Error {
		return Errorf(400, InvalidValue, "%s must be %s", path, want)
	}
	switch a.Type {
	case TypeComplex:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, bad("an object")
		}
		out := map[string]any{}
		for name, sv := range obj {
			sub := a.Sub(name)
			if sub == nil {
				return nil, Errorf(400, InvalidSyntax, "%q is not a sub-attribute of %s", name, path)
			}
			if sub.Mutability == ReadOnly || sv == nil {
				continue
			}
			cv, err := checkSingle(sub, sv, path+"."+sub.Name)
			if err != nil {
				return nil, err
			}
			out[sub.Name] = cv
		}
		return out, nil
	case TypeBoolean:
		b, ok := v.(bool)
		if !ok {
			return nil, bad("true or false")
		}
		return b, nil
	case TypeDecimal:
		n, ok := v.(json.Number)
		if !ok {
			return nil, bad("a number")
		}
		return n, nil
	case TypeInteger:
		n, ok := v.(json.Number)
		if _, err := n.Int64(); !ok || err != nil {
			return nil, bad("an integer")
		}
		return n, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, bad("a string")
	}
	if len(s) > MaxStringLength {
		return nil, Errorf(400, InvalidValue, "%s is longer than %d bytes", path, MaxStringLength)
	}
	switch a.Type {
	case TypeDateTime:
		if _, err := time.Parse(time.RFC3339, s); err != nil {
			return nil, bad("a date and time such as 2026-12-02T10:00:00Z")
		}
	case TypeBinary:
		if _, err := base64.StdEncoding.DecodeString(s); err != nil {
			return nil, bad("base64")
		}
	}
	return s, nil
}

// empty is a value that counts as unassigned (RFC 7643 §2.5: null, an
// empty array or an empty complex value).
func empty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	case string:
		return x == ""
	}
	return false
}

// Clone copies a resource deeply, so a PATCH works on its own copy.
func (r Resource) Clone() Resource {
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(map[string]any(r))
	out, _ := Decode(&buf)
	return out
}
