package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/testkit"
)

const (
	provisionerSecret = "provisioner-secret-0123456789"
	readerSecret      = "reader-secret-0123456789abcd"
)

// scimConfig is a node serving a token profile, a sign-in profile and SCIM
// at /scim/v2 on the given data source.
func scimConfig(t *testing.T, dataSource string) string {
	t.Helper()
	secrets := t.TempDir()
	return testkit.ConfigDir(t, map[string]string{
		"00.yaml": `schema: 1
service-roles:
  default: {zone: eu, profiles: [token, authn, users]}
zones:
  eu: {data-source: db}
data-sources:
  db: ` + dataSource + `
profiles:
  token: {type: token, path: /oauth/v2, issuer: "http://localhost/oauth/v2", signing-keys: [k1], endpoints: [discovery, jwks, token], authentication-profile: authn}
  authn: {type: authentication, path: /authn, authenticators: {password: {type: password}}}
  users: {type: user-management, path: /scim/v2, token-profile: token}
clients:
  provisioner: {profile: token, secret: "` + provisionerSecret + `", grant-types: [client_credentials], scopes: ["scim:read", "scim:write"]}
  reader: {profile: token, secret: "` + readerSecret + `", grant-types: [client_credentials], scopes: ["scim:read"]}
  auditor: {profile: token, secret: "` + readerSecret + `", grant-types: [client_credentials], scopes: ["audit:read"]}
`,
		"10-keys.yaml": testkit.KeysConfig(map[string]string{"k1": testkit.KeyFile(t, secrets, "k1")}),
	})
}

type scimResp struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

func scimCall(t testing.TB, method, u, tok, contentType string, body []byte, headers ...string) scimResp {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	check(t, err)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	check(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := scimResp{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// TestSCIMOverHTTP walks the SCIM surface with real HTTP on SQLite and on
// PostgreSQL: authorization, create/get/replace/patch/delete, filters,
// search, paging, ETags and bad input, each with its SCIM error and
// nothing stored.
func TestSCIMOverHTTP(t *testing.T) {
	for _, backend := range testkit.Backends {
		t.Run(backend, func(t *testing.T) {
			dir := scimConfig(t, testkit.SourceYAML(testkit.DataSource(t, backend)))
			n := startNode(t, dir)
			n.waitReady(t)
			scimWalk(t, n)
			auditWalk(t, n, dir)
		})
	}
}

func scimWalk(t *testing.T, n *node) {
	base := n.Public() + "/scim/v2"
	tok := n.issue(t, url.Values{}, "provisioner", provisionerSecret)
	readTok := n.issue(t, url.Values{}, "reader", readerSecret)
	const ct = "application/scim+json"
	call := func(method, path string, body any, headers ...string) scimResp {
		t.Helper()
		var b []byte
		switch x := body.(type) {
		case nil:
		case string:
			b = []byte(x)
		default:
			b, _ = json.Marshal(x)
		}
		return scimCall(t, method, base+path, tok, ct, b, headers...)
	}
	wantError := func(what string, r scimResp, status int, scimType string) {
		t.Helper()
		schemas, _ := r.body["schemas"].([]any)
		if r.code != status || len(schemas) != 1 || schemas[0] != "urn:ietf:params:scim:api:messages:2.0:Error" ||
			r.body["status"] != fmt.Sprint(status) || (scimType != "" && r.body["scimType"] != scimType) {
			t.Errorf("%s: %d %s; want %d %s", what, r.code, r.raw, status, scimType)
		}
	}
	count := func() float64 {
		t.Helper()
		r := call("GET", "/Users?count=0", nil)
		total, _ := r.body["totalResults"].(float64)
		return total
	}

	// Authorization.
	r := scimCall(t, "GET", base+"/Users", "", "", nil)
	wantError("no token", r, 401, "")
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no token: WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	}
	wantError("a bad token", scimCall(t, "GET", base+"/Users", "not-a-token", "", nil), 401, "")
	wantError("read scope writing", scimCall(t, "POST", base+"/Users", readTok, ct, []byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"x"}`)), 403, "")
	if r := scimCall(t, "GET", base+"/Users", readTok, "", nil); r.code != 200 {
		t.Errorf("read scope reading: %d %s", r.code, r.raw)
	}

	// Discovery.
	if r := call("GET", "/ServiceProviderConfig", nil); r.code != 200 || r.body["patch"].(map[string]any)["supported"] != true || r.body["bulk"].(map[string]any)["supported"] != false {
		t.Errorf("ServiceProviderConfig: %d %s", r.code, r.raw)
	}
	if r := call("GET", "/Schemas", nil); r.code != 200 || r.body["totalResults"] != float64(3) {
		t.Errorf("Schemas: %d %.200s", r.code, r.raw)
	}
	if r := call("GET", "/ResourceTypes/User", nil); r.code != 200 || r.body["endpoint"] != "/Users" {
		t.Errorf("ResourceTypes/User: %d %s", r.code, r.raw)
	}

	// Create.
	bjensen := `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
	  "userName":"BJensen","externalId":"701984","name":{"familyName":"Jensen","givenName":"Barbara"},"password":"correct horse battery",
	  "emails":[{"value":"bjensen@example.com","type":"work","primary":true},{"value":"babs@jensen.org","type":"home"}],
	  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"701984"}}`
	r = call("POST", "/Users", bjensen)
	if r.code != 201 || r.header.Get("Location") == "" || r.header.Get("ETag") != `W/"1"` || strings.Contains(r.raw, "password") || strings.Contains(r.raw, "correct horse") {
		t.Fatalf("create: %d %v %s", r.code, r.header, r.raw)
	}
	id := r.body["id"].(string)
	if !strings.HasPrefix(id, "eu~") || r.header.Get("Location") != base+"/Users/"+id || r.body["meta"].(map[string]any)["version"] != `W/"1"` {
		t.Errorf("created: id %q, %v", id, r.body["meta"])
	}

	// Bad input: the right error, nothing stored.
	before := count()
	for _, c := range []struct {
		what, body, contentType string
		status                  int
		scimType                string
	}{
		{"a userName taken in another case", strings.Replace(bjensen, `"BJensen"`, `"BJENSEN"`, 1), ct, 409, "uniqueness"},
		{"invalid JSON", `{"schemas":`, ct, 400, "invalidSyntax"},
		{"an unknown attribute", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"x","shoeSize":42}`, ct, 400, "invalidSyntax"},
		{"a wrong type", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"x","active":"yes"}`, ct, 400, "invalidValue"},
		{"no userName", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]}`, ct, 400, "invalidValue"},
		{"SQL in a value", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"x'); DROP TABLE users; --","title":"1' OR '1'='1"}`, ct, 201, ""},
		{"another media type", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"y"}`, "text/plain", 415, ""},
	} {
		r := scimCall(t, "POST", base+"/Users", tok, c.contentType, []byte(c.body))
		if c.status == 201 {
			if r.code != 201 || r.body["title"] != "1' OR '1'='1" {
				t.Errorf("%s: %d %s", c.what, r.code, r.raw)
			}
			before++
			continue
		}
		wantError(c.what, r, c.status, c.scimType)
	}
	// An oversized body is refused by the public listener from its
	// Content-Length, before any profile (sent without the body, so the
	// refusal cannot race the upload).
	if resp, body := rawRequest(t, strings.TrimPrefix(n.Public(), "http://"), "POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+tok+
		"\r\nContent-Type: application/scim+json\r\nContent-Length: 70000\r\n\r\n"); resp.StatusCode != 413 {
		t.Errorf("an oversized body: %d %s", resp.StatusCode, body)
	}
	if after := count(); after != before {
		t.Errorf("refused creates stored users: %v → %v", before, after)
	}

	// Read, with If-None-Match and a projection.
	if r := call("GET", "/Users/"+id, nil, "If-None-Match", `W/"1"`); r.code != 304 {
		t.Errorf("If-None-Match: %d", r.code)
	}
	if r := call("GET", "/Users/"+id+"?attributes=userName,emails.value", nil); r.code != 200 || r.body["name"] != nil || r.body["userName"] != "BJensen" {
		t.Errorf("attributes: %d %s", r.code, r.raw)
	}
	wantError("a missing user", call("GET", "/Users/eu~nope", nil), 404, "")

	// Filters, over GET and POST /.search.
	for filter, want := range map[string]float64{
		`userName eq "bjensen"`: 1, `emails[type eq "work" and value co "@example.com"]`: 1, `emails co "jensen.org" and name.familyName sw "J"`: 1,
		`title pr`: 1, `not (title pr)`: 1, `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984"`: 1,
		`externalId eq "701984"`: 1, `userName eq "nobody"`: 0,
	} {
		r := call("GET", "/Users?filter="+url.QueryEscape(filter), nil)
		if r.code != 200 || r.body["totalResults"] != want {
			t.Errorf("GET filter %s: %d %s", filter, r.code, r.raw)
		}
		r = call("POST", "/Users/.search", map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:SearchRequest"}, "filter": filter})
		if r.code != 200 || r.body["totalResults"] != want {
			t.Errorf("search %s: %d %s", filter, r.code, r.raw)
		}
	}
	wantError("a malformed filter", call("GET", "/Users?filter="+url.QueryEscape(`userName eq`), nil), 400, "invalidFilter")
	wantError("a filter on an unknown attribute", call("GET", "/Users?filter="+url.QueryEscape(`shoeSize gt 3`), nil), 400, "invalidFilter")

	// PATCH with a value path, ETags.
	patch := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"emails[type eq \"work\"].value","value":"barbara@example.com"}]}`
	r = call("PATCH", "/Users/"+id, patch, "If-Match", `W/"1"`)
	if r.code != 200 || r.header.Get("ETag") != `W/"2"` || !strings.Contains(r.raw, "barbara@example.com") {
		t.Fatalf("patch: %d %s", r.code, r.raw)
	}
	wantError("a stale If-Match", call("PATCH", "/Users/"+id, patch, "If-Match", `W/"1"`), 412, "")
	wantError("no target", call("PATCH", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"emails[type eq \"fax\"].value","value":"x"}]}`), 400, "noTarget")
	wantError("a read-only attribute", call("PATCH", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"groups","value":[{"value":"g"}]}]}`), 400, "mutability")
	if r := call("GET", "/Users/"+id, nil); r.header.Get("ETag") != `W/"2"` {
		t.Errorf("a refused PATCH changed the user: %s", r.header.Get("ETag"))
	}

	// PUT replaces the whole user.
	r = call("PUT", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bjensen","active":false}`)
	if r.code != 200 || r.body["name"] != nil || r.body["active"] != false || r.header.Get("ETag") != `W/"3"` {
		t.Errorf("put: %d %s", r.code, r.raw)
	}

	// Paging and sorting.
	for _, u := range []string{"alice", "carol", "dave", "erin"} {
		if r := call("POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"`+u+`"}`); r.code != 201 {
			t.Fatalf("create %s: %d", u, r.code)
		}
	}
	r = call("GET", "/Users?sortBy=userName&sortOrder=descending&startIndex=2&count=2&attributes=userName", nil)
	res, _ := r.body["Resources"].([]any)
	if r.code != 200 || r.body["totalResults"] != float64(6) || r.body["startIndex"] != float64(2) || r.body["itemsPerPage"] != float64(2) || len(res) != 2 ||
		res[0].(map[string]any)["userName"] != "erin" || res[1].(map[string]any)["userName"] != "dave" {
		t.Errorf("paging: %d %s", r.code, r.raw)
	}
	if r := call("GET", "/Users?startIndex=0&count=-3", nil); r.code != 200 || len(r.body["Resources"].([]any)) != 0 || r.body["startIndex"] != float64(1) {
		t.Errorf("startIndex 0, count -3: %d %s", r.code, r.raw)
	}

	// Groups: members both ways, PATCH of members with a value filter.
	alice := call("GET", "/Users?filter="+url.QueryEscape(`userName eq "alice"`), nil).body["Resources"].([]any)[0].(map[string]any)["id"].(string)
	r = call("POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Tour Guides","members":[{"value":"`+id+`"},{"value":"`+alice+`"}]}`)
	if r.code != 201 || r.header.Get("ETag") != `W/"1"` {
		t.Fatalf("create group: %d %s", r.code, r.raw)
	}
	gid := r.body["id"].(string)
	if r := call("GET", "/Users/"+alice, nil); !strings.Contains(r.raw, `"display":"Tour Guides"`) {
		t.Errorf("the member's groups: %s", r.raw)
	}
	wantError("an unknown member", call("POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"X","members":[{"value":"eu~nobody"}]}`), 400, "invalidValue")
	r = call("PATCH", "/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \"`+alice+`\"]"}]}`)
	if r.code != 200 || strings.Contains(r.raw, alice) || r.header.Get("ETag") != `W/"2"` {
		t.Errorf("remove a member: %d %s", r.code, r.raw)
	}
	if r := call("GET", "/Groups?filter="+url.QueryEscape(`members[value eq "`+id+`"] and displayName sw "tour"`), nil); r.body["totalResults"] != float64(1) {
		t.Errorf("filter groups: %s", r.raw)
	}
	wantError("a filter on a user's groups", call("GET", "/Users?filter="+url.QueryEscape(`groups.value eq "x"`), nil), 400, "invalidFilter")

	// Delete: the user leaves its groups.
	if r := call("DELETE", "/Users/"+id, nil); r.code != 204 {
		t.Errorf("delete: %d %s", r.code, r.raw)
	}
	wantError("a deleted user", call("GET", "/Users/"+id, nil), 404, "")
	if r := call("GET", "/Groups/"+gid, nil); r.code != 200 || strings.Contains(r.raw, id) {
		t.Errorf("the deleted user is still a member: %s", r.raw)
	}
	if r := call("DELETE", "/Groups/"+gid, nil, "If-Match", `W/"1"`); r.code != 412 {
		t.Errorf("delete a group with a stale If-Match: %d", r.code)
	}
	if r := call("DELETE", "/Groups/"+gid, nil); r.code != 204 {
		t.Errorf("delete group: %d %s", r.code, r.raw)
	}
	for _, s := range []string{provisionerSecret, readerSecret, "correct horse battery"} {
		if n.Logs.Contains(s) {
			t.Error("a secret was logged")
		}
	}
}

// auditWalk reads the SCIM changes back from the audit trail: over HTTP
// behind its own scope, and with `keygate audit`.
func auditWalk(t *testing.T, n *node, dir string) {
	base := n.Public() + "/scim/v2/AuditEvents"
	scimTok := n.issue(t, url.Values{}, "provisioner", provisionerSecret)
	if r := scimCall(t, "GET", base, scimTok, "", nil); r.code != 403 {
		t.Errorf("audit events with the SCIM scope: %d %s", r.code, r.raw)
	}
	tok := n.issue(t, url.Values{}, "auditor", readerSecret)
	r := scimCall(t, "GET", base+"?type=scim_user_deleted", tok, "", nil)
	events, _ := r.body["events"].([]any)
	if r.code != 200 || len(events) != 1 || events[0].(map[string]any)["client"] != "provisioner" || !strings.HasPrefix(events[0].(map[string]any)["user"].(string), "eu~") {
		t.Errorf("audit events: %d %s", r.code, r.raw)
	}
	if r := scimCall(t, "GET", base+"?since=yesterday", tok, "", nil); r.code != 400 {
		t.Errorf("a bad since: %d", r.code)
	}
	cmd := exec.Command(binary, "audit", "--dir", dir, "--zone", "eu", "--type", "scim_group_created", "--since", "1h")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Count(string(out), "scim_group_created") != 1 || !strings.Contains(string(out), `client="provisioner"`) {
		t.Errorf("keygate audit: %v\n%s", err, out)
	}
}
