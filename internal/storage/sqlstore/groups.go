package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/keygate/keygate/internal/scim"
	"github.com/keygate/keygate/internal/storage/model"
)

type groups struct{ s *Store }

const groupCols = `id, zone, display_name, external_id, scim, version, created_at, updated_at`

var groupColumns = map[string]string{"id": "id", "externalId": "external_id"}

func (g groups) dest(gr *model.Group) []any {
	d := g.s.d
	return []any{&gr.ID, &gr.Zone, &gr.DisplayName, &gr.ExternalID, d.ScanObject(&gr.SCIM), &gr.Version, d.ScanTime(&gr.CreatedAt), d.ScanTime(&gr.UpdatedAt)}
}

func (g groups) encode(gr model.Group) (doc, folded any, err error) {
	if doc, err = g.s.d.Object(gr.SCIM); err != nil {
		return nil, nil, err
	}
	folded, err = g.s.d.Object(scim.Groups.Folded(gr.SCIM))
	return doc, folded, err
}

func (g groups) Create(ctx context.Context, gr model.Group) error {
	if gr.ID == "" || gr.Zone == "" || gr.DisplayName == "" {
		return fmt.Errorf("group: id, zone and display name are required")
	}
	if gr.Version == 0 {
		gr.Version = 1
	}
	doc, folded, err := g.encode(gr)
	if err != nil {
		return g.s.failed("create group", err)
	}
	tx, err := g.s.db.Begin(ctx)
	if err != nil {
		return g.s.failed("create group", err)
	}
	defer tx.Rollback()
	d := g.s.d
	_, err = tx.Exec(ctx, `INSERT INTO groups (`+groupCols+`, scim_folded) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		gr.ID, gr.Zone, gr.DisplayName, gr.ExternalID, doc, gr.Version, d.Time(gr.CreatedAt), d.Time(gr.UpdatedAt), folded)
	if err == nil {
		err = g.setMembers(ctx, tx, gr.ID, gr.Members)
	}
	if err == nil {
		err = tx.Commit()
	}
	return g.s.failed("create group", err)
}

// setMembers makes group_members hold exactly members for the group.
func (g groups) setMembers(ctx context.Context, tx Tx, id string, members []string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM group_members WHERE group_id = $1`, id); err != nil {
		return err
	}
	for _, m := range compactIDs(members) {
		if _, err := tx.Exec(ctx, `INSERT INTO group_members (group_id, member_id) VALUES ($1, $2)`, id, m); err != nil {
			return err
		}
	}
	return nil
}

func compactIDs(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

func (g groups) Get(ctx context.Context, id string) (model.Group, error) {
	return g.get(ctx, g.s.r, `SELECT `+groupCols+` FROM groups WHERE id = $1`, id)
}

func (g groups) get(ctx context.Context, q Querier, query string, args ...any) (model.Group, error) {
	var gr model.Group
	if err := scan(q.QueryRow(ctx, query, args...), g.dest(&gr)...); err != nil {
		return gr, found("group", err)
	}
	err := q.Query(ctx, func(row Row) error {
		var m string
		err := row.Scan(&m)
		gr.Members = append(gr.Members, m)
		return err
	}, `SELECT member_id FROM group_members WHERE group_id = $1 ORDER BY member_id`, gr.ID)
	return gr, err
}

func (g groups) Update(ctx context.Context, id string, fn func(old model.Group) (model.Group, error)) error {
	tx, err := g.s.db.Begin(ctx)
	if err != nil {
		return g.s.failed("update group", err)
	}
	defer tx.Rollback()
	old, err := g.get(ctx, tx, `SELECT `+groupCols+` FROM groups WHERE id = $1`+g.s.d.ForUpdate, id)
	if err != nil {
		return err
	}
	ng, err := fn(old)
	if err != nil {
		return err
	}
	ng.ID, ng.Zone, ng.CreatedAt, ng.UpdatedAt, ng.Version = old.ID, old.Zone, old.CreatedAt, time.Now(), old.Version+1
	doc, folded, err := g.encode(ng)
	if err == nil {
		_, err = tx.Exec(ctx, `UPDATE groups SET display_name = $2, external_id = $3, scim = $4, scim_folded = $5, version = $6, updated_at = $7 WHERE id = $1`,
			id, ng.DisplayName, ng.ExternalID, doc, folded, ng.Version, g.s.d.Time(ng.UpdatedAt))
	}
	if err == nil && !slices.Equal(compactIDs(old.Members), compactIDs(ng.Members)) {
		err = g.setMembers(ctx, tx, id, ng.Members)
	}
	if err == nil {
		err = tx.Commit()
	}
	return g.s.failed("update group", err)
}

// Delete removes the group and it from every group it is a member of
// (their rows and their representations), in one transaction.
func (g groups) Delete(ctx context.Context, id string, version int64) error {
	return g.s.failed("delete group", g.s.deleteResource(ctx, "groups", id, version, `DELETE FROM group_members WHERE group_id = $1`))
}

// leaveGroups removes member id from every group that has it: the
// membership rows, and the member entry of each group's representation,
// whose version goes up.
func (s *Store) leaveGroups(ctx context.Context, tx Tx, id string) error {
	var ids []string
	if err := tx.Query(ctx, func(row Row) error {
		var g string
		err := row.Scan(&g)
		ids = append(ids, g)
		return err
	}, `SELECT group_id FROM group_members WHERE member_id = $1`, id); err != nil {
		return err
	}
	gs := groups{s}
	for _, gid := range ids {
		g, err := gs.get(ctx, tx, `SELECT `+groupCols+` FROM groups WHERE id = $1`+s.d.ForUpdate, gid)
		if err != nil {
			return err
		}
		g.SCIM = withoutMember(g.SCIM, id)
		doc, folded, err := gs.encode(g)
		if err == nil {
			_, err = tx.Exec(ctx, `UPDATE groups SET scim = $2, scim_folded = $3, version = version + 1, updated_at = $4 WHERE id = $1`,
				gid, doc, folded, s.d.Time(time.Now()))
		}
		if err != nil {
			return err
		}
	}
	_, err := tx.Exec(ctx, `DELETE FROM group_members WHERE member_id = $1`, id)
	return err
}

func (g groups) Query(ctx context.Context, zone string, q model.UserQuery) ([]model.Group, int, error) {
	return query(ctx, g.s, scimTable{"groups", groupCols, scim.Groups, groupColumns}, zone, q, g.dest)
}

func (g groups) Of(ctx context.Context, id string) ([]model.GroupRef, error) {
	var out []model.GroupRef
	err := g.s.r.Query(ctx, func(row Row) error {
		var r model.GroupRef
		err := row.Scan(&r.ID, &r.DisplayName)
		out = append(out, r)
		return err
	}, `SELECT g.id, g.display_name FROM group_members m JOIN groups g ON g.id = m.group_id WHERE m.member_id = $1 ORDER BY g.display_name, g.id`, id)
	if err != nil {
		return nil, fmt.Errorf("groups of a member: %w", err)
	}
	return out, nil
}
