package scim

import (
	"encoding/json"
	"strings"
	"testing"
)

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	m, err := Decode(strings.NewReader(s))
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

func encode(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

const bjensen = `{
  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
  "id": "ignored", "meta": {"version": "W/\"1\""},
  "externalId": "701984",
  "USERNAME": "bjensen@example.com",
  "name": {"familyName": "Jensen", "givenName": "Barbara"},
  "active": true,
  "emails": [
    {"value": "bjensen@example.com", "type": "work", "primary": true},
    {"value": "babs@jensen.org", "type": "home"}
  ],
  "groups": [{"value": "e9e30dba"}],
  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984", "manager": {"value": "26118915"}}
}`

func TestCheckNormalizes(t *testing.T) {
	r, err := Users.Check(decode(t, bjensen))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"active":true,"emails":[{"primary":true,"type":"work","value":"bjensen@example.com"},{"type":"home","value":"babs@jensen.org"}],"externalId":"701984","name":{"familyName":"Jensen","givenName":"Barbara"},"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"701984","manager":{"value":"26118915"}},"userName":"bjensen@example.com"}`
	if got := encode(r); got != want {
		t.Errorf("normalized\n got %s\nwant %s", got, want)
	}
}

func TestCheckRefuses(t *testing.T) {
	for _, tc := range []struct{ body, scimType, detail string }{
		{`{"userName":"a"}`, InvalidValue, "schemas must list urn:ietf:params:scim:schemas:core:2.0:User"},
		{`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"userName":"a"}`, InvalidValue, `schemas: "urn:ietf:params:scim:schemas:core:2.0:Group" is not a schema of the User resource`},
		{`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]}`, InvalidValue, "userName is required"},
		{`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":""}`, InvalidValue, "userName is required"},
		{`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a","nickname2":"x"}`, InvalidSyntax, `"nickname2" is not an attribute of the User resource`},
		{`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":7}`, InvalidValue, "userName must be a string"},
		{`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a","active":"yes"}`, InvalidValue, "active must be true or false"},
		{`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a","emails":{"value":"x"}}`, InvalidValue, "emails is multi-valued: its value must be a JSON array"},
		{`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a","emails":[{"value":"x","kind":"work"}]}`, InvalidSyntax, `"kind" is not a sub-attribute of emails`},
		{`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a","emails":[{"value":"x","primary":true},{"value":"y","primary":true}]}`, InvalidValue, "emails: at most one value may be primary"},
		{`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a","name":"Barbara"}`, InvalidValue, "name must be an object"},
		{`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"1"}}`, InvalidValue, "is used but not listed in schemas"},
		{`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"userName":"a","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"badge":"1"}}`, InvalidSyntax, `"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:badge" is not an attribute`},
		{`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a","x509Certificates":[{"value":"not base64!"}]}`, InvalidValue, "x509Certificates.value must be base64"},
		{`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"` + strings.Repeat("a", MaxStringLength+1) + `"}`, InvalidValue, "userName is longer than 8192 bytes"},
	} {
		_, err := Users.Check(decode(t, tc.body))
		if err == nil || err.Status != 400 || err.ScimType != tc.scimType || !strings.Contains(err.Detail, tc.detail) {
			t.Errorf("%.80s: %v, want %s %q", tc.body, err, tc.scimType, tc.detail)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, tc := range []struct{ body, detail string }{
		{``, "it is empty"},
		{`{"a":`, "it ends in the middle of a value"},
		{`{"a":1}{"b":2}`, "more than one JSON value"},
		{`[1,2]`, "the body must be a JSON object"},
		{`{"a": tru}`, "invalid JSON at byte"},
	} {
		_, err := Decode(strings.NewReader(tc.body))
		if err == nil || err.ScimType != InvalidSyntax || !strings.Contains(err.Detail, tc.detail) {
			t.Errorf("%q: %v, want invalidSyntax %q", tc.body, err, tc.detail)
		}
	}
}

func TestMatch(t *testing.T) {
	r, err := Users.Check(decode(t, bjensen))
	if err != nil {
		t.Fatal(err)
	}
	r["meta"] = map[string]any{"lastModified": "2026-11-30T10:00:00Z"}
	for _, tc := range []struct {
		filter string
		want   bool
	}{
		{`userName eq "BJensen@Example.com"`, true}, // caseExact false
		{`externalId eq "701984"`, true},
		{`externalId eq "701984 "`, false},
		{`userName ne "bjensen@example.com"`, false},
		{`userName co "jensen"`, true},
		{`userName sw "bj"`, true},
		{`userName ew ".COM"`, true},
		{`userName gt "a"`, true},
		{`userName lt "a"`, false},
		{`userName ge "bjensen@example.com"`, true},
		{`userName le "bjensen@example.com"`, true},
		{`title pr`, false},
		{`name pr`, true},
		{`title eq null`, true},
		{`name.givenName eq null`, false},
		{`name.familyName co "ens"`, true},
		{`emails co "jensen.org"`, true}, // emails.value
		{`emails.type eq "home"`, true},
		{`emails ne "babs@jensen.org"`, false}, // ne is not(eq) over every value
		{`emails[type eq "work" and value co "@example.com"]`, true},
		{`emails[type eq "home" and value co "@example.com"]`, false},
		{`emails[not (type eq "work")]`, true},
		{`emails[primary eq true]`, true},
		{`active eq true`, true},
		{`active ne true`, false},
		{`meta.lastModified gt "2026-11-30T09:00:00+00:00"`, true},
		{`meta.lastModified lt "2026-11-30T11:00:00+01:00"`, false}, // 10:00Z is after 09:00Z
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984"`, true},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915"`, true},
		{`title pr or userName sw "b" and active eq false`, false},
		{`(title pr or userName sw "b") and active eq true`, true},
		{`not (userName sw "b")`, false},
	} {
		e, perr := ParseFilter(tc.filter)
		if perr != nil {
			t.Fatalf("%s: %v", tc.filter, perr)
		}
		if cerr := Users.CheckFilter(e); cerr != nil {
			t.Fatalf("%s: %v", tc.filter, cerr)
		}
		if got := Users.Match(e, r); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.filter, got, tc.want)
		}
	}
}

func TestCheckFilterRefuses(t *testing.T) {
	for _, tc := range []struct{ filter, detail string }{
		{`nickname2 eq "x"`, `"nickname2" is not an attribute of the User resource`},
		{`name.first eq "x"`, `"name.first" is not an attribute of the User resource`},
		{`urn:example:ext:badge eq "x"`, `"urn:example:ext" is not a schema of the User resource`},
		{`password eq "x"`, `"password" cannot be filtered on`},
		{`active eq "yes"`, "active is a boolean"},
		{`active gt true`, "active is a boolean"},
		{`name eq "x"`, `"name" is complex: compare one of its sub-attributes`},
		{`userName eq 3`, "userName is a string"},
		{`meta.created gt "yesterday"`, "meta.created is a date and time"},
		{`userName[value eq "x"]`, `"userName" is not a multi-valued complex attribute`},
		{`emails[kind eq "x"]`, `"kind" is not a sub-attribute of emails`},
		{`userName gt null`, "null compares only with eq and ne"},
		{`x509Certificates.value eq "x"`, "is binary and cannot be filtered on"},
	} {
		e, err := ParseFilter(tc.filter)
		if err != nil {
			t.Fatalf("%s: %v", tc.filter, err)
		}
		cerr := Users.CheckFilter(e)
		if cerr == nil || cerr.ScimType != InvalidFilter || !strings.Contains(cerr.Detail, tc.detail) {
			t.Errorf("%s: %v, want invalidFilter %q", tc.filter, cerr, tc.detail)
		}
	}
}
