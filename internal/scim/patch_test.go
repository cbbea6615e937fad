package scim

import (
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`userName`, `userName`},
		{`name.familyName`, `name.familyName`},
		{`emails[type eq "work"]`, `emails[type eq "work"]`},
		{`emails[type eq "work"].value`, `emails[type eq "work"].value`},
		{`members[value eq "2819c223-7f76-453a-919d-413861904646"]`, `members[value eq "2819c223-7f76-453a-919d-413861904646"]`},
		{`addresses[type eq "work" and primary eq true].streetAddress`, `addresses[(type eq "work" and primary eq true)].streetAddress`},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager`, `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager`},
	} {
		p, err := ParsePath(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := p.String(); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.in, got, tc.want)
		}
	}
	for _, in := range []string{``, `[type eq "x"]`, `emails[type eq "x"`, `emails[type eq "x"]value`, `emails[type eq "x"].a.b`, `name.familyName[x pr]`, `a b`, `emails[type eq "x"] extra`} {
		if _, err := ParsePath(in); err == nil || err.ScimType != InvalidPath {
			t.Errorf("%q: %v, want invalidPath", in, err)
		}
	}
}

func patch(t *testing.T, rt *ResourceType, doc, ops string) (Resource, *Error) {
	t.Helper()
	r, err := rt.Check(decode(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	parsed, perr := DecodePatch(decode(t, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":`+ops+`}`), 10)
	if perr != nil {
		return nil, perr
	}
	out, perr := rt.Patch(r, parsed)
	if perr == nil && encode(r) != encode(mustCheck(t, rt, doc)) {
		t.Errorf("Patch changed its input")
	}
	return out, perr
}

func mustCheck(t *testing.T, rt *ResourceType, doc string) Resource {
	r, err := rt.Check(decode(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestPatch(t *testing.T) {
	const user = `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bjensen",
	  "name":{"givenName":"Barbara"},
	  "emails":[{"value":"b@work.example","type":"work","primary":true},{"value":"b@home.example","type":"home"}]}`
	for _, tc := range []struct{ name, ops, want string }{
		{"replace a simple attribute", `[{"op":"replace","path":"userName","value":"babs"}]`,
			`"userName":"babs"`},
		{"add a sub-attribute", `[{"op":"add","path":"name.familyName","value":"Jensen"}]`,
			`"name":{"familyName":"Jensen","givenName":"Barbara"}`},
		{"names are case-insensitive", `[{"op":"Replace","path":"NAME.GIVENNAME","value":"Babs"}]`,
			`"name":{"givenName":"Babs"}`},
		{"add without a path", `[{"op":"add","value":{"nickName":"Babs","emails":[{"value":"b@other.example","type":"other"}]}}]`,
			`"emails":[{"primary":true,"type":"work","value":"b@work.example"},{"type":"home","value":"b@home.example"},{"type":"other","value":"b@other.example"}],"name":{"givenName":"Barbara"},"nickName":"Babs"`},
		{"add a value that is already there", `[{"op":"add","path":"emails","value":[{"value":"b@home.example","type":"home"}]}]`,
			`"emails":[{"primary":true,"type":"work","value":"b@work.example"},{"type":"home","value":"b@home.example"}]`},
		{"a new primary value demotes the old", `[{"op":"add","path":"emails","value":[{"value":"n@example","primary":true}]}]`,
			`"emails":[{"type":"work","value":"b@work.example"},{"type":"home","value":"b@home.example"},{"primary":true,"value":"n@example"}]`},
		{"replace the sub-attribute of matched values", `[{"op":"replace","path":"emails[type eq \"work\"].value","value":"new@work.example"}]`,
			`"emails":[{"primary":true,"type":"work","value":"new@work.example"},{"type":"home","value":"b@home.example"}]`},
		{"replace matched values", `[{"op":"replace","path":"emails[type eq \"home\"]","value":{"value":"h2@example","type":"home"}}]`,
			`"emails":[{"primary":true,"type":"work","value":"b@work.example"},{"type":"home","value":"h2@example"}]`},
		{"remove matched values", `[{"op":"remove","path":"emails[type eq \"work\"]"}]`,
			`"emails":[{"type":"home","value":"b@home.example"}]`},
		{"remove a sub-attribute of matched values", `[{"op":"remove","path":"emails[type eq \"home\"].type"}]`,
			`"emails":[{"primary":true,"type":"work","value":"b@work.example"},{"value":"b@home.example"}]`},
		{"remove all values", `[{"op":"remove","path":"emails"}]`, `"name":{"givenName":"Barbara"},"userName":"bjensen"}`},
		{"replace all values", `[{"op":"replace","path":"emails","value":[{"value":"only@example"}]}]`,
			`"emails":[{"value":"only@example"}]`},
		{"value filter with and", `[{"op":"replace","path":"emails[type eq \"work\" and value co \"@work\"].type","value":"other"}]`,
			`{"primary":true,"type":"other","value":"b@work.example"}`},
		{"the extension, by path", `[{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber","value":"42"}]`,
			`"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"42"}`},
		{"the extension, without a path", `[{"op":"add","value":{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"m1"}}}}]`,
			`"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"m1"}}`},
		{"operations apply in order", `[{"op":"add","path":"title","value":"A"},{"op":"replace","path":"title","value":"B"}]`,
			`"title":"B"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := patch(t, Users, user, tc.ops)
			if err != nil {
				t.Fatal(err)
			}
			if got := encode(out); !strings.Contains(got, tc.want) {
				t.Errorf("got %s\nwant it to contain %s", got, tc.want)
			}
		})
	}
}

func TestPatchRefuses(t *testing.T) {
	const user = `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bjensen","emails":[{"value":"b@work.example","type":"work"}]}`
	for _, tc := range []struct{ name, ops, scimType, detail string }{
		{"no target", `[{"op":"replace","path":"emails[type eq \"home\"].value","value":"x"}]`, NoTarget, `no value of emails matches type eq "home"`},
		{"remove without a path", `[{"op":"remove"}]`, NoTarget, "remove needs a path"},
		{"read-only attribute", `[{"op":"replace","path":"groups","value":[]}]`, Mutability, "groups is read-only"},
		{"the server's attribute", `[{"op":"replace","path":"id","value":"x"}]`, Mutability, "id is the server's"},
		{"required attribute", `[{"op":"remove","path":"userName"}]`, Mutability, "userName is required"},
		{"unknown attribute", `[{"op":"add","path":"badge","value":"x"}]`, InvalidPath, `"badge" is not an attribute`},
		{"wrong type, all or nothing", `[{"op":"replace","path":"title","value":"ok"},{"op":"replace","path":"active","value":"yes"}]`, InvalidValue, "active must be true or false"},
		{"bad op", `[{"op":"move","path":"title"}]`, InvalidSyntax, "op must be add, remove or replace"},
		{"bad path", `[{"op":"add","path":"emails[type eq","value":"x"}]`, InvalidPath, `path "emails[type eq"`},
		{"filter on a simple attribute", `[{"op":"add","path":"userName[value eq \"x\"]","value":"x"}]`, InvalidPath, "takes no value filter"},
		{"unknown member", `[{"op":"add","path":"title","value":"x","from":"y"}]`, InvalidSyntax, `"from" is not a member`},
		{"too many", `[` + strings.Repeat(`{"op":"add","path":"title","value":"x"},`, 10) + `{"op":"add","path":"title","value":"x"}]`, TooMany, "at most 10 operations"},
		{"add without a value", `[{"op":"add","path":"title"}]`, InvalidValue, "add needs a value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := patch(t, Users, user, tc.ops)
			if err == nil || err.Status != 400 || err.ScimType != tc.scimType || !strings.Contains(err.Detail, tc.detail) {
				t.Errorf("%v, want %s %q", err, tc.scimType, tc.detail)
			}
		})
	}
}

func TestPatchGroupMembers(t *testing.T) {
	const group = `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Tour Guides","members":[{"value":"u1"},{"value":"u2"}]}`
	out, err := patch(t, Groups, group, `[{"op":"add","path":"members","value":[{"value":"u3"},{"value":"u1"}]},{"op":"remove","path":"members[value eq \"u2\"]"}]`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := encode(out["members"]), `[{"value":"u1"},{"value":"u3"}]`; got != want {
		t.Errorf("members %s, want %s", got, want)
	}
}
