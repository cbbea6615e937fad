package storagetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/scim"
	"github.com/keygate/keygate/internal/storage/model"
)

// scimPeople are the users the filter table runs over: varied case,
// missing attributes, several e-mails, the enterprise extension, values
// that look like SQL.
var scimPeople = []string{
	`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"userName":"BJensen","externalId":"E-701984","name":{"familyName":"Jensen","givenName":"Barbara"},"title":"Tour Guide","userType":"Employee","active":true,
	  "emails":[{"value":"bjensen@example.com","type":"work","primary":true},{"value":"babs@jensen.org","type":"home"}],
	  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"701984","department":"Tour Operations","manager":{"value":"m-1"}}}`,
	`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"jsmith","externalId":"e-701984","name":{"familyName":"Smith","givenName":"John"},"userType":"Intern","active":false,
	  "emails":[{"value":"JSmith@Example.COM","type":"work"}]}`,
	`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"élodie","name":{"familyName":"Élan","givenName":"Élodie"},"active":true,"nickName":"Lo",
	  "emails":[{"value":"elodie@example.fr","type":"other"}],"phoneNumbers":[{"value":"+33 1 23","type":"work"}]}`,
	`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"o'malley","title":"x' OR '1'='1","emails":[{"value":"om@example.com","type":"work"},{"value":"om@example.org","type":"work"}]}`,
	`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"userName":"zed","active":true,"userType":"Employee",
	  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"42","department":"tour operations"}}`,
	`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"percent%under_score","displayName":"100% _real_","active":false}`,
}

var scimFilters = []string{
	`userName eq "bjensen"`, `userName eq "BJENSEN"`, `userName ne "bjensen"`, `userName sw "j"`, `userName ew "SEN"`, `userName co "alle"`,
	`userName gt "jsmith"`, `userName ge "jsmith"`, `userName lt "jsmith"`, `userName le "jsmith"`, `userName co "%"`, `userName co "_"`,
	`externalId eq "E-701984"`, `externalId eq "e-701984"`, `externalId pr`, `externalId sw "E"`, `externalId co "-70"`,
	`name.familyName eq "jensen"`, `name.familyName sw "é"`, `name.givenName co "O"`, `name pr`, `name.familyName pr`, `nickName eq null`, `nickName ne null`,
	`title eq "x' OR '1'='1"`, `title pr`, `not (title pr)`, `displayName co "% _"`,
	`active eq true`, `active eq false`, `active ne true`, `active pr`,
	`emails co "example.com"`, `emails.value ew ".org"`, `emails.type eq "work"`, `emails ne "om@example.com"`, `emails pr`,
	`emails[type eq "work" and value co "@example.com"]`, `emails[type eq "home"]`, `emails[not (type eq "work")]`, `emails[primary eq true]`,
	`emails[type eq "work"] and userType eq "Employee"`, `emails[type eq "work"] or nickName pr`,
	`phoneNumbers[type eq "work" and value sw "+33"]`,
	`userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")`,
	`userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")`,
	`title pr or userName sw "z" and active eq true`, `(title pr or userName sw "z") and active eq true`,
	`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984"`,
	`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "TOUR OPERATIONS"`,
	`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m-1"`,
	`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department pr`,
	`meta.created gt "2026-01-01T00:00:02Z"`, `meta.created le "2026-01-01T00:00:02Z"`, `meta.lastModified ge "2026-01-01T00:00:00Z"`,
	`id eq "scim-u-3"`, `id ne "scim-u-3"`, `id pr`, `meta pr`,
	`active eq true and userType eq "Employee"`, `not (active eq false)`,
}

// testSCIMUsers: every filter gives the same users on the store as
// scim.Users.Match gives in memory; sorting, paging, delete and versions.
func testSCIMUsers(t *testing.T, open Opener) {
	s := migrated(t, open)
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var people []model.User
	var docs []scim.Resource
	for i, raw := range scimPeople {
		in, err := scim.Decode(strings.NewReader(raw))
		if err != nil {
			t.Fatalf("person %d: %v", i, err)
		}
		r, cerr := scim.Users.Check(in)
		if cerr != nil {
			t.Fatalf("person %d: %v", i, cerr)
		}
		// Stored as the user-management profile stores it: active in the
		// status, not in the document.
		status := model.UserActive
		if active, ok := r["active"].(bool); ok && !active {
			status = model.UserDisabled
		}
		stored := r.Clone()
		delete(stored, "active")
		u := model.User{ID: fmt.Sprintf("scim-u-%d", i), Zone: "eu", Username: strings.ToLower(r["userName"].(string)), Status: status,
			CreatedAt: base.Add(time.Duration(i) * time.Second), UpdatedAt: base.Add(time.Duration(i) * time.Second), SCIM: stored}
		if ext, ok := r["externalId"].(string); ok {
			u.ExternalID = ext
		}
		must(t, "create", s.Users().Create(ctx, u))
		people = append(people, u)
		full := r.Clone()
		full["active"] = status == model.UserActive // as the profile represents it
		full["id"] = u.ID
		full["meta"] = map[string]any{"created": u.CreatedAt.Format(time.RFC3339), "lastModified": u.UpdatedAt.Format(time.RFC3339)}
		docs = append(docs, full)
	}
	// A user of another zone never shows.
	must(t, "create other zone", s.Users().Create(ctx, model.User{ID: "scim-us-1", Zone: "us", Username: "bjensen", Status: "active",
		SCIM: map[string]any{"userName": "bjensen"}, CreatedAt: base, UpdatedAt: base}))

	for _, f := range scimFilters {
		e, err := scim.ParseFilter(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := scim.Users.CheckFilter(e); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var want []string
		for i, d := range docs {
			if scim.Users.Match(e, d) {
				want = append(want, people[i].ID)
			}
		}
		page, total, qerr := s.Users().Query(ctx, "eu", model.UserQuery{Filter: e, Limit: 100})
		if qerr != nil {
			t.Errorf("%s: %v", f, qerr)
			continue
		}
		var got []string
		for _, u := range page {
			got = append(got, u.ID)
		}
		if !slices.Equal(got, want) || total != len(want) {
			t.Errorf("%s: store %v (total %d), in memory %v", f, got, total, want)
		}
	}

	// Sort by a folded string in code point order (é after z), nulls last
	// both ways; page through.
	sortBy := func(path string, desc bool, offset, limit int) []string {
		p, _ := scim.ParseFilter(path + " pr") // reuse the parser for the path
		tgt, _ := scim.Users.TargetOf(p.(*scim.Present).Path, nil)
		page, _, err := s.Users().Query(ctx, "eu", model.UserQuery{SortBy: &tgt, Descending: desc, Offset: offset, Limit: limit})
		must(t, "sort", err)
		var ids []string
		for _, u := range page {
			ids = append(ids, u.ID)
		}
		return ids
	}
	equal(t, "sort by name.familyName", sortBy("name.familyName", false, 0, 10), []string{"scim-u-0", "scim-u-1", "scim-u-2", "scim-u-3", "scim-u-4", "scim-u-5"})
	equal(t, "sort by name.familyName descending", sortBy("name.familyName", true, 0, 10), []string{"scim-u-2", "scim-u-1", "scim-u-0", "scim-u-3", "scim-u-4", "scim-u-5"})
	equal(t, "sort by userName, second page", sortBy("userName", false, 2, 2), []string{"scim-u-3", "scim-u-5"})
	equal(t, "sort by emails (the first)", sortBy("emails", false, 0, 3), []string{"scim-u-0", "scim-u-2", "scim-u-1"})
	equal(t, "sort by meta.lastModified descending", sortBy("meta.lastModified", true, 0, 2), []string{"scim-u-5", "scim-u-4"})
	if page, total, err := s.Users().Query(ctx, "eu", model.UserQuery{Limit: 0}); err != nil || len(page) != 0 || total != len(people) {
		t.Errorf("count only: %d users, total %d, %v", len(page), total, err)
	}
	if page, total, err := s.Users().Query(ctx, "eu", model.UserQuery{Offset: 10, Limit: 5}); err != nil || len(page) != 0 || total != len(people) {
		t.Errorf("past the end: %d users, total %d, %v", len(page), total, err)
	}

	// Versions count updates; the stored representation round-trips.
	got, err := s.Users().Get(ctx, "scim-u-0")
	must(t, "get", err)
	if got.Version != 1 || got.ExternalID != "E-701984" || got.SCIM["userName"] != "BJensen" {
		t.Errorf("stored %+v", got)
	}
	must(t, "update", s.Users().Update(ctx, "scim-u-0", func(old model.User) (model.User, error) {
		old.SCIM["title"] = "Lead Guide"
		return old, nil
	}))
	got, _ = s.Users().Get(ctx, "scim-u-0")
	if got.Version != 2 || got.SCIM["title"] != "Lead Guide" {
		t.Errorf("after update: version %d title %v", got.Version, got.SCIM["title"])
	}
	e, _ := scim.ParseFilter(`title eq "lead guide"`)
	if page, _, _ := s.Users().Query(ctx, "eu", model.UserQuery{Filter: e, Limit: 10}); len(page) != 1 {
		t.Errorf("the folded copy was not updated: %d", len(page))
	}
	// A conditional delete of a version the user no longer has changes
	// nothing; of the one it has, deletes.
	wantErr(t, "delete version 1", s.Users().Delete(ctx, "scim-u-0", 1), model.ErrModified)
	if _, err := s.Users().Get(ctx, "scim-u-0"); err != nil {
		t.Errorf("a refused conditional delete removed the user: %v", err)
	}
	must(t, "delete version 2", s.Users().Delete(ctx, "scim-u-0", 2))
	wantErr(t, "delete again", s.Users().Delete(ctx, "scim-u-0", 0), model.ErrNotFound)
	wantErr(t, "conditional delete of none", s.Users().Delete(ctx, "scim-u-0", 2), model.ErrNotFound)
	wantErr(t, "get deleted", func() error { _, err := s.Users().Get(ctx, "scim-u-0"); return err }(), model.ErrNotFound)
}

// testSCIMGroups: members both ways, filters on groups, and a deleted
// user leaves every group.
func testSCIMGroups(t *testing.T, open Opener) {
	s := migrated(t, open)
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, id := range []string{"u1", "u2"} {
		must(t, "user", s.Users().Create(ctx, model.User{ID: id, Zone: "eu", Username: id, Status: "active", CreatedAt: now, UpdatedAt: now}))
	}
	group := func(id, name string, members ...string) model.Group {
		var ms []any
		for _, m := range members {
			ms = append(ms, map[string]any{"value": m, "type": "User"})
		}
		doc := map[string]any{"displayName": name}
		if len(ms) > 0 {
			doc["members"] = ms
		}
		return model.Group{ID: id, Zone: "eu", DisplayName: name, SCIM: doc, Members: members, CreatedAt: now, UpdatedAt: now}
	}
	must(t, "g1", s.Groups().Create(ctx, group("g1", "Tour Guides", "u1", "u2")))
	now = now.Add(time.Second)
	must(t, "g2", s.Groups().Create(ctx, group("g2", "Admins", "u1")))
	query := func(filter string) []string {
		e, err := scim.ParseFilter(filter)
		must(t, filter, err)
		if cerr := scim.Groups.CheckFilter(e); cerr != nil {
			t.Fatalf("%s: %v", filter, cerr)
		}
		page, _, err := s.Groups().Query(ctx, "eu", model.UserQuery{Filter: e, Limit: 10})
		must(t, filter, err)
		var ids []string
		for _, g := range page {
			ids = append(ids, g.ID)
		}
		return ids
	}
	equal(t, "members[value eq u2]", query(`members[value eq "u2"]`), []string{"g1"})
	equal(t, "members eq u1", query(`members eq "u1"`), []string{"g1", "g2"})
	equal(t, "displayName sw tour", query(`displayName sw "tour"`), []string{"g1"})
	refs, err := s.Groups().Of(ctx, "u1")
	must(t, "of", err)
	equal(t, "groups of u1", refs, []model.GroupRef{{ID: "g2", DisplayName: "Admins"}, {ID: "g1", DisplayName: "Tour Guides"}})
	g, err := s.Groups().Get(ctx, "g1")
	must(t, "get", err)
	equal(t, "members of g1", g.Members, []string{"u1", "u2"})

	must(t, "delete u2", s.Users().Delete(ctx, "u2", 0))
	g, _ = s.Groups().Get(ctx, "g1")
	if len(g.Members) != 1 || g.Version != 2 || len(g.SCIM["members"].([]any)) != 1 {
		t.Errorf("g1 after its member went: %+v", g)
	}
	equal(t, "members[value eq u2] after", query(`members[value eq "u2"]`), []string(nil))
	must(t, "update", s.Groups().Update(ctx, "g2", func(old model.Group) (model.Group, error) {
		old.DisplayName, old.SCIM["displayName"], old.Members = "Operators", "Operators", nil
		delete(old.SCIM, "members")
		return old, nil
	}))
	refs, _ = s.Groups().Of(ctx, "u1")
	equal(t, "groups of u1 after", refs, []model.GroupRef{{ID: "g1", DisplayName: "Tour Guides"}})
	// A group that is a member of another leaves it when deleted.
	must(t, "g3", s.Groups().Create(ctx, group("g3", "Nested")))
	must(t, "g1 gets g3", s.Groups().Update(ctx, "g1", func(old model.Group) (model.Group, error) {
		old.SCIM["members"] = append(old.SCIM["members"].([]any), map[string]any{"value": "g3", "type": "Group"})
		old.Members = append(old.Members, "g3")
		return old, nil
	}))
	must(t, "delete g3", s.Groups().Delete(ctx, "g3", 0))
	g, _ = s.Groups().Get(ctx, "g1")
	if len(g.Members) != 1 || strings.Contains(fmt.Sprint(g.SCIM["members"]), "g3") {
		t.Errorf("g1 still lists the deleted g3: %+v", g)
	}
	wantErr(t, "delete g1 at an old version", s.Groups().Delete(ctx, "g1", 1), model.ErrModified)
	must(t, "delete g1", s.Groups().Delete(ctx, "g1", g.Version))
	wantErr(t, "delete g1 again", s.Groups().Delete(ctx, "g1", 0), model.ErrNotFound)
	refs, _ = s.Groups().Of(ctx, "u1")
	equal(t, "groups of u1 at the end", refs, []model.GroupRef(nil))
}

// testAuditPrune: the audit trail's filters and its retention.
func testAuditPrune(t *testing.T, open Opener) {
	s := migrated(t, open)
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, ev := range []model.AuditEvent{
		{Type: "scim_user_created", Zone: "eu", Subject: "u1", ClientID: "c1"},
		{Type: "scim_user_created", Zone: "us", Subject: "u2", ClientID: "c2"},
		{Type: "login_success", Zone: "eu", Subject: "u1", ClientID: "c1"},
		{Type: "scim_user_deleted", Zone: "eu", Subject: "u1", ClientID: "c2"},
	} {
		ev.Time = base.Add(time.Duration(i) * time.Hour)
		must(t, "append", s.Audit().Append(ctx, ev))
	}
	count := func(q model.AuditQuery) int {
		evs, err := s.Audit().List(ctx, q)
		must(t, "list", err)
		return len(evs)
	}
	equal(t, "zone eu", count(model.AuditQuery{Zone: "eu"}), 3)
	equal(t, "client c2", count(model.AuditQuery{ClientID: "c2"}), 2)
	equal(t, "until the third hour", count(model.AuditQuery{Until: base.Add(2 * time.Hour)}), 2)
	n, err := s.Audit().Prune(ctx, base.Add(2*time.Hour))
	must(t, "prune", err)
	equal(t, "pruned", n, int64(2))
	equal(t, "left", count(model.AuditQuery{}), 2)
}
