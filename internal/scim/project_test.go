package scim

import "testing"

func TestProjection(t *testing.T) {
	full := decode(t, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
	  "id":"u1","meta":{"resourceType":"User"},"userName":"bjensen","password":"never-shown","name":{"givenName":"B","familyName":"J"},
	  "emails":[{"value":"a@x","type":"work"}],
	  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"7","department":"R&D"}}`)
	for _, tc := range []struct{ attributes, excluded, want string }{
		{"", "", `{"emails":[{"type":"work","value":"a@x"}],"id":"u1","meta":{"resourceType":"User"},"name":{"familyName":"J","givenName":"B"},"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"R\u0026D","employeeNumber":"7"},"userName":"bjensen"}`},
		{"userName", "", `{"id":"u1","schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"userName":"bjensen"}`},
		{"USERNAME, name.givenName, emails.value", "", `{"emails":[{"value":"a@x"}],"id":"u1","name":{"givenName":"B"},"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"userName":"bjensen"}`},
		{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "", `{"id":"u1","schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"7"}}`},
		{"", "emails,meta,name.familyName,id,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", `{"id":"u1","name":{"givenName":"B"},"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"7"},"userName":"bjensen"}`},
		{"password", "", `{"id":"u1","schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]}`},
	} {
		p, err := Users.ParseProjection(tc.attributes, tc.excluded)
		if err != nil {
			t.Fatalf("%q %q: %v", tc.attributes, tc.excluded, err)
		}
		if got := encode(Users.Apply(p, full)); got != tc.want {
			t.Errorf("%q %q\n got %s\nwant %s", tc.attributes, tc.excluded, got, tc.want)
		}
	}
	for _, tc := range [][2]string{{"badge", ""}, {"", "name.first"}, {"userName", "emails"}} {
		if _, err := Users.ParseProjection(tc[0], tc[1]); err == nil {
			t.Errorf("%q %q: accepted", tc[0], tc[1])
		}
	}
}

func TestQuery(t *testing.T) {
	n := func(i int) *int { return &i }
	for _, tc := range []struct {
		p             Params
		start, count  int
		desc, hasSort bool
	}{
		{Params{}, 1, 100, false, false},
		{Params{StartIndex: n(0), Count: n(-5)}, 1, 0, false, false},
		{Params{StartIndex: n(7), Count: n(1000)}, 7, 100, false, false},
		{Params{SortBy: "name.familyName", SortOrder: "Descending"}, 1, 100, true, true},
		{Params{SortBy: "emails"}, 1, 100, false, true}, // emails.value
	} {
		q, err := Users.Query(tc.p, 100)
		if err != nil {
			t.Fatalf("%+v: %v", tc.p, err)
		}
		if q.StartIndex != tc.start || q.Count != tc.count || q.Descending != tc.desc || (q.SortBy != nil) != tc.hasSort {
			t.Errorf("%+v: %+v", tc.p, q)
		}
	}
	for _, p := range []Params{{SortBy: "name"}, {SortBy: "badge"}, {SortOrder: "up"}, {Filter: "userName eq"}, {Filter: `badge eq "x"`}} {
		if _, err := Users.Query(p, 100); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	if _, err := ParamsFromQuery(func(k string) string { return map[string]string{"count": "ten"}[k] }); err == nil || err.ScimType != InvalidValue {
		t.Errorf("count=ten: %v", err)
	}
	p, err := ParamsFromSearch(decode(t, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"attributes":["userName","emails"],"filter":"userName sw \"b\"","startIndex":2,"count":10}`))
	if err != nil || p.Attributes != "userName,emails" || *p.StartIndex != 2 || *p.Count != 10 || p.Filter != `userName sw "b"` {
		t.Errorf("search body: %+v %v", p, err)
	}
	if _, err := ParamsFromSearch(decode(t, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filtre":"x"}`)); err == nil {
		t.Error("unknown search member accepted")
	}
}
