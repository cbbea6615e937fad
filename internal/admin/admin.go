// Package admin is the admin node's API (SPEC §5): it validates config
// bundles for every service role, signs and publishes them, keeps their
// history for rollback, and shows the cluster from the runtime nodes'
// heartbeats. Runtime nodes never call it.
//
// Every call needs "Authorization: Bearer <token>" (the token from
// KEYGATE_ADMIN_TOKEN_FILE, compared in constant time; a missing or wrong
// token gets 401 with WWW-Authenticate: Bearer). The token is never logged.
// Optionally the listener serves HTTPS and requires a client certificate
// (mTLS, see ServerTLS); the token is required all the same.
//
//	POST /admin/v1/bundles[?force=true]   upload (JSON, see Upload) → 201 manifest;
//	                                      422 {"error":"invalid_bundle","errors":[…]} with nothing written;
//	                                      409 {"error":"schema_too_new",…} when a live runtime node
//	                                      supports an older schema (unless force=true)
//	POST /admin/v1/bundles/plan           the same upload → 200 Plan: what publishing it would change, per
//	                                      role, against the active bundle; nothing is written
//	GET  /admin/v1/bundles                history, newest first, with the active flag
//	POST /admin/v1/bundles/{version}/activate   rollback (or roll forward) → 200; 404 unknown version
//	GET  /admin/v1/cluster                {"nodes":[…],"errors":[…]} from every data source's heartbeats
package admin

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/internal/bundle"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/datasource"
	"github.com/keygate/keygate/internal/dotenv"
	"github.com/keygate/keygate/internal/lint"
	"github.com/keygate/keygate/internal/publish"
	"github.com/keygate/keygate/internal/validate"
)

// stateStopping is the heartbeat state a runtime node writes on a clean
// shutdown (node.StateStopping; not imported: the admin needs no runtime).
const stateStopping = "stopping"

// MaxUpload bounds a bundle upload.
const MaxUpload = 8 << 20

// Config wires the admin API.
type Config struct {
	Publisher  *publish.Publisher
	SigningKey ed25519.PrivateKey
	Token      []byte // the bearer token, trimmed
	Logger     *slog.Logger
	// For the cluster view: the admin's own config directory (used when
	// nothing is published yet), env files and environment, with which it
	// resolves every role's data source.
	ConfigDir string
	EnvFiles  []string
	Environ   []string
	Pools     *datasource.Pools
	// Stage is the stage this admin node publishes to (KEYGATE_STAGE), and
	// ExcludeTags what that stage's nodes drop (KEYGATE_EXCLUDE_TAGS), for
	// the go-live lint.
	Stage       string
	ExcludeTags []string
	// FileDirs are the directories runtime nodes read ${file:} targets
	// from (KEYGATE_FILE_DIRS): a bundle naming a path outside them is
	// refused. The admin never reads the targets.
	FileDirs []string
	// StaleAfter marks a node stale when its last heartbeat is older
	// (default 3 × 5 s, three default heartbeat intervals). A node is
	// also stale once its row's own expiry (three of its intervals) has
	// passed, or when it reported a clean stop.
	StaleAfter time.Duration
	// RolloutSoak is how long the first roles of a staged rollout must
	// serve a version before the rest get it, RolloutTimeout how long they
	// may take before the rollout stops (KEYGATE_ROLLOUT_SOAK, _TIMEOUT;
	// default 1m and 10m); an upload may set its own. RolloutCheckInterval
	// is how often Run judges a canary (default 1s).
	RolloutSoak          time.Duration
	RolloutTimeout       time.Duration
	RolloutCheckInterval time.Duration
}

// Server is the admin API handler.
type Server struct {
	c     Config
	token [32]byte
	// mu serializes publish, activate and rollout moves (one writer of the
	// publish dir) and guards rollout, the last publish's record.
	mu      sync.Mutex
	rollout *Rollout
	// unapplied: the record's channel moves failed after it was saved;
	// Run retries them.
	unapplied bool
	// sources caches the data sources each published version's roles
	// resolve to with the admin's environment, by version directory.
	sourcesMu sync.Mutex
	sources   map[string]versionSources
	cache     *versionCache
}

// New returns the admin API.
func New(c Config) *Server {
	if c.StaleAfter == 0 {
		c.StaleAfter = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RolloutSoak == 0 {
		c.RolloutSoak = time.Minute
	}
	if c.RolloutTimeout == 0 {
		c.RolloutTimeout = 10 * time.Minute
	}
	if c.RolloutCheckInterval == 0 {
		c.RolloutCheckInterval = time.Second
	}
	s := &Server{c: c, token: sha256.Sum256(c.Token), sources: map[string]versionSources{}}
	if c.Publisher != nil {
		s.cache = newVersionCache(c.Publisher.Dir())
	}
	return s
}

// Handler routes the admin API behind bearer authentication.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/v1/bundles", s.postBundle)
	mux.HandleFunc("POST /admin/v1/bundles/plan", s.planBundle)
	mux.HandleFunc("GET /admin/v1/bundles", s.listBundles)
	mux.HandleFunc("POST /admin/v1/bundles/{version}/activate", s.activate)
	mux.HandleFunc("GET /admin/v1/cluster", s.cluster)
	mux.HandleFunc("GET /admin/v1/rollout", s.getRollout)
	mux.HandleFunc("POST /admin/v1/rollout/{action}", s.rolloutAction)
	return s.authenticate(mux)
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !ok || len(s.c.Token) == 0 || subtle.ConstantTimeCompare(sum[:], s.token[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="keygate-admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "a valid admin bearer token is required"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Upload is the body of POST /admin/v1/bundles.
type Upload struct {
	// Files are the config.d files by name (*.yaml / *.yml, no directories).
	Files   map[string]string `json:"files"`
	Author  string            `json:"author"`
	Message string            `json:"message"`
	// EnvFiles, optional, are env files by stage or role: {"staging":
	// {"staging.env": "…"}}. A key that names a service role is checked
	// against that role, any other key (a stage) against every role: each
	// variable the role needs without a default must be declared (set,
	// even to an empty value) in those files, applied in name order.
	EnvFiles map[string]map[string]string `json:"env_files"`
	// Stage, optional, is the stage the bundle is for (default the admin
	// node's KEYGATE_STAGE): the go-live lint judges it for that stage, and
	// refuses error-level findings for production unless forced.
	Stage string `json:"stage"`
	// Rollout, optional, publishes to Rollout.First first and to the other
	// roles once those have served it for the soak time (see Rollout).
	Rollout *RolloutSpec `json:"rollout"`
}

type problem struct {
	Error       string   `json:"error"`
	Description string   `json:"error_description,omitempty"`
	Errors      []string `json:"errors,omitempty"`
}

// readUpload decodes a bundle upload (at most MaxUpload bytes, no
// unknown fields), answering 400 itself when it cannot.
func readUpload(w http.ResponseWriter, r *http.Request) (Upload, bool) {
	var up Upload
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxUpload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&up); err != nil {
		writeJSON(w, http.StatusBadRequest, problem{Error: "invalid_request", Description: "body must be a JSON bundle upload: " + err.Error()})
		return Upload{}, false
	}
	return up, true
}

func (s *Server) postBundle(w http.ResponseWriter, r *http.Request) {
	up, ok := readUpload(w, r)
	if !ok {
		return
	}
	stage := s.stage(up)
	var findings []lint.Finding
	c := s.validate(up, func(dir string, _ *bundle.Bundle) { findings = s.lint(dir, stage) })
	if len(c.errs) > 0 {
		s.c.Logger.Warn("bundle refused", "errors", len(c.errs), "author", up.Author)
		writeJSON(w, http.StatusUnprocessableEntity, problem{Error: "invalid_bundle", Description: "the bundle is invalid; nothing was published", Errors: c.errs})
		return
	}
	b := c.bundle
	force := r.URL.Query().Get("force") == "true"
	if stage == "production" && lint.Failing(findings) && !force {
		s.c.Logger.Warn("bundle refused by the go-live lint", "stage", stage, "author", up.Author)
		writeJSON(w, http.StatusUnprocessableEntity, problem{Error: "lint_failed",
			Description: "the go-live lint has error-level findings for production; fix or silence them (lint-ignore), or publish with ?force=true",
			Errors:      findingLines(findings)})
		return
	}
	if !force {
		if oldest, nodes := s.oldestSchema(r.Context()); oldest >= 0 && b.Manifest.Schema > oldest {
			writeJSON(w, http.StatusConflict, problem{Error: "schema_too_new",
				Description: fmt.Sprintf("the bundle needs config schema %d but live runtime nodes support only up to %d (%s); upgrade them first, or publish with ?force=true",
					b.Manifest.Schema, oldest, strings.Join(nodes, ", "))})
			return
		}
	}
	if errs := s.checkSpec(up.Rollout, sortedKeys(b.Manifest.Variables)); len(errs) > 0 {
		writeJSON(w, http.StatusUnprocessableEntity, problem{Error: "invalid_rollout", Description: "the staged rollout cannot be done; nothing was published", Errors: errs})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rollout != nil && s.rollout.State == RolloutCanary {
		s.inProgress(w)
		return
	}
	version, err := s.c.Publisher.NextVersion()
	if err == nil {
		b.Manifest.Version = version
		err = b.Sign(s.c.SigningKey)
	}
	if err == nil {
		err = s.c.Publisher.Write(b)
	}
	var ro *Rollout
	if err == nil {
		ro, err = s.start(version, b.Manifest.Schema, sortedKeys(b.Manifest.Variables), up.Rollout, up.Author, "published")
	}
	if err != nil {
		s.c.Logger.Error("publish failed", "error", err.Error())
		writeJSON(w, http.StatusInternalServerError, problem{Error: "server_error", Description: "publishing failed; see the admin node's log"})
		return
	}
	s.c.Logger.Info("bundle published", "version", version, "content_hash", b.Manifest.ContentHash[:12], "author", up.Author,
		"rollout", ro.State, "first", strings.Join(ro.First, ","))
	go s.auditBundle("bundle_published", version, up.Author, ro)
	writeJSON(w, http.StatusCreated, published{Manifest: b.Manifest, Stage: stage, Lint: findingLines(findings), NotChecked: orEmpty(c.notChecked), Rollout: ro})
}

// published is the answer to a publish: the manifest, with the go-live
// lint's findings for the stage.
type published struct {
	bundle.Manifest
	Stage string   `json:"stage,omitempty"`
	Lint  []string `json:"lint"`
	// NotChecked are the values whose own checks need a variable the admin
	// does not know (a vault secret): the runtime nodes check them.
	NotChecked []string `json:"not_checked"`
	Rollout    *Rollout `json:"rollout"`
}

func orEmpty(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}

// stage is the upload's stage, else the admin node's.
func (s *Server) stage(up Upload) string {
	if up.Stage != "" {
		return up.Stage
	}
	return s.c.Stage
}

// lint runs the go-live lint over a valid bundle in dir for stage. The
// roles differ only in which variables they need, so one role's load
// gives every entry.
func (s *Server) lint(dir, stage string) []lint.Finding {
	roles, err := config.Roles(config.Options{Dir: dir, Lenient: true, NoFileReads: true})
	if err != nil || len(roles) == 0 {
		return nil
	}
	_, w, err := config.LoadWritten(config.Options{Dir: dir, Role: roles[0], Lenient: true, NoFileReads: true,
		ExcludeTags: s.c.ExcludeTags, Environ: s.c.Environ, EnvFiles: s.c.EnvFiles})
	if err != nil {
		return nil
	}
	return lint.Check(w, lint.Options{Stage: stage})
}

// findingLines prints findings as `keygate config lint` does, never nil.
func findingLines(fs []lint.Finding) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.String())
	}
	return out
}

// validate builds the bundle in a scratch directory; it returns every
// problem at once. Nothing is written to the publish directory. inspect,
// if set, is called with the scratch directory of a valid bundle before
// it is removed (the plan reads it).
func (s *Server) validate(up Upload, inspect func(dir string, b *bundle.Bundle)) *checked {
	var errs []string
	if len(up.Files) == 0 {
		return &checked{errs: []string{"files: a bundle needs at least one *.yaml file"}}
	}
	tmp, err := os.MkdirTemp("", "keygate-bundle-")
	if err != nil {
		return &checked{errs: []string{"server: cannot create a scratch directory"}}
	}
	defer os.RemoveAll(tmp)
	for name, body := range up.Files {
		if ext := filepath.Ext(name); name != filepath.Base(name) || strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
			errs = append(errs, fmt.Sprintf("files: %q: must be a plain *.yaml or *.yml file name (no directories, not hidden)", name))
			continue
		}
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(body), 0o644); err != nil {
			errs = append(errs, fmt.Sprintf("files: %q: %v", name, err))
		}
	}
	if len(errs) > 0 {
		return &checked{errs: errs}
	}
	b, err := bundle.Build(tmp, bundle.Meta{Author: up.Author, Message: up.Message}, s.c.FileDirs)
	if err != nil {
		lines := strings.Split(err.Error(), "\n")
		for i := range lines {
			lines[i] = strings.ReplaceAll(lines[i], tmp+string(filepath.Separator), "")
		}
		return &checked{errs: lines}
	}
	// Each role as its nodes would load it: with the upload's env files
	// for it (their non-empty values; an empty one is the vault's), else
	// with no variable at all.
	checks := map[string][]string{} // role → environ
	for _, role := range sortedKeys(b.Manifest.Variables) {
		checks[role] = nil
	}
	for _, stage := range sortedKeys(up.EnvFiles) {
		files := up.EnvFiles[stage]
		declared := map[string]bool{}
		var environ []string
		for _, name := range sortedKeys(files) {
			vars, err := dotenv.Parse(stage+"/"+name, []byte(files[name]))
			if err != nil {
				errs = append(errs, strings.Split(err.Error(), "\n")...)
			}
			for _, v := range vars {
				declared[v.Name] = true
				if v.Value != "" {
					environ = append(environ, v.Name+"="+v.Value)
				}
			}
		}
		roles := []string{stage}
		if _, isRole := b.Manifest.Variables[stage]; !isRole {
			roles = sortedKeys(b.Manifest.Variables)
		}
		for _, role := range roles {
			checks[role] = append(checks[role], environ...)
			for _, v := range b.Manifest.Variables[role] {
				if !declared[v] {
					errs = append(errs, fmt.Sprintf("env_files.%s: service role %s needs variable %s, which its env files do not declare", stage, role, v))
				}
			}
		}
	}
	var notChecked []string
	for _, role := range sortedKeys(checks) {
		rep := validate.Role(config.Options{Dir: tmp, Role: role, Environ: checks[role], Lenient: true, NoFileReads: true, FileDirs: s.c.FileDirs})
		for _, e := range rep.Errors {
			if line := e.Error(); !slices.Contains(errs, line) {
				errs = append(errs, line)
			}
		}
		for _, n := range rep.NotChecked {
			if line := n.String(); !slices.Contains(notChecked, line) {
				notChecked = append(notChecked, line)
			}
		}
	}
	slices.Sort(errs)
	// Errors name files relative to the scratch dir; strip its path.
	for _, list := range [][]string{errs, notChecked} {
		for i := range list {
			list[i] = strings.ReplaceAll(list[i], tmp+string(filepath.Separator), "")
			list[i] = strings.ReplaceAll(list[i], tmp, "config.d")
		}
	}
	if len(errs) == 0 && inspect != nil {
		inspect(tmp, b)
	}
	return &checked{bundle: b, errs: errs, notChecked: notChecked}
}

// checked is what validate found.
type checked struct {
	bundle *bundle.Bundle // nil when the files do not make a bundle
	errs   []string       // every error, sorted; empty when valid
	// notChecked are the values whose own checks need a variable the
	// admin does not know (the vault's), as "file:line:col: path: not
	// checked: needs variable X".
	notChecked []string
}

// sortedKeys is m's keys in order, for output and errors that must not
// depend on map iteration.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// BundleInfo is one entry of the history.
type BundleInfo struct {
	Version     string `json:"version"`
	ContentHash string `json:"content_hash"`
	Schema      int    `json:"schema"`
	CreatedAt   string `json:"created_at"`
	Author      string `json:"author,omitempty"`
	Message     string `json:"message,omitempty"`
	// Active: the top level serves it; Roles: the role channels that do.
	Active bool     `json:"active"`
	Roles  []string `json:"roles"`
}

func (s *Server) listBundles(w http.ResponseWriter, r *http.Request) {
	out, err := s.History()
	if err != nil {
		s.c.Logger.Error("list bundles", "error", err.Error())
		writeJSON(w, http.StatusInternalServerError, problem{Error: "server_error"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"bundles": out})
}

// activate puts every role on a kept version at once (a rollback, or a
// roll forward); it replaces a rollout in progress, which the one-call
// rollback of the new record then undoes.
func (s *Server) activate(w http.ResponseWriter, r *http.Request) {
	version := r.PathValue("version")
	err := s.Activate(version, "admin API")
	switch {
	case errors.Is(err, publish.ErrNotFound):
		writeJSON(w, http.StatusNotFound, problem{Error: "not_found", Description: fmt.Sprintf("version %q is not kept in the publish directory", version)})
	case err != nil:
		s.c.Logger.Error("activate failed", "version", version, "error", err.Error())
		writeJSON(w, http.StatusInternalServerError, problem{Error: "server_error"})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"active": version})
	}
}

// NodeInfo is one runtime node in the cluster view.
type NodeInfo struct {
	ID            string    `json:"id"`
	Role          string    `json:"role"`
	Zone          string    `json:"zone"`
	DataSource    string    `json:"data_source"`
	ConfigVersion string    `json:"config_version"`
	ConfigHash    string    `json:"config_hash"`
	BinaryVersion string    `json:"binary_version"`
	SchemaMax     int       `json:"schema_max"` // -1: not reported
	HeartbeatAt   time.Time `json:"heartbeat_at"`
	// State is the node's own word: "serving", or "stopping" after a
	// clean shutdown ("" if not reported).
	State string `json:"state"`
	// LastReload is the result of its last reload that did something:
	// "success" or "failure" ("" if not reported).
	LastReload string `json:"last_reload"`
	// LastReloadAt is when the node last tried a reload, LastError the
	// first line of its last failure (config errors carry no values).
	LastReloadAt time.Time `json:"last_reload_at,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	// Stale: the node stopped (state "stopping"), its heartbeat expired
	// (three of its intervals without one), or none came for StaleAfter.
	Stale bool `json:"stale"`
}

func (s *Server) cluster(w http.ResponseWriter, r *http.Request) {
	nodes, errs := s.nodes(r.Context())
	if nodes == nil {
		nodes = []NodeInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": nodes, "roles": s.roleViews(nodes), "errors": errs})
}

// RoleView is one service role in the cluster view: whether every live
// node of it serves the active bundle, and which nodes keep it from that.
type RoleView struct {
	// ActiveVersion is the version the role's channel serves ("" when
	// nothing is published).
	ActiveVersion string `json:"active_version"`
	Nodes         int    `json:"nodes"` // live nodes
	// Converged: at least one live node, and every live node serves the
	// active version (when one is published) with its last reload good.
	Converged bool `json:"converged"`
	// Behind: live nodes on another version; Failing: live nodes whose
	// last reload failed; Unsupported: live nodes whose binary cannot
	// load the active bundle's schema; Stale: nodes that stopped beating.
	Behind      []string `json:"behind"`
	Failing     []string `json:"failing"`
	Unsupported []string `json:"unsupported"`
	Stale       []string `json:"stale"`
	schema      int
}

// roleViews judges each role with a live or stale node against the
// version its channel serves (the top level's for a role without one).
func (s *Server) roleViews(nodes []NodeInfo) map[string]*RoleView {
	vs, _ := s.c.Publisher.Versions()
	byVersion := map[string]bundle.Manifest{}
	var top bundle.Manifest
	for _, v := range vs {
		byVersion[v.Manifest.Version] = v.Manifest
		if v.Active {
			top = v.Manifest
		}
	}
	channels, _ := s.c.Publisher.Channels()
	return roleViews(nodes, func(role string) bundle.Manifest {
		if ch, ok := channels[role]; ok {
			return byVersion[ch]
		}
		return top
	})
}

// roleViews judges each role's nodes against the manifest activeFor
// gives for the role.
func roleViews(nodes []NodeInfo, activeFor func(role string) bundle.Manifest) map[string]*RoleView {
	out := map[string]*RoleView{}
	for _, n := range nodes {
		v := out[n.Role]
		if v == nil {
			active := activeFor(n.Role)
			v = &RoleView{ActiveVersion: active.Version, schema: active.Schema, Behind: []string{}, Failing: []string{}, Unsupported: []string{}, Stale: []string{}}
			out[n.Role] = v
		}
		if n.Stale {
			v.Stale = append(v.Stale, n.ID)
			continue
		}
		v.Nodes++
		if v.ActiveVersion != "" && n.ConfigVersion != v.ActiveVersion {
			v.Behind = append(v.Behind, n.ID)
		}
		if n.LastReload == "failure" {
			v.Failing = append(v.Failing, n.ID)
		}
		if v.schema > 0 && n.SchemaMax >= 0 && n.SchemaMax < v.schema {
			v.Unsupported = append(v.Unsupported, n.ID)
		}
	}
	for _, v := range out {
		v.Converged = v.Nodes > 0 && len(v.Behind) == 0 && len(v.Failing) == 0 && len(v.Unsupported) == 0
	}
	return out
}

// oldestSchema is the lowest schema_max of live nodes (-1: none known).
func (s *Server) oldestSchema(ctx context.Context) (int, []string) {
	nodes, _ := s.nodes(ctx)
	oldest := -1
	var ids []string
	known := false
	for _, n := range nodes {
		if n.Stale || n.SchemaMax < 0 {
			continue
		}
		switch {
		case !known || n.SchemaMax < oldest:
			known = true
			oldest, ids = n.SchemaMax, []string{n.ID}
		case n.SchemaMax == oldest:
			ids = append(ids, n.ID)
		}
	}
	if !known {
		return -1, nil
	}
	return oldest, ids
}

// nodes reads heartbeats from every data source of every role of the
// active bundle (or the admin's config dir), resolved with the admin's own
// environment. Data sources it cannot resolve or reach are listed in errs
// by name (never a URL).
func (s *Server) nodes(ctx context.Context) ([]NodeInfo, []string) {
	if s.c.Pools == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sources := map[string]*config.DataSource{}
	var errs []string
	for _, dir := range s.servedDirs() {
		vs := s.versionSources(dir)
		for name, ds := range vs.sources {
			sources[name] = ds
		}
		for _, e := range vs.errs {
			if !slices.Contains(errs, e) {
				errs = append(errs, e)
			}
		}
	}
	var out []NodeInfo
	now := time.Now()
	for _, name := range sortedKeys(sources) {
		ds := sources[name]
		if ds.Path == "" && ds.URL.Reveal() == "" {
			errs = append(errs, fmt.Sprintf("data source %s: not resolved with the admin's environment", name))
			continue
		}
		st, release, err := s.c.Pools.Acquire(ctx, ds)
		if err != nil {
			errs = append(errs, fmt.Sprintf("data source %s: unreachable", name))
			continue
		}
		list, err := st.Nodes().List(ctx)
		release()
		if err != nil {
			errs = append(errs, fmt.Sprintf("data source %s: cannot list nodes", name))
			continue
		}
		for _, n := range list {
			state, _ := n.Details["state"].(string)
			stale := now.Sub(n.HeartbeatAt) > s.c.StaleAfter || state == stateStopping ||
				(!n.ExpiresAt.IsZero() && now.After(n.ExpiresAt))
			if conflict, _ := n.Details["id_conflict"].(bool); conflict && !stale {
				errs = append(errs, fmt.Sprintf("node %s: more than one running node reports this id; give each its own KEYGATE_NODE_ID", n.ID))
			}
			lastReload, _ := n.Details["last_reload"].(string)
			lastError, _ := n.Details["last_error"].(string)
			var lastReloadAt time.Time
			if at, ok := n.Details["last_reload_at"].(string); ok {
				lastReloadAt, _ = time.Parse(time.RFC3339Nano, at)
			}
			out = append(out, NodeInfo{ID: n.ID, LastReload: lastReload, LastReloadAt: lastReloadAt, LastError: lastError, Role: n.Role, Zone: n.Zone, DataSource: name, ConfigVersion: n.ConfigVersion,
				ConfigHash: n.ConfigHash, BinaryVersion: n.BinaryVersion, SchemaMax: schemaMax(n.Details),
				HeartbeatAt: n.HeartbeatAt, State: state, Stale: stale})
		}
	}
	return out, errs
}

// servedDirs are the directories whose configuration some node may be
// serving: the top level and every role channel (the admin's own config
// directory while nothing is published).
func (s *Server) servedDirs() []string {
	if _, ok, _ := s.c.Publisher.Active(); !ok {
		return []string{s.c.ConfigDir}
	}
	dirs := []string{s.c.Publisher.Dir()}
	channels, _ := s.c.Publisher.Channels()
	for _, role := range sortedKeys(channels) {
		dirs = append(dirs, filepath.Join(s.c.Publisher.Dir(), publish.RolesDir, role))
	}
	return dirs
}

// versionSources are the data sources the roles of one configuration
// resolve to with the admin's environment, and what did not resolve.
type versionSources struct {
	sources map[string]*config.DataSource
	errs    []string
}

// versionSources loads dir for every role, once per published version
// (a version directory never changes; the admin's own config dir may, so
// it is not cached).
func (s *Server) versionSources(dir string) versionSources {
	key, err := filepath.EvalSymlinks(filepath.Join(dir, "..data"))
	if err == nil {
		s.sourcesMu.Lock()
		vs, ok := s.sources[key]
		s.sourcesMu.Unlock()
		if ok {
			return vs
		}
	}
	vs := versionSources{sources: map[string]*config.DataSource{}}
	if err == nil {
		dir = key // the version the key names, even if ..data moves meanwhile
	}
	opts := config.Options{Dir: dir, EnvFiles: s.c.EnvFiles, Environ: s.c.Environ, Lenient: true, NoFileReads: true}
	roles, rerr := config.Roles(opts)
	if rerr != nil {
		return versionSources{errs: []string{"config: " + rerr.Error()}}
	}
	for _, role := range roles {
		opts.Role = role
		snap, err := config.Load(opts)
		if err != nil {
			vs.errs = append(vs.errs, fmt.Sprintf("service role %s: configuration does not load with the admin's environment", role))
			continue
		}
		for name, ds := range snap.DataSources {
			vs.sources[name] = ds
		}
	}
	if err == nil {
		s.sourcesMu.Lock()
		if len(s.sources) > 64 { // versions come and go; keep the cache small
			clear(s.sources)
		}
		s.sources[key] = vs
		s.sourcesMu.Unlock()
	}
	return vs
}

// schemaMax reads the newest config schema a node supports from its
// heartbeat details ("config_schema_max", or "schema_max"); -1 if absent.
func schemaMax(d map[string]any) int {
	for _, k := range []string{"config_schema_max", "schema_max"} {
		switch v := d[k].(type) {
		case float64:
			return int(v)
		case int:
			return v
		case json.Number:
			n, _ := v.Int64()
			return int(n)
		}
	}
	return -1
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
