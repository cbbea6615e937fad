package usermgmt

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/keygate/keygate/internal/scim"
	"github.com/keygate/keygate/internal/storage/model"
)

func (p *Profile) mountGroups(r fiber.Router, chain func(string, fiber.Handler) []fiber.Handler) {
	groups := p.path + "/Groups"
	listGroups, searchGroups := p.lister(scim.Groups, p.groupPage)
	r.Get(groups, chain(EndpointGroups, p.guard(false, listGroups))...)
	r.Post(groups, chain(EndpointGroups, p.guard(true, p.createGroup))...)
	r.Post(groups+"/.search", chain(EndpointGroups, p.guard(false, searchGroups))...)
	r.Get(groups+"/:id", chain(EndpointGroups, p.guard(false, p.getGroup))...)
	r.Put(groups+"/:id", chain(EndpointGroups, p.guard(true, p.replaceGroup))...)
	r.Patch(groups+"/:id", chain(EndpointGroups, p.guard(true, p.patchGroup))...)
	r.Delete(groups+"/:id", chain(EndpointGroups, p.guard(true, p.deleteGroup))...)
}

func (p *Profile) groupRepresentation(c *fiber.Ctx, g model.Group) map[string]any {
	doc := map[string]any{}
	for k, v := range g.SCIM {
		doc[k] = v
	}
	if g.ExternalID != "" {
		doc["externalId"] = g.ExternalID
	}
	if members, ok := doc["members"].([]any); ok {
		out := make([]any, 0, len(members))
		for _, m := range members {
			mm, _ := m.(map[string]any)
			entry := map[string]any{}
			for k, v := range mm {
				entry[k] = v
			}
			kind, _ := entry["type"].(string)
			if kind == "" {
				kind = "User"
			}
			if id, _ := entry["value"].(string); id != "" {
				entry["$ref"] = p.location(c, "/"+kind+"s/"+id)
			}
			out = append(out, entry)
		}
		doc["members"] = out
	}
	doc["schemas"] = []any{scim.GroupSchema}
	doc["id"] = g.ID
	doc["meta"] = map[string]any{
		"resourceType": "Group",
		"created":      g.CreatedAt.UTC().Format(time.RFC3339),
		"lastModified": g.UpdatedAt.UTC().Format(time.RFC3339),
		"location":     p.location(c, "/Groups/"+g.ID),
		"version":      etag(g.Version),
	}
	return doc
}

// groupFrom fills a group from a checked resource: its display name,
// external id and members, each of which must be a user or a group of the
// zone (nothing else may be named a member).
func (p *Profile) groupFrom(c *fiber.Ctx, g *model.Group, r scim.Resource) *scim.Error {
	g.DisplayName, _ = r["displayName"].(string)
	g.ExternalID, _ = r["externalId"].(string)
	delete(r, "externalId")
	g.Members = nil
	members, _ := r["members"].([]any)
	ctx, cancel := p.ctx(c)
	defer cancel()
	for i, m := range members {
		mm, _ := m.(map[string]any)
		id, _ := mm["value"].(string)
		kind, _ := mm["type"].(string)
		if id == "" {
			return scim.Errorf(http.StatusBadRequest, scim.InvalidValue, "members[%d] has no value (the member's id)", i)
		}
		if kind == "" {
			kind = "User"
			mm["type"] = kind
		}
		var err error
		switch kind {
		case "User":
			_, err = p.store.Users().Get(ctx, id)
		case "Group":
			if id == g.ID {
				return scim.Errorf(http.StatusBadRequest, scim.InvalidValue, "a group cannot be its own member")
			}
			_, err = p.store.Groups().Get(ctx, id)
		default:
			return scim.Errorf(http.StatusBadRequest, scim.InvalidValue, "members[%d].type must be User or Group", i)
		}
		zone, _ := p.homeOf(id)
		if errors.Is(err, model.ErrNotFound) || zone != p.zone {
			return scim.Errorf(http.StatusBadRequest, scim.InvalidValue, "members[%d]: no %s %q in this zone", i, strings.ToLower(kind), id)
		}
		if err != nil {
			return scim.Errorf(http.StatusServiceUnavailable, "", "the user store is unavailable; retry")
		}
		g.Members = append(g.Members, id)
	}
	g.SCIM = r
	return nil
}

func (p *Profile) createGroup(c *fiber.Ctx, who actor) error {
	r, err := p.resource(c, scim.Groups)
	if err != nil {
		return p.fail(c, err)
	}
	now := p.now().UTC()
	g := model.Group{ID: newID(p.zone), Zone: p.zone, CreatedAt: now, UpdatedAt: now, Version: 1}
	if e := p.groupFrom(c, &g, r); e != nil {
		return p.fail(c, e)
	}
	ctx, cancel := p.ctx(c)
	defer cancel()
	if serr := p.store.Groups().Create(ctx, g); serr != nil {
		return p.storeFailed(c, "create group", serr)
	}
	p.audit(ctx, p.store, p.zone, "scim_group_created", who, g.ID)
	c.Set(fiber.HeaderLocation, p.location(c, "/Groups/"+g.ID))
	c.Set(fiber.HeaderETag, etag(g.Version))
	return send(c, http.StatusCreated, p.groupRepresentation(c, g))
}

func (p *Profile) loadGroup(c *fiber.Ctx) (model.Group, *scim.Error, error) {
	id := c.Params("id")
	if zone, _, ok := strings.Cut(id, idSep); !ok || zone != p.zone {
		return model.Group{}, scim.Errorf(http.StatusNotFound, "", "no group %q", id), nil
	}
	ctx, cancel := p.ctx(c)
	defer cancel()
	g, err := p.store.Groups().Get(ctx, id)
	if errors.Is(err, model.ErrNotFound) || (err == nil && g.Zone != p.zone) {
		return model.Group{}, scim.Errorf(http.StatusNotFound, "", "no group %q", id), nil
	}
	return g, nil, err
}

func (p *Profile) getGroup(c *fiber.Ctx, _ actor) error {
	g, nf, err := p.loadGroup(c)
	if r := p.loaded("group", nf, err); r != nil {
		return r(c)
	}
	return p.sendResource(c, scim.Groups, g.Version, func() map[string]any { return p.groupRepresentation(c, g) })
}

func (p *Profile) changeGroup(c *fiber.Ctx, who actor, event string, apply func(current scim.Resource) (scim.Resource, *scim.Error)) error {
	g, nf, err := p.loadGroup(c)
	if r := p.loaded("group", nf, err); r != nil {
		return r(c)
	}
	ctx, cancel := p.ctx(c)
	defer cancel()
	var refused *scim.Error
	err = p.store.Groups().Update(ctx, g.ID, func(old model.Group) (model.Group, error) {
		if e := preconditionsVersion(c, old.Version); e != nil {
			refused = e
			return old, e
		}
		current := scim.Resource{}
		for k, v := range old.SCIM {
			current[k] = v
		}
		if old.ExternalID != "" {
			current["externalId"] = old.ExternalID
		}
		next, e := apply(current)
		if e == nil {
			e = p.groupFrom(c, &old, next)
		}
		if e != nil {
			refused = e
			return old, e
		}
		return old, nil
	})
	switch {
	case refused != nil:
		return p.fail(c, refused)
	case errors.Is(err, model.ErrNotFound):
		return p.fail(c, scim.Errorf(http.StatusNotFound, "", "no group %q", g.ID))
	case err != nil:
		return p.storeFailed(c, "update group", err)
	}
	saved, err := p.store.Groups().Get(ctx, g.ID)
	if err != nil {
		return p.storeFailed(c, "get group", err)
	}
	p.audit(ctx, p.store, p.zone, event, who, g.ID)
	c.Set(fiber.HeaderETag, etag(saved.Version))
	return send(c, http.StatusOK, p.groupRepresentation(c, saved))
}

func (p *Profile) replaceGroup(c *fiber.Ctx, who actor) error {
	r, err := p.resource(c, scim.Groups)
	if err != nil {
		return p.fail(c, err)
	}
	return p.changeGroup(c, who, "scim_group_replaced", func(scim.Resource) (scim.Resource, *scim.Error) { return r.Clone(), nil })
}

func (p *Profile) patchGroup(c *fiber.Ctx, who actor) error {
	ops, err := p.patchOps(c)
	if err != nil {
		return p.fail(c, err)
	}
	return p.changeGroup(c, who, "scim_group_patched", func(current scim.Resource) (scim.Resource, *scim.Error) {
		return scim.Groups.Patch(current, ops)
	})
}

func (p *Profile) deleteGroup(c *fiber.Ctx, who actor) error {
	g, nf, err := p.loadGroup(c)
	if r := p.loaded("group", nf, err); r != nil {
		return r(c)
	}
	return p.deleted(c, who, "group", g.ID, g.Version, func(ctx context.Context, st model.Store, v int64) error { return st.Groups().Delete(ctx, g.ID, v) })
}

func (p *Profile) groupPage(ctx context.Context, c *fiber.Ctx, zone string, st model.Store, q scim.Query) ([]map[string]any, int, error) {
	groups, total, err := st.Groups().Query(ctx, zone, userQuery(q))
	docs := make([]map[string]any, 0, len(groups))
	for _, g := range groups {
		docs = append(docs, p.groupRepresentation(c, g))
	}
	return docs, total, err
}
