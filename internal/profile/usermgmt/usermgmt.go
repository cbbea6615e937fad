// Package usermgmt is the user-management profile: SCIM 2.0 (RFC 7643,
// RFC 7644) over the zone's users, guarded by access tokens of its token
// profile. The protocol — schemas, filters, PATCH, checks, errors — is
// internal/scim; the users live in the store of the node's zone, where the
// login finds them, so a user provisioned here signs in at once.
package usermgmt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/password"
	"github.com/keygate/keygate/internal/profile/authn"
	"github.com/keygate/keygate/internal/profile/token"
	"github.com/keygate/keygate/internal/scim"
	"github.com/keygate/keygate/internal/storage/model"
)

// Endpoints, for metrics labels.
const (
	EndpointDiscovery = "scim_discovery"
	EndpointUsers     = "scim_users"
	EndpointGroups    = "scim_groups"
	EndpointAudit     = "audit_events"
)

// Limits on a request. The public listener refuses bodies over 64 KiB
// before any profile sees them (413); a user is a few KiB, and group
// memberships change by PATCH, a few members at a time.
const (
	MaxBody     = 64 << 10
	MaxPatchOps = 100
)

// Deps are what the profile needs from internal/served.
type Deps struct {
	Store model.Store
	Zone  string
	// Zones are the stores of the other zones the profile serves, by zone.
	Zones  map[string]model.Store
	Tokens *token.Profile // the token profile whose access tokens are accepted
	Hash   password.Params
	Logger *slog.Logger
	Now    func() time.Time
	// Metrics counts the audit events; may be nil.
	Metrics audit.Counter
}

// Profile serves SCIM at its path.
type Profile struct {
	name, path  string
	read, write string
	auditScope  string
	audiences   []string
	maxResults  int
	store       model.Store
	zone        string
	zones       map[string]model.Store
	tokens      *token.Profile
	hash        password.Params
	log         *slog.Logger
	now         func() time.Time
	limits      scim.Limits
	counter     audit.Counter // nil: events are not counted
}

// New builds the profile.
func New(p *config.Profile, deps Deps) (*Profile, error) {
	if p == nil || p.Type != config.ProfileUserManagement {
		return nil, errors.New("not a user-management profile")
	}
	if deps.Tokens == nil {
		return nil, fmt.Errorf("its token-profile %q must be served by the same service role", p.TokenProfile)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	return &Profile{name: p.Name, path: strings.TrimSuffix(p.Path, "/"), read: p.Scopes.Read, write: p.Scopes.Write, auditScope: p.Scopes.Audit,
		audiences: p.Audiences, maxResults: p.MaxResults, store: deps.Store, zone: deps.Zone, zones: deps.Zones, tokens: deps.Tokens,
		hash: deps.Hash, log: deps.Logger, now: deps.Now, counter: deps.Metrics,
		limits: scim.Limits{MaxResults: p.MaxResults, MaxPatchOps: MaxPatchOps, MaxBodyBytes: MaxBody}}, nil
}

func (p *Profile) Name() string { return p.name }
func (p *Profile) Path() string { return p.path }

// Wrap wraps a route's handler (metrics).
type Wrap = func(endpoint string) fiber.Handler

// MountWith registers the routes on r.
func (p *Profile) MountWith(r fiber.Router, wrap Wrap) {
	chain := func(endpoint string, h fiber.Handler) []fiber.Handler {
		if wrap == nil {
			return []fiber.Handler{h}
		}
		return []fiber.Handler{wrap(endpoint), h}
	}
	r.Get(p.path+"/ServiceProviderConfig", chain(EndpointDiscovery, p.serviceProviderConfig)...)
	r.Get(p.path+"/Schemas", chain(EndpointDiscovery, p.schemas)...)
	r.Get(p.path+"/Schemas/:id", chain(EndpointDiscovery, p.schemas)...)
	r.Get(p.path+"/ResourceTypes", chain(EndpointDiscovery, p.resourceTypes)...)
	r.Get(p.path+"/ResourceTypes/:name", chain(EndpointDiscovery, p.resourceTypes)...)
	users := p.path + "/Users"
	listUsers, searchUsers := p.lister(scim.Users, p.userPage)
	r.Get(users, chain(EndpointUsers, p.guard(false, listUsers))...)
	r.Post(users, chain(EndpointUsers, p.guard(true, p.createUser))...)
	r.Post(users+"/.search", chain(EndpointUsers, p.guard(false, searchUsers))...)
	r.Get(users+"/:id", chain(EndpointUsers, p.guard(false, p.getUser))...)
	r.Put(users+"/:id", chain(EndpointUsers, p.guard(true, p.replaceUser))...)
	r.Patch(users+"/:id", chain(EndpointUsers, p.guard(true, p.patchUser))...)
	r.Delete(users+"/:id", chain(EndpointUsers, p.guard(true, p.deleteUser))...)
	p.mountGroups(r, chain)
	r.Get(p.path+"/AuditEvents", chain(EndpointAudit, p.guardScopes([]string{p.auditScope}, false, p.auditEvents))...)
	r.All(users+"/*", chain(EndpointUsers, func(c *fiber.Ctx) error {
		return p.fail(c, scim.Errorf(http.StatusMethodNotAllowed, "", "method %s is not allowed here", c.Method()))
	})...)
}

// actor is who makes a change: the client, and the user if the token has one.
type actor struct{ client, subject string }

type handler func(c *fiber.Ctx, who actor) error

// guard checks the bearer token (RFC 6750) and its scope: write for
// changes, read or write for reads.
func (p *Profile) guard(write bool, h handler) fiber.Handler {
	need := []string{p.write}
	if !write {
		need = append(need, p.read)
	}
	return p.guardScopes(need, write, h)
}

// guardScopes checks the bearer token and that it has one of need.
func (p *Profile) guardScopes(need []string, write bool, h handler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		auth := c.Get(fiber.HeaderAuthorization)
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok {
			c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="`+p.name+`"`)
			return p.fail(c, scim.Errorf(http.StatusUnauthorized, "", "an access token is required (Authorization: Bearer)"))
		}
		ctx, cancel := context.WithTimeout(c.Context(), 10*time.Second)
		defer cancel()
		acc, ok, err := p.tokens.Authorize(ctx, strings.TrimSpace(tok), p.audiences)
		switch {
		case err != nil:
			p.log.Error("scim: token check failed", "profile", p.name, "error", err.Error())
			c.Set(fiber.HeaderRetryAfter, "5")
			return p.fail(c, scim.Errorf(http.StatusServiceUnavailable, "", "the token cannot be checked now; retry"))
		case !ok:
			c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="`+p.name+`", error="invalid_token"`)
			return p.fail(c, scim.Errorf(http.StatusUnauthorized, "", "the access token is invalid, expired, revoked or not meant for this service"))
		}
		if !slices.ContainsFunc(acc.Scopes, func(s string) bool { return slices.Contains(need, s) }) {
			c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="`+p.name+`", error="insufficient_scope", scope="`+need[0]+`"`)
			return p.fail(c, scim.Errorf(http.StatusForbidden, "", "the access token lacks the %s scope", need[len(need)-1]))
		}
		if write || c.Method() == fiber.MethodPost {
			if n := len(c.Body()); n > MaxBody {
				return p.fail(c, scim.Errorf(http.StatusRequestEntityTooLarge, "", "the body is %d bytes; at most %d are accepted", n, MaxBody))
			}
			if c.Method() != fiber.MethodDelete {
				ct := strings.ToLower(strings.TrimSpace(strings.Split(c.Get(fiber.HeaderContentType), ";")[0]))
				if ct != "application/scim+json" && ct != "application/json" {
					return p.fail(c, scim.Errorf(http.StatusUnsupportedMediaType, "", "send application/scim+json"))
				}
			}
		}
		return h(c, actor{client: acc.ClientID, subject: acc.Subject})
	}
}

// send writes a SCIM JSON body.
func send(c *fiber.Ctx, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, "application/scim+json; charset=utf-8")
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(status).Send(body)
}

func (p *Profile) fail(c *fiber.Ctx, e *scim.Error) error { return send(c, e.Status, e) }

func (p *Profile) serviceProviderConfig(c *fiber.Ctx) error {
	return send(c, http.StatusOK, scim.ServiceProviderConfig(p.location(c, ""), p.limits))
}

func (p *Profile) schemas(c *fiber.Ctx) error {
	base := p.location(c, "")
	all := scim.Schemas
	if id := c.Params("id"); id != "" {
		for _, s := range all {
			if strings.EqualFold(s.ID, id) {
				return send(c, http.StatusOK, s.SchemaDoc(base))
			}
		}
		return p.fail(c, scim.Errorf(http.StatusNotFound, "", "no schema %q", id))
	}
	var docs []map[string]any
	for _, s := range all {
		docs = append(docs, s.SchemaDoc(base))
	}
	return send(c, http.StatusOK, scim.ListResponse(len(docs), 1, docs))
}

func (p *Profile) resourceTypes(c *fiber.Ctx) error {
	base := p.location(c, "")
	var docs []map[string]any
	for _, rt := range scim.ResourceTypes {
		if name := c.Params("name"); name != "" && strings.EqualFold(name, rt.Name) {
			return send(c, http.StatusOK, rt.ResourceTypeDoc(base))
		}
		docs = append(docs, rt.ResourceTypeDoc(base))
	}
	if name := c.Params("name"); name != "" {
		return p.fail(c, scim.Errorf(http.StatusNotFound, "", "no resource type %q", name))
	}
	return send(c, http.StatusOK, scim.ListResponse(len(docs), 1, docs))
}

// location is the absolute URL of a path under the profile: the scheme
// and host the client used (the public listener is behind TLS
// termination in production; X-Forwarded-Proto is honoured only as the
// scheme).
func (p *Profile) location(c *fiber.Ctx, rest string) string {
	scheme := "http"
	if c.Protocol() == "https" || strings.EqualFold(c.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return scheme + "://" + c.Hostname() + p.path + rest
}

// ---- users ----

// idSep joins a user's zone and its random part in its SCIM id: zone
// names never contain it, so the home zone can be read from the id.
const idSep = "~"

func newID(zone string) string { return zone + idSep + model.NewID() }

// storeOf is the store of a zone this profile serves: the node's own, or
// one of its zones; nil for any other.
func (p *Profile) storeOf(zone string) model.Store {
	if zone == p.zone {
		return p.store
	}
	return p.zones[zone]
}

// homeOf is the zone and store of a resource id ("", nil: not ours). An
// id without a zone (a user made by keygate user add or a federated
// sign-in) is one of the node's zone.
func (p *Profile) homeOf(id string) (string, model.Store) {
	zone, _, ok := strings.Cut(id, idSep)
	if !ok {
		return p.zone, p.store
	}
	return zone, p.storeOf(zone)
}

// requestZone is the zone a create or a list is for: ?zone= names another
// zone the profile serves, else the node's.
func (p *Profile) requestZone(c *fiber.Ctx) (string, model.Store, *scim.Error) {
	zone := c.Query("zone")
	if zone == "" {
		return p.zone, p.store, nil
	}
	if st := p.storeOf(zone); st != nil {
		return zone, st, nil
	}
	return "", nil, scim.Errorf(http.StatusBadRequest, scim.InvalidValue, "this service does not serve zone %q", zone)
}

// representation is a stored user as SCIM: the attributes, schemas, id
// and meta (with the version as a weak ETag).
func (p *Profile) representation(c *fiber.Ctx, u model.User) map[string]any {
	doc := p.bare(c, u)
	ctx, cancel := p.ctx(c)
	defer cancel()
	if _, st := p.homeOf(u.ID); st != nil {
		doc = p.withGroups(ctx, c, st, u.ID, doc)
	}
	return doc
}

// withGroups adds the groups the user is a direct member of.
func (p *Profile) withGroups(ctx context.Context, c *fiber.Ctx, st model.Store, id string, doc map[string]any) map[string]any {
	if refs, err := st.Groups().Of(ctx, id); err == nil && len(refs) > 0 {
		var gs []any
		for _, g := range refs {
			gs = append(gs, map[string]any{"value": g.ID, "display": g.DisplayName, "type": "direct", "$ref": p.location(c, "/Groups/"+g.ID)})
		}
		doc["groups"] = gs
	}
	return doc
}

// bare is the representation without the groups.
func (p *Profile) bare(c *fiber.Ctx, u model.User) map[string]any {
	doc := map[string]any{}
	for k, v := range u.SCIM {
		doc[k] = v
	}
	if doc["userName"] == nil {
		doc["userName"] = u.Username // a user made with `keygate user add`
	}
	if u.ExternalID != "" {
		doc["externalId"] = u.ExternalID
	}
	doc["active"] = u.Status == "" || u.Status == model.UserActive
	schemas := []any{scim.UserSchema}
	if _, ok := doc[scim.EnterpriseUserSchema]; ok {
		schemas = append(schemas, scim.EnterpriseUserSchema)
	}
	doc["schemas"] = schemas
	doc["id"] = u.ID
	doc["meta"] = map[string]any{
		"resourceType": "User",
		"created":      u.CreatedAt.UTC().Format(time.RFC3339),
		"lastModified": u.UpdatedAt.UTC().Format(time.RFC3339),
		"location":     p.location(c, "/Users/"+u.ID),
		"version":      etag(u.Version),
	}
	return doc
}

func etag(v int64) string { return `W/"` + strconv.FormatInt(v, 10) + `"` }

// fromResource fills the stored user from a checked resource: username
// (normalised as the login does), external id, status, password hash. The
// status changes only when the resource says active: a replace that omits
// it keeps a disabled user disabled; active: true re-enables a disabled
// user but does not lift a lock, which SCIM does not set.
func (p *Profile) fromResource(u *model.User, r scim.Resource) *scim.Error {
	name, _ := r["userName"].(string)
	if strings.TrimSpace(name) != name || strings.ContainsAny(name, "\x00\r\n\t") {
		return scim.Errorf(http.StatusBadRequest, scim.InvalidValue, "userName must not start or end with spaces or hold control characters")
	}
	u.Username = authn.NormaliseUsername(name)
	u.ExternalID, _ = r["externalId"].(string)
	delete(r, "externalId")
	if u.Status == "" {
		u.Status = model.UserActive
	}
	if active, ok := r["active"].(bool); ok {
		switch {
		case !active:
			u.Status = model.UserDisabled
		case u.Status == model.UserDisabled:
			u.Status = model.UserActive
		}
		delete(r, "active")
	}
	if pw, ok := r["password"].(string); ok {
		if len(pw) < 8 || len(pw) > 1024 {
			return scim.Errorf(http.StatusBadRequest, scim.InvalidValue, "password must be 8 to 1024 bytes long")
		}
		u.PasswordHash = password.Hash(pw, p.hash)
		delete(r, "password")
	}
	u.SCIM = r
	return nil
}

func (p *Profile) decode(c *fiber.Ctx) (map[string]any, *scim.Error) {
	return scim.Decode(bytes.NewReader(c.Body()))
}

// patchOps are the request body's PATCH operations (at most MaxPatchOps).
func (p *Profile) patchOps(c *fiber.Ctx) ([]scim.Operation, *scim.Error) {
	in, err := p.decode(c)
	if err != nil {
		return nil, err
	}
	return scim.DecodePatch(in, MaxPatchOps)
}

// resource is the request body as a resource of rt: decoded, then checked
// against its schema, as a create or a replace takes it.
func (p *Profile) resource(c *fiber.Ctx, rt *scim.ResourceType) (scim.Resource, *scim.Error) {
	in, err := p.decode(c)
	if err != nil {
		return nil, err
	}
	return rt.Check(in)
}

func (p *Profile) createUser(c *fiber.Ctx, who actor) error {
	r, err := p.resource(c, scim.Users)
	if err != nil {
		return p.fail(c, err)
	}
	zone, st, zerr := p.requestZone(c)
	if zerr != nil {
		return p.fail(c, zerr)
	}
	now := p.now().UTC()
	u := model.User{ID: newID(zone), Zone: zone, CreatedAt: now, UpdatedAt: now, Version: 1, Claims: map[string]any{}}
	if err := p.fromResource(&u, r); err != nil {
		return p.fail(c, err)
	}
	u.Claims = claimsOf(r)
	ctx, cancel := p.ctx(c)
	defer cancel()
	if serr := st.Users().Create(ctx, u); serr != nil {
		if errors.Is(serr, model.ErrConflict) {
			return p.fail(c, scim.Errorf(http.StatusConflict, scim.Uniqueness, "userName %q is taken in this zone", r["userName"]))
		}
		return p.storeFailed(c, "create user", serr)
	}
	p.audit(ctx, st, zone, "scim_user_created", who, u.ID)
	doc := p.representation(c, u)
	c.Set(fiber.HeaderLocation, p.location(c, "/Users/"+u.ID))
	c.Set(fiber.HeaderETag, etag(u.Version))
	return send(c, http.StatusCreated, doc)
}

// claimsOf derives the OpenID Connect claims the token profile releases
// (userinfo, ID tokens) from the SCIM attributes.
func claimsOf(r scim.Resource) map[string]any {
	claims := map[string]any{}
	if v, ok := r["userName"].(string); ok {
		claims["preferred_username"] = v
	}
	if name, ok := r["name"].(map[string]any); ok {
		for scimName, claim := range map[string]string{"formatted": "name", "familyName": "family_name", "givenName": "given_name", "middleName": "middle_name"} {
			if v, ok := name[scimName].(string); ok {
				claims[claim] = v
			}
		}
	}
	if v, ok := r["displayName"].(string); ok && claims["name"] == nil {
		claims["name"] = v
	}
	if v, ok := r["nickName"].(string); ok {
		claims["nickname"] = v
	}
	if v, ok := r["locale"].(string); ok {
		claims["locale"] = v
	}
	if v, ok := r["timezone"].(string); ok {
		claims["zoneinfo"] = v
	}
	if emails, ok := r["emails"].([]any); ok {
		var pick string
		for _, e := range emails {
			m, _ := e.(map[string]any)
			v, _ := m["value"].(string)
			if primary, _ := m["primary"].(bool); primary || pick == "" {
				pick = v
			}
		}
		if pick != "" {
			claims["email"] = pick
			claims["email_verified"] = false
		}
	}
	return claims
}

func (p *Profile) ctx(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Context(), 10*time.Second)
}

func (p *Profile) storeFailed(c *fiber.Ctx, op string, err error) error {
	p.log.Error("scim: "+op+" failed", "profile", p.name, "error", err.Error())
	c.Set(fiber.HeaderRetryAfter, "5")
	return p.fail(c, scim.Errorf(http.StatusServiceUnavailable, "", "the user store is unavailable; retry"))
}

// load reads a user of this zone by its SCIM id.
func (p *Profile) load(c *fiber.Ctx) (model.User, *scim.Error, error) {
	id := c.Params("id")
	zone, st := p.homeOf(id)
	if st == nil {
		return model.User{}, scim.Errorf(http.StatusNotFound, "", "no user %q", id), nil
	}
	ctx, cancel := p.ctx(c)
	defer cancel()
	u, err := st.Users().Get(ctx, id)
	if errors.Is(err, model.ErrNotFound) || (err == nil && u.Zone != zone) {
		return model.User{}, scim.Errorf(http.StatusNotFound, "", "no user %q", id), nil
	}
	return u, nil, err
}

// preconditions answers If-Match (RFC 7644 §3.14): the client's version
// must be the current one.
func preconditions(c *fiber.Ctx, u model.User) *scim.Error { return preconditionsVersion(c, u.Version) }

func preconditionsVersion(c *fiber.Ctx, version int64) *scim.Error {
	im := c.Get(fiber.HeaderIfMatch)
	if im == "" || im == "*" {
		return nil
	}
	for _, tag := range strings.Split(im, ",") {
		if strings.TrimSpace(tag) == etag(version) || strings.TrimSpace(tag) == strings.TrimPrefix(etag(version), "W/") {
			return nil
		}
	}
	return scim.Errorf(http.StatusPreconditionFailed, "", "the resource has changed (now %s); read it again", etag(version))
}

func (p *Profile) getUser(c *fiber.Ctx, _ actor) error {
	u, nf, err := p.load(c)
	if r := p.loaded("user", nf, err); r != nil {
		return r(c)
	}
	return p.sendResource(c, scim.Users, u.Version, func() map[string]any { return p.representation(c, u) })
}

// loaded answers a failed load (nil when there is none to answer).
func (p *Profile) loaded(kind string, nf *scim.Error, err error) func(*fiber.Ctx) error {
	switch {
	case err != nil:
		return func(c *fiber.Ctx) error { return p.storeFailed(c, "get "+kind, err) }
	case nf != nil:
		return func(c *fiber.Ctx) error { return p.fail(c, nf) }
	}
	return nil
}

// sendResource answers a GET: 304 for a matching If-None-Match, else the
// representation with the request's projection and the ETag.
func (p *Profile) sendResource(c *fiber.Ctx, rt *scim.ResourceType, version int64, doc func() map[string]any) error {
	if inm := c.Get(fiber.HeaderIfNoneMatch); inm != "" && strings.Contains(inm, etag(version)) {
		return c.SendStatus(http.StatusNotModified)
	}
	proj, perr := rt.ParseProjection(c.Query("attributes"), c.Query("excludedAttributes"))
	if perr != nil {
		return p.fail(c, perr)
	}
	c.Set(fiber.HeaderETag, etag(version))
	return send(c, http.StatusOK, rt.Apply(proj, doc()))
}

// deleted answers a DELETE once the resource is loaded: If-Match, the
// delete in its home store, the audit event, 204. With If-Match the store
// deletes only the version that matched, so a change that lands between
// the read and the delete is not lost to it.
func (p *Profile) deleted(c *fiber.Ctx, who actor, kind, id string, version int64, del func(ctx context.Context, st model.Store, version int64) error) error {
	if e := preconditionsVersion(c, version); e != nil {
		return p.fail(c, e)
	}
	if im := c.Get(fiber.HeaderIfMatch); im == "" || im == "*" {
		version = 0
	}
	ctx, cancel := p.ctx(c)
	defer cancel()
	zone, st := p.homeOf(id)
	switch err := del(ctx, st, version); {
	case errors.Is(err, model.ErrModified):
		return p.fail(c, scim.Errorf(http.StatusPreconditionFailed, "", "the resource has changed since it was read; read it again"))
	case err != nil && !errors.Is(err, model.ErrNotFound):
		return p.storeFailed(c, "delete "+kind, err)
	}
	p.audit(ctx, st, zone, "scim_"+kind+"_deleted", who, id)
	return c.SendStatus(http.StatusNoContent)
}

// change runs a replace or a PATCH: it reads the user in the store's
// update transaction, so concurrent changes serialise, and nothing is
// stored unless the whole change is valid.
func (p *Profile) change(c *fiber.Ctx, who actor, event string, apply func(old model.User, current scim.Resource) (scim.Resource, *scim.Error)) error {
	id := c.Params("id")
	zone, st := p.homeOf(id)
	if st == nil {
		return p.fail(c, scim.Errorf(http.StatusNotFound, "", "no user %q", id))
	}
	ctx, cancel := p.ctx(c)
	defer cancel()
	var refused *scim.Error
	var saved model.User
	err := st.Users().Update(ctx, id, func(old model.User) (model.User, error) {
		if old.Zone != zone {
			return old, model.ErrNotFound
		}
		if e := preconditions(c, old); e != nil {
			refused = e
			return old, e
		}
		current := p.current(old)
		next, e := apply(old, current)
		if e != nil {
			refused = e
			return old, e
		}
		nu := old
		if e := p.fromResource(&nu, next); e != nil {
			refused = e
			return old, e
		}
		if _, kept := next["password"]; !kept && nu.PasswordHash == "" {
			nu.PasswordHash = old.PasswordHash
		}
		nu.Claims = claimsOf(next)
		saved = nu
		return nu, nil
	})
	switch {
	case refused != nil:
		return p.fail(c, refused)
	case errors.Is(err, model.ErrNotFound):
		return p.fail(c, scim.Errorf(http.StatusNotFound, "", "no user %q", id))
	case errors.Is(err, model.ErrConflict):
		return p.fail(c, scim.Errorf(http.StatusConflict, scim.Uniqueness, "that userName is taken in this zone"))
	case err != nil:
		return p.storeFailed(c, "update user", err)
	}
	u, err := st.Users().Get(ctx, id)
	if err != nil {
		u = saved
	}
	p.audit(ctx, st, zone, event, who, id)
	c.Set(fiber.HeaderETag, etag(u.Version))
	return send(c, http.StatusOK, p.representation(c, u))
}

// current is the stored user as a checked resource (what a PATCH starts
// from): its attributes with userName, externalId and active.
func (p *Profile) current(u model.User) scim.Resource {
	r := scim.Resource{}
	for k, v := range u.SCIM {
		r[k] = v
	}
	if r["userName"] == nil {
		r["userName"] = u.Username
	}
	if u.ExternalID != "" {
		r["externalId"] = u.ExternalID
	}
	return r
}

func (p *Profile) replaceUser(c *fiber.Ctx, who actor) error {
	r, err := p.resource(c, scim.Users)
	if err != nil {
		return p.fail(c, err)
	}
	return p.change(c, who, "scim_user_replaced", func(old model.User, _ scim.Resource) (scim.Resource, *scim.Error) {
		return r.Clone(), nil
	})
}

func (p *Profile) patchUser(c *fiber.Ctx, who actor) error {
	ops, err := p.patchOps(c)
	if err != nil {
		return p.fail(c, err)
	}
	return p.change(c, who, "scim_user_patched", func(_ model.User, current scim.Resource) (scim.Resource, *scim.Error) {
		return scim.Users.Patch(current, ops)
	})
}

func (p *Profile) deleteUser(c *fiber.Ctx, who actor) error {
	u, nf, err := p.load(c)
	if r := p.loaded("user", nf, err); r != nil {
		return r(c)
	}
	return p.deleted(c, who, "user", u.ID, u.Version, func(ctx context.Context, st model.Store, v int64) error { return st.Users().Delete(ctx, u.ID, v) })
}

// page is one page of a list: the resources as represented, and how many
// match in all.
type page func(ctx context.Context, c *fiber.Ctx, zone string, st model.Store, q scim.Query) ([]map[string]any, int, error)

// lister answers GET <type> and POST <type>/.search for a resource type:
// the parameters checked, the zone chosen (?zone=), the page read, the
// attributes projected.
func (p *Profile) lister(rt *scim.ResourceType, read page) (list, search handler) {
	run := func(c *fiber.Ctx, params scim.Params) error {
		q, err := rt.Query(params, p.maxResults)
		if err != nil {
			return p.fail(c, err)
		}
		zone, st, zerr := p.requestZone(c)
		if zerr != nil {
			return p.fail(c, zerr)
		}
		ctx, cancel := p.ctx(c)
		defer cancel()
		docs, total, serr := read(ctx, c, zone, st, q)
		if serr != nil {
			var se *scim.Error
			if errors.As(serr, &se) {
				return p.fail(c, se)
			}
			return p.storeFailed(c, "list "+strings.ToLower(rt.Name)+"s", serr)
		}
		for i := range docs {
			docs[i] = rt.Apply(q.Projection, docs[i])
		}
		return send(c, http.StatusOK, scim.ListResponse(total, q.StartIndex, docs))
	}
	list = func(c *fiber.Ctx, _ actor) error {
		params, err := scim.ParamsFromQuery(func(k string) string { return c.Query(k) })
		if err != nil {
			return p.fail(c, err)
		}
		return run(c, params)
	}
	search = func(c *fiber.Ctx, _ actor) error {
		in, err := p.decode(c)
		if err != nil {
			return p.fail(c, err)
		}
		params, err := scim.ParamsFromSearch(in)
		if err != nil {
			return p.fail(c, err)
		}
		return run(c, params)
	}
	return list, search
}

func userQuery(q scim.Query) model.UserQuery {
	return model.UserQuery{Filter: q.Filter, SortBy: q.SortBy, Descending: q.Descending, Offset: q.StartIndex - 1, Limit: q.Count}
}

func (p *Profile) userPage(ctx context.Context, c *fiber.Ctx, zone string, st model.Store, q scim.Query) ([]map[string]any, int, error) {
	users, total, err := st.Users().Query(ctx, zone, userQuery(q))
	docs := make([]map[string]any, 0, len(users))
	for _, u := range users {
		docs = append(docs, p.representation(c, u))
	}
	return docs, total, err
}

// audit records a SCIM change in the audit trail of the zone it concerns
// (the resource's home), with the actor.
func (p *Profile) audit(ctx context.Context, st model.Store, zone, typ string, who actor, userID string) {
	ev := model.AuditEvent{Time: p.now().UTC(), Type: typ, Zone: zone, Subject: userID, ClientID: who.client,
		Details: map[string]any{"profile": p.name}}
	if who.subject != "" && who.subject != who.client {
		ev.Details["actor_user"] = who.subject
	}
	_ = audit.Trail{Store: st, Logger: p.log, Metrics: p.counter}.Record(ctx, ev)
}

// auditEvents answers GET <path>/AuditEvents: the zone's audit trail,
// oldest first, filtered by since/until (RFC 3339), type, user, client,
// at most limit (default 100, at most 1000) events. Read-only, behind its
// own scope.
func (p *Profile) auditEvents(c *fiber.Ctx, _ actor) error {
	q := model.AuditQuery{Zone: p.zone, Type: c.Query("type"), Subject: c.Query("user"), ClientID: c.Query("client"), Limit: 100}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if v := c.Query(t.name); v != "" {
			at, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return p.fail(c, scim.Errorf(http.StatusBadRequest, scim.InvalidValue, "%s must be an RFC 3339 time", t.name))
			}
			*t.dst = at
		}
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return p.fail(c, scim.Errorf(http.StatusBadRequest, scim.InvalidValue, "limit must be between 1 and 1000"))
		}
		q.Limit = n
	}
	ctx, cancel := p.ctx(c)
	defer cancel()
	events, err := p.store.Audit().List(ctx, q)
	if err != nil {
		return p.storeFailed(c, "list audit events", err)
	}
	out := make([]map[string]any, 0, len(events))
	for _, e := range events {
		out = append(out, map[string]any{"id": e.ID, "time": e.Time.UTC().Format(time.RFC3339Nano), "type": e.Type, "zone": e.Zone,
			"user": e.Subject, "client": e.ClientID, "ip": e.IP, "details": e.Details})
	}
	body, err := json.Marshal(map[string]any{"events": out})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, "application/json")
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Send(body)
}
