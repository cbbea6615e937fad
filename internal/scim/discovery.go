package scim

// The discovery endpoints (RFC 7644 §4) say exactly what is served: no
// bulk, PATCH, filters up to MaxResults, sorting, ETags, password changes,
// OAuth bearer tokens.

// Limits are what the service provider configuration advertises.
type Limits struct {
	MaxResults   int // a list's largest page
	MaxPatchOps  int // operations in one PATCH
	MaxBodyBytes int // a request body's cap
}

// ServiceProviderConfig is the /ServiceProviderConfig document; base is
// the profile's URL (https://id.example.com/scim/v2).
func ServiceProviderConfig(base string, l Limits) map[string]any {
	return map[string]any{
		"schemas":          []string{SPConfigSchema},
		"documentationUri": "https://github.com/keygate/keygate#user-management-scim",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": l.MaxResults},
		"changePassword":   map[string]any{"supported": true},
		"sort":             map[string]any{"supported": true},
		"etag":             map[string]any{"supported": true},
		"authenticationSchemes": []map[string]any{{
			"type":        "oauthbearertoken",
			"name":        "OAuth Bearer Token",
			"description": "An access token of the profile's token profile, with the read or write scope (RFC 6750).",
			"specUri":     "https://www.rfc-editor.org/rfc/rfc6750",
			"primary":     true,
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": base + "/ServiceProviderConfig"},
	}
}

// ResourceTypeDoc is a /ResourceTypes entry.
func (rt *ResourceType) ResourceTypeDoc(base string) map[string]any {
	exts := []map[string]any{}
	for _, e := range rt.Extensions {
		exts = append(exts, map[string]any{"schema": e.ID, "required": false})
	}
	return map[string]any{
		"schemas":          []string{ResourceTypeSchema},
		"id":               rt.Name,
		"name":             rt.Name,
		"endpoint":         rt.Endpoint,
		"description":      rt.Schema.Description,
		"schema":           rt.Schema.ID,
		"schemaExtensions": exts,
		"meta":             map[string]any{"resourceType": "ResourceType", "location": base + "/ResourceTypes/" + rt.Name},
	}
}

// SchemaDoc is a /Schemas entry.
func (s *Schema) SchemaDoc(base string) map[string]any {
	return map[string]any{
		"schemas":     []string{SchemaSchema},
		"id":          s.ID,
		"name":        s.Name,
		"description": s.Description,
		"attributes":  s.Attributes,
		"meta":        map[string]any{"resourceType": "Schema", "location": base + "/Schemas/" + s.ID},
	}
}

// ResourceTypes are the served resource types, in order.
var ResourceTypes = []*ResourceType{Users, Groups}

// ListResponse is a list's body (RFC 7644 §3.4.2).
func ListResponse(total, startIndex int, resources []map[string]any) map[string]any {
	if resources == nil {
		resources = []map[string]any{}
	}
	return map[string]any{
		"schemas":      []string{ListResponseSchema},
		"totalResults": total,
		"startIndex":   startIndex,
		"itemsPerPage": len(resources),
		"Resources":    resources,
	}
}
