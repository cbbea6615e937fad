package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/keygate/keygate/internal/scim"
	"github.com/keygate/keygate/internal/storage/model"
)

// dest are the scan destinations of userCols.
func (u users) dest(usr *model.User) []any {
	d := u.s.d
	return []any{&usr.ID, &usr.Zone, &usr.Username, &usr.PasswordHash, d.ScanObject(&usr.Claims), &usr.Status,
		d.ScanTime(&usr.CreatedAt), d.ScanTime(&usr.UpdatedAt), &usr.ExternalID, d.ScanObject(&usr.SCIM), &usr.Version}
}

// scim encodes a user's SCIM representation and its folded copy (nil for
// a user without one).
func (u users) scim(r map[string]any) (doc, folded any, err error) {
	if r == nil {
		return nil, nil, nil
	}
	if doc, err = u.s.d.Object(r); err != nil {
		return nil, nil, err
	}
	folded, err = u.s.d.Object(scim.Users.Folded(r))
	return doc, folded, err
}

// Delete removes the user, and it from every group: the membership rows,
// and the member entry in each group's representation (whose version goes
// up), in one transaction.
func (u users) Delete(ctx context.Context, id string, version int64) error {
	return u.s.failed("delete user", u.s.deleteResource(ctx, "users", id, version))
}

// deleteResource deletes the row id of a versioned table (users, groups)
// in one transaction: any version for 0, else only that one; then the
// statements also (each given id as $1), and id from every group. No row
// deleted is ErrNotFound or, when the row is there, ErrModified.
func (s *Store) deleteResource(ctx context.Context, table, id string, version int64, also ...string) error {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	n, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE id = $1 AND ($2 = 0 OR version = $2)`, id, version)
	if err != nil {
		return err
	}
	if n == 0 {
		var there bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+table+` WHERE id = $1)`, id).Scan(&there); err != nil {
			return err
		}
		if there {
			return fmt.Errorf("%s %s: %w", table, id, model.ErrModified)
		}
		return fmt.Errorf("%s %s: %w", table, id, model.ErrNotFound)
	}
	for _, q := range also {
		if _, err := tx.Exec(ctx, q, id); err != nil {
			return err
		}
	}
	if err := s.leaveGroups(ctx, tx, id); err != nil {
		return err
	}
	return tx.Commit()
}

// withoutMember drops the member entries whose value is id.
func withoutMember(doc map[string]any, id string) map[string]any {
	list, _ := doc["members"].([]any)
	kept := list[:0:0]
	for _, m := range list {
		if v, _ := m.(map[string]any); v["value"] != id {
			kept = append(kept, m)
		}
	}
	out := map[string]any{}
	for k, v := range doc {
		out[k] = v
	}
	if len(kept) == 0 {
		delete(out, "members")
	} else {
		out["members"] = kept
	}
	return out
}

// Query translates q's filter into SQL (values always as parameters), with
// the meaning scim.ResourceType.Match gives it, so that both engines and
// the in-memory evaluation agree.
func (u users) Query(ctx context.Context, zone string, q model.UserQuery) ([]model.User, int, error) {
	return query(ctx, u.s, scimTable{"users", userCols, scim.Users, userColumns}, zone, q, u.dest)
}

// scimTable is a table of SCIM resources: its columns, resource type, and
// the attributes it holds in columns rather than in the document.
type scimTable struct {
	name, cols string
	rt         *scim.ResourceType
	columns    map[string]string
}

// query is a page of the zone's resources of tbl matching q, each row read
// into a T through dest, and how many match in all.
func query[T any](ctx context.Context, s *Store, tbl scimTable, zone string, q model.UserQuery, dest func(*T) []any) ([]T, int, error) {
	var out []T
	total, err := s.list(ctx, tbl, zone, q.Filter, q.SortBy, q.Descending, q.Offset, q.Limit, func(row Row) error {
		var v T
		err := scan(row, dest(&v)...)
		out = append(out, v)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", tbl.name, err)
	}
	return out, total, nil
}

// list counts the zone's rows matching filter and scans a page of them.
func (s *Store) list(ctx context.Context, tbl scimTable, zone string, filter scim.Expr, sortBy *scim.Target, desc bool, offset, limit int, each func(Row) error) (int, error) {
	f := &filterSQL{d: s.d, rt: tbl.rt, columns: tbl.columns, args: []any{zone}}
	where := "zone = $1"
	if filter != nil {
		cond, err := f.expr(filter, nil)
		if err != nil {
			return 0, err
		}
		where += " AND " + cond
	}
	var total int
	if err := s.r.QueryRow(ctx, `SELECT COUNT(*) FROM `+tbl.name+` WHERE `+where, f.args...).Scan(&total); err != nil {
		return 0, err
	}
	if limit <= 0 || offset >= total {
		return total, nil
	}
	order := "created_at, id"
	if sortBy != nil {
		key := f.sortKey(*sortBy)
		dir := ""
		if desc {
			dir = " DESC"
		}
		collate := s.d.Collate
		if sortBy.Compared.Type == scim.TypeDateTime || sortBy.Compared.Type == scim.TypeBoolean {
			collate = "" // not text: no collation
		}
		order = "(" + key + ") IS NULL, " + key + collate + dir + ", created_at, id"
	}
	args := append(f.args, limit, offset)
	return total, s.r.Query(ctx, each, fmt.Sprintf(`SELECT %s FROM %s WHERE %s ORDER BY %s LIMIT $%d OFFSET $%d`,
		tbl.cols, tbl.name, where, order, len(args)-1, len(args)), args...)
}

// filterSQL builds a WHERE condition and its arguments.
type filterSQL struct {
	d       Dialect
	rt      *scim.ResourceType
	columns map[string]string
	args    []any
}

func (f *filterSQL) arg(v any) string {
	f.args = append(f.args, v)
	return fmt.Sprintf("$%d", len(f.args))
}

// The attributes users hold in NOT NULL columns (the username folded, as
// the login keeps it), compared without COALESCE so their indexes serve.
var userColumns = map[string]string{"id": "id", "externalId": "external_id", "userName": "username"}

// join is "(l op r)" of two subexpressions.
func (f *filterSQL) join(left scim.Expr, op string, right scim.Expr, within *scim.Attribute) (string, error) {
	l, err := f.expr(left, within)
	if err != nil {
		return "", err
	}
	r, err := f.expr(right, within)
	return "(" + l + " " + op + " " + r + ")", err
}

// expr is e as a two-valued SQL condition (every leaf is COALESCEd to
// false, so NOT and OR behave as in Go). elem is the element of a value
// filter ("e.value") when within is set.
func (f *filterSQL) expr(e scim.Expr, within *scim.Attribute) (string, error) {
	switch x := e.(type) {
	case *scim.And:
		return f.join(x.Left, "AND", x.Right, within)
	case *scim.Or:
		return f.join(x.Left, "OR", x.Right, within)
	case *scim.Not:
		inner, err := f.expr(x.X, within)
		return "(NOT " + inner + ")", err
	case *scim.ValuePath:
		t, err := f.target(scim.AttrPath{URN: x.Path.URN, Attr: x.Path.Attr}, nil)
		if err != nil {
			return "", err
		}
		inner, ierr := f.expr(x.Filter, t.Attr)
		if ierr != nil {
			return "", ierr
		}
		return "EXISTS (SELECT 1 FROM " + f.d.JSONEach("scim_folded", f.docPath(t.URN, t.Attr.Name)) + " WHERE " + inner + ")", nil
	case *scim.Present:
		t, err := f.target(x.Path, within)
		if err != nil {
			return "", err
		}
		if f.rt == scim.Users && within == nil && t.Attr.Name == "active" {
			return "TRUE", nil // every user is active or not
		}
		return f.leaf(t, within, func(v string, _ bool) string { return v + " IS NOT NULL" }, func(_ string, path []string, doc string) string {
			return f.d.JSONHas(doc, path)
		}), nil
	case *scim.Compare:
		t, err := f.target(x.Path, within)
		if err != nil {
			return "", err
		}
		if x.Value == nil {
			has := f.leaf(t, within, func(v string, _ bool) string { return v + " IS NOT NULL" }, func(_ string, path []string, doc string) string {
				return f.d.JSONHas(doc, path)
			})
			if x.Op == "eq" {
				return "(NOT " + has + ")", nil
			}
			return has, nil
		}
		if x.Op == "ne" {
			eq := *x
			eq.Op = "eq"
			inner, err := f.expr(&eq, within)
			return "(NOT " + inner + ")", err
		}
		return f.compare(t, within, x)
	}
	return "", scim.Errorf(400, scim.InvalidFilter, "unsupported filter")
}

// target resolves a path as Match does; a user's groups, which the store
// keeps apart from the user, cannot be filtered on.
func (f *filterSQL) target(p scim.AttrPath, within *scim.Attribute) (scim.Target, error) {
	t, err := f.rt.TargetOf(p, within)
	if err != nil {
		return t, err
	}
	switch {
	case f.rt == scim.Users && within == nil && t.Attr.Name == "groups":
		return t, scim.Errorf(400, scim.InvalidFilter, "groups cannot be filtered on; list the group's members instead (GET /Groups/{id})")
	case within == nil && (t.Attr.Name == "schemas" || (t.Attr.Name == "meta" && t.Sub != nil && subName(t) != "created" && subName(t) != "lastModified")):
		return t, scim.Errorf(400, scim.InvalidFilter, "%s cannot be filtered on (meta.created and meta.lastModified can)", p.String())
	}
	return t, nil
}

// docPath is an attribute's path in the stored document (an extension's
// under its URN).
func (f *filterSQL) docPath(urn, name string) []string {
	if urn != "" && urn != f.rt.Schema.ID {
		return []string{urn, name}
	}
	return []string{name}
}

// leaf builds a condition on a target's values: onColumn for attributes
// held in a column, onDoc(docColumn-relative) for those in the document,
// wrapped in EXISTS over the elements of a multi-valued attribute.
func (f *filterSQL) leaf(t scim.Target, within *scim.Attribute, onColumn func(col string, exact bool) string,
	onDoc func(doc string, path []string, docCol string) string) string {
	doc := "scim"
	if !t.Compared.CaseExact {
		doc = "scim_folded"
	}
	switch {
	case within != nil: // a sub-attribute of the element e
		return "COALESCE(" + onDoc("e.value", []string{t.Sub.Name}, "e.value") + ", FALSE)"
	case t.URN == "" && t.Attr.Name == "meta":
		col := map[string]string{"created": "created_at", "lastModified": "updated_at"}[subName(t)]
		if col == "" {
			return "TRUE" // resourceType, location, version: always there
		}
		return "COALESCE(" + onColumn(col, true) + ", FALSE)"
	case t.URN == "" || t.URN == f.rt.Schema.ID:
		if col, ok := f.columns[t.Attr.Name]; ok {
			if col == "external_id" { // '' is no external id
				return "(external_id <> '' AND " + onColumn(col, true) + ")"
			}
			return "(" + onColumn(col, true) + ")"
		}
	}
	if t.Attr.MultiValued {
		var path []string
		if t.Sub != nil {
			path = []string{t.Sub.Name}
		}
		return "EXISTS (SELECT 1 FROM " + f.d.JSONEach(doc, f.docPath(t.URN, t.Attr.Name)) + " WHERE COALESCE(" + onDoc("e.value", path, "e.value") + ", FALSE))"
	}
	path := f.docPath(t.URN, t.Attr.Name)
	if t.Sub != nil && t.Sub != t.Attr {
		path = append(path, t.Sub.Name)
	}
	return "COALESCE(" + onDoc(doc, path, doc) + ", FALSE)"
}

func subName(t scim.Target) string {
	if t.Sub != nil {
		return t.Sub.Name
	}
	return ""
}

// compare is a comparison other than ne and null ones.
func (f *filterSQL) compare(t scim.Target, within *scim.Attribute, c *scim.Compare) (string, error) {
	a := t.Compared
	switch a.Type {
	case scim.TypeBoolean:
		b := c.Value.(bool)
		if f.rt == scim.Users && within == nil && t.Attr.Name == "active" {
			// The status column holds it, not the document.
			if b {
				return "(status = 'active')", nil
			}
			return "(status <> 'active')", nil
		}
		return f.leaf(t, within, func(col string, _ bool) string { return "FALSE" }, func(_ string, path []string, doc string) string {
			return f.d.JSONBool(doc, path, b)
		}), nil
	case scim.TypeDateTime:
		when, err := time.Parse(time.RFC3339, c.Value.(string))
		if err != nil {
			return "", scim.Errorf(400, scim.InvalidFilter, "%s: not a date and time", c.Path.String())
		}
		p := f.arg(f.d.Time(when))
		op := sqlOp(c.Op)
		if op == "" {
			return "", scim.Errorf(400, scim.InvalidFilter, "%s is a date and time: compare it with eq, ne, gt, ge, lt or le", c.Path.String())
		}
		return f.leaf(t, within, func(col string, _ bool) string { return col + " " + op + " " + p }, func(string, []string, string) string {
			return "FALSE" // no dateTime attribute lives in the document
		}), nil
	case scim.TypeDecimal, scim.TypeInteger, scim.TypeBinary, scim.TypeComplex:
		return "", scim.Errorf(400, scim.InvalidFilter, "%s cannot be filtered on here", c.Path.String())
	}
	v := c.Value.(string)
	if !a.CaseExact {
		v = scim.Fold(v)
	}
	p := f.arg(v)
	cond := func(x string) string {
		switch c.Op {
		case "co":
			return f.d.Contains(x, p)
		case "sw":
			return "substr(" + x + ", 1, length(" + p + ")) = " + p
		case "ew":
			return "(length(" + x + ") >= length(" + p + ") AND substr(" + x + ", length(" + x + ") - length(" + p + ") + 1) = " + p + ")"
		case "eq":
			return x + " = " + p
		}
		return x + f.d.Collate + " " + sqlOp(c.Op) + " " + p
	}
	return f.leaf(t, within, func(col string, _ bool) string { return cond(col) }, func(_ string, path []string, doc string) string {
		return cond(f.d.JSONText(doc, path))
	}), nil
}

func sqlOp(op string) string {
	return map[string]string{"eq": "=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}[op]
}

// sortKey is the expression a list is ordered by: a column, the (folded)
// string, or the first value of a multi-valued attribute.
func (f *filterSQL) sortKey(t scim.Target) string {
	doc := "scim"
	if !t.Compared.CaseExact {
		doc = "scim_folded"
	}
	switch {
	case t.URN == "" && t.Attr.Name == "meta":
		if subName(t) == "lastModified" {
			return "updated_at"
		}
		return "created_at"
	case f.rt == scim.Users && t.Attr.Name == "active":
		return "(status = 'active')"
	case t.URN == "" || t.URN == f.rt.Schema.ID:
		if col, ok := f.columns[t.Attr.Name]; ok {
			if col == "external_id" {
				return "NULLIF(external_id, '')"
			}
			return col
		}
	}
	path := f.docPath(t.URN, t.Attr.Name)
	if t.Attr.MultiValued {
		path = append(path, "[0]")
	}
	if t.Sub != nil {
		path = append(path, t.Sub.Name)
	}
	return f.d.JSONText(doc, path)
}
