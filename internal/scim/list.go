package scim

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Query is a list or search request (RFC 7644 §3.4.2, §3.4.3), checked.
type Query struct {
	Filter     Expr    // nil: every resource
	SortBy     *Target // nil: the store's order (creation)
	SortPath   string
	Descending bool
	StartIndex int // 1-based, at least 1
	Count      int // 0..max: 0 asks only for totalResults
	Projection Projection
}

// Params are the request's members as written: the query string of a GET,
// or the body of POST /.search.
type Params struct {
	Filter, SortBy, SortOrder, Attributes, ExcludedAttributes string
	StartIndex, Count                                         *int
}

// ParamsFromQuery reads a GET's query string.
func ParamsFromQuery(get func(string) string) (Params, *Error) {
	p := Params{Filter: get("filter"), SortBy: get("sortBy"), SortOrder: get("sortOrder"),
		Attributes: get("attributes"), ExcludedAttributes: get("excludedAttributes")}
	for name, dst := range map[string]**int{"startIndex": &p.StartIndex, "count": &p.Count} {
		if s := get(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				return p, Errorf(400, InvalidValue, "%s must be an integer", name)
			}
			*dst = &n
		}
	}
	return p, nil
}

// ParamsFromSearch reads a POST /.search body.
func ParamsFromSearch(body map[string]any) (Params, *Error) {
	var p Params
	schemas, _ := body["schemas"].([]any)
	ok := false
	for _, s := range schemas {
		if v, _ := s.(string); strings.EqualFold(v, SearchRequestSchema) {
			ok = true
		}
	}
	if !ok {
		return p, Errorf(400, InvalidSyntax, "schemas must list %s", SearchRequestSchema)
	}
	str := func(name string, v any) (string, *Error) {
		if v == nil {
			return "", nil
		}
		switch x := v.(type) {
		case string:
			return x, nil
		case []any: // attributes may be a JSON array of paths
			var parts []string
			for _, item := range x {
				s, ok := item.(string)
				if !ok {
					return "", Errorf(400, InvalidValue, "%s must be strings", name)
				}
				parts = append(parts, s)
			}
			if name == "attributes" || name == "excludedAttributes" {
				return strings.Join(parts, ","), nil
			}
		}
		return "", Errorf(400, InvalidValue, "%s must be a string", name)
	}
	num := func(name string, v any) (*int, *Error) {
		if v == nil {
			return nil, nil
		}
		n, ok := v.(json.Number)
		i, err := n.Int64()
		if !ok || err != nil {
			return nil, Errorf(400, InvalidValue, "%s must be an integer", name)
		}
		out := int(i)
		return &out, nil
	}
	// The members a SearchRequest may carry, by where each is read to
	// (schemas was checked above).
	strs := map[string]*string{"filter": &p.Filter, "sortBy": &p.SortBy, "sortOrder": &p.SortOrder,
		"attributes": &p.Attributes, "excludedAttributes": &p.ExcludedAttributes}
	nums := map[string]**int{"startIndex": &p.StartIndex, "count": &p.Count}
	var err *Error
	for k, v := range body {
		if dst, ok := strs[k]; ok {
			*dst, err = str(k, v)
		} else if dst, ok := nums[k]; ok {
			*dst, err = num(k, v)
		} else if k != "schemas" {
			err = Errorf(400, InvalidSyntax, "%q is not a member of a SearchRequest", k)
		}
		if err != nil {
			return p, err
		}
	}
	return p, nil
}

// Query checks params for rt. The RFC's edge cases: a startIndex under 1
// is 1; a negative count is 0; a count over maxResults is maxResults;
// without count, maxResults.
func (rt *ResourceType) Query(p Params, maxResults int) (Query, *Error) {
	q := Query{StartIndex: 1, Count: maxResults}
	if p.Filter != "" {
		e, err := ParseFilter(p.Filter)
		if err != nil {
			return q, err.(*Error)
		}
		if err := rt.CheckFilter(e); err != nil {
			return q, err
		}
		q.Filter = e
	}
	if p.SortBy != "" {
		path, err := parseAttrPath(p.SortBy)
		if err != nil {
			return q, Errorf(400, InvalidValue, "sortBy: %s", err.Detail)
		}
		t, terr := rt.target(path, nil)
		if terr != nil {
			return q, Errorf(400, InvalidValue, "sortBy: %s", terr.Detail)
		}
		if t.Compared.Type == TypeComplex || t.Compared.Type == TypeBinary {
			return q, Errorf(400, InvalidValue, "sortBy: %s cannot be sorted on", p.SortBy)
		}
		q.SortBy, q.SortPath = &t, path.String()
	}
	switch strings.ToLower(p.SortOrder) {
	case "", "ascending":
	case "descending":
		q.Descending = true
	default:
		return q, Errorf(400, InvalidValue, "sortOrder must be ascending or descending")
	}
	if p.StartIndex != nil && *p.StartIndex > 1 {
		q.StartIndex = *p.StartIndex
	}
	if p.Count != nil {
		q.Count = min(max(*p.Count, 0), maxResults)
	}
	var err *Error
	q.Projection, err = rt.ParseProjection(p.Attributes, p.ExcludedAttributes)
	return q, err
}
