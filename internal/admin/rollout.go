package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Rollout states.
const (
	// RolloutCanary: the first roles' channels serve the version; the
	// others wait on their previous one until the first roles prove it.
	RolloutCanary = "canary"
	// RolloutComplete: every role's channel and the top level serve it.
	RolloutComplete = "complete"
	// RolloutStopped: a first role refused the version or never converged
	// on it; the other roles kept their previous version.
	RolloutStopped = "stopped"
	// RolloutRolledBack: every role is back on the version it served
	// before the rollout.
	RolloutRolledBack = "rolled_back"
)

// Rollout is the record of the last publish or activation: which roles got
// the version first, what every role served before (for a one-call
// rollback), and how far it went. It is stored in the publish directory so
// a restarted admin node carries on where it stopped.
type Rollout struct {
	Version string `json:"version"`
	Schema  int    `json:"schema"`
	// First are the roles that got the version at once; Rest get it when
	// every live node of First serves it, with no failed reload, for Soak.
	First []string `json:"first"`
	Rest  []string `json:"rest"`
	// Previous is the version each role served before ("" for a role new
	// in this bundle), PreviousTop that of the top level.
	Previous    map[string]string `json:"previous"`
	PreviousTop string            `json:"previous_top"`
	State       string            `json:"state"`
	Reason      string            `json:"reason,omitempty"`
	Soak        Duration          `json:"soak"`
	// Timeout stops a rollout whose first roles have not proved the
	// version this long after it started.
	Timeout      Duration   `json:"timeout"`
	StartedAt    time.Time  `json:"started_at"`
	HealthySince *time.Time `json:"healthy_since,omitempty"`
	FinishedAt   *time.Time `json:"finished_at,omitempty"`
	Author       string     `json:"author,omitempty"`
}

// RolloutSpec, in an upload, asks for a staged rollout.
type RolloutSpec struct {
	First   []string  `json:"first"`
	Soak    *Duration `json:"soak"`    // default Config.RolloutSoak
	Timeout *Duration `json:"timeout"` // default Config.RolloutTimeout
}

// Duration is a time.Duration written as Go's "1m30s".
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration such as 30s or 5m", b)
	}
	*d = Duration(v)
	return nil
}

// checkSpec returns what is wrong with a staged rollout request for a
// bundle with roles.
func (s *Server) checkSpec(spec *RolloutSpec, roles []string) []string {
	if spec == nil {
		return nil
	}
	var errs []string
	if len(spec.First) == 0 {
		errs = append(errs, "rollout.first: name the service roles that get the bundle first")
	}
	for _, r := range spec.First {
		if !slices.Contains(roles, r) {
			errs = append(errs, fmt.Sprintf("rollout.first: %q is not a service role of the bundle (it has %s)", r, strings.Join(roles, ", ")))
		}
	}
	soak, timeout := s.rolloutTimes(spec)
	if timeout <= soak {
		errs = append(errs, fmt.Sprintf("rollout.timeout: %s must be longer than the soak, %s", timeout, soak))
	}
	return errs
}

func (s *Server) rolloutTimes(spec *RolloutSpec) (soak, timeout time.Duration) {
	soak, timeout = s.c.RolloutSoak, s.c.RolloutTimeout
	if spec != nil && spec.Soak != nil {
		soak = time.Duration(*spec.Soak)
	}
	if spec != nil && spec.Timeout != nil {
		timeout = time.Duration(*spec.Timeout)
	}
	return soak, timeout
}

// start records and applies a new rollout of version (already written):
// every role at once without spec, else spec.First now and the rest later.
// The record is saved before any channel moves, so a crash in between is
// finished by resume. Callers hold s.mu.
func (s *Server) start(version string, schema int, roles []string, spec *RolloutSpec, author, reason string) (*Rollout, error) {
	channels, err := s.c.Publisher.Channels()
	if err != nil {
		return nil, err
	}
	r := &Rollout{Version: version, Schema: schema, Previous: map[string]string{}, StartedAt: time.Now().UTC(), Author: author, Reason: reason}
	if top, ok, err := s.c.Publisher.Active(); err != nil {
		return nil, err
	} else if ok {
		r.PreviousTop = top.Manifest.Version
	}
	for role := range channels {
		if !slices.Contains(roles, role) {
			roles = append(roles, role)
		}
	}
	slices.Sort(roles)
	for _, role := range roles {
		prev, ok := channels[role]
		if !ok {
			prev = r.PreviousTop // a role without a channel yet served the top level
		}
		r.Previous[role] = prev
	}
	soak, timeout := s.rolloutTimes(spec)
	r.Soak, r.Timeout = Duration(soak), Duration(timeout)
	if spec == nil {
		r.First, r.Rest, r.State = roles, []string{}, RolloutComplete
		r.FinishedAt = &r.StartedAt
	} else {
		r.First = slices.Clone(spec.First)
		slices.Sort(r.First)
		r.First = slices.Compact(r.First)
		r.Rest = []string{}
		for _, role := range roles {
			if !slices.Contains(r.First, role) {
				r.Rest = append(r.Rest, role)
			}
		}
		r.State = RolloutCanary
	}
	if err := s.save(r); err != nil {
		return nil, err
	}
	return r, s.applyRecorded(r)
}

// applyRecorded moves the channels as the saved record says; a failure
// is retried by Run until the move is done (the record stays the truth).
func (s *Server) applyRecorded(r *Rollout) error {
	err := s.apply(r)
	s.unapplied = err != nil
	return err
}

// retryApply finishes a move that failed after its record was saved.
func (s *Server) retryApply() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.unapplied || s.rollout == nil {
		return
	}
	if err := s.applyRecorded(s.rollout); err != nil {
		s.c.Logger.Error("rollout: the recorded move still fails; retrying", "version", s.rollout.Version, "error", err.Error())
		return
	}
	s.c.Logger.Info("rollout: the recorded move is done", "version", s.rollout.Version, "state", s.rollout.State)
}

// apply moves the channels to where the record says they are (idempotent).
func (s *Server) apply(r *Rollout) error {
	p := s.c.Publisher
	switch r.State {
	case RolloutCanary, RolloutStopped:
		return p.Switch(r.Version, r.First, false)
	case RolloutComplete:
		return p.SwitchAll(r.Version)
	case RolloutRolledBack:
		byVersion := map[string][]string{}
		for _, role := range sortedKeys(r.Previous) {
			if v := r.Previous[role]; v != "" {
				byVersion[v] = append(byVersion[v], role)
			}
		}
		for _, v := range sortedKeys(byVersion) {
			if err := p.Switch(v, byVersion[v], false); err != nil {
				return err
			}
		}
		if r.PreviousTop != "" {
			return p.Switch(r.PreviousTop, nil, true)
		}
	}
	return nil
}

func (s *Server) save(r *Rollout) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := s.c.Publisher.SaveRollout(data); err != nil {
		return err
	}
	s.rollout = r
	return nil
}

// Resume loads the rollout record and finishes what a crash interrupted
// (the channels are moved to where the record says). Call it once at
// start, before serving and Run.
func (s *Server) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := s.c.Publisher.LoadRollout()
	if err != nil || data == nil {
		return err
	}
	var r Rollout
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("rollout record: %w", err)
	}
	s.rollout = &r
	return s.apply(&r)
}

// Run watches the rollout: every RolloutCheckInterval it judges a canary
// rollout from the heartbeats, promoting or stopping it. It returns when
// ctx ends.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.c.RolloutCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.retryApply()
			s.Check(ctx)
		}
	}
}

// Check judges a canary rollout once (Run calls it on a ticker).
func (s *Server) Check(ctx context.Context) {
	s.mu.Lock()
	cur := s.rollout
	s.mu.Unlock()
	if cur == nil || cur.State != RolloutCanary {
		return
	}
	nodes, _ := s.nodes(ctx) // outside the lock: it reads databases
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rollout != cur { // published, stopped or rolled back meanwhile
		return
	}
	next := *cur
	verdict := judge(&next, nodes, time.Now().UTC())
	var err error
	switch verdict {
	case verdictPromote:
		next.State, next.Reason = RolloutComplete, "every live node of "+strings.Join(next.First, ", ")+" served "+next.Version+" for "+time.Duration(next.Soak).String()
		next.FinishedAt = ptr(time.Now().UTC())
		if err = s.save(&next); err == nil {
			err = s.applyRecorded(&next)
		}
		if err == nil {
			s.c.Logger.Info("rollout promoted", "version", next.Version, "roles", strings.Join(next.Rest, ","))
			go s.auditBundle("rollout_promoted", next.Version, "admin node", &next)
		}
	case verdictStop:
		next.FinishedAt = ptr(time.Now().UTC())
		err = s.save(&next)
		s.c.Logger.Warn("rollout stopped", "version", next.Version, "reason", next.Reason)
	default:
		if !timesEqual(next.HealthySince, cur.HealthySince) {
			err = s.save(&next)
		}
	}
	if err != nil {
		s.c.Logger.Error("rollout: cannot record its progress", "version", next.Version, "error", err.Error())
	}
}

type verdict int

const (
	verdictWait verdict = iota
	verdictPromote
	verdictStop
)

// judge decides a canary rollout from the nodes' heartbeats, updating r's
// HealthySince, State and Reason. A first role proves the version when it
// has a live node and every live node serves it, on a supported schema,
// with no failed reload; all of them for Soak promotes. A live node of a
// first role that failed a reload since the rollout started, without
// loading the version, or one whose binary cannot load its schema, stops
// the rollout, as does not proving it within Timeout.
func judge(r *Rollout, nodes []NodeInfo, now time.Time) verdict {
	var waiting []string
	for _, role := range r.First {
		live := 0
		for _, n := range nodes {
			if n.Role != role || n.Stale {
				continue
			}
			live++
			switch {
			case n.ConfigVersion != r.Version && n.LastReload == "failure" && n.LastReloadAt.After(r.StartedAt):
				r.State, r.Reason = RolloutStopped, fmt.Sprintf("node %s of service role %s failed to load %s: %s", n.ID, role, r.Version, orUnknown(n.LastError))
				return verdictStop
			case n.SchemaMax >= 0 && n.SchemaMax < r.Schema:
				r.State, r.Reason = RolloutStopped, fmt.Sprintf("node %s of service role %s supports config schema up to %d; %s needs %d", n.ID, role, n.SchemaMax, r.Version, r.Schema)
				return verdictStop
			case n.ConfigVersion != r.Version || n.LastReload == "failure":
				waiting = append(waiting, n.ID)
			}
		}
		if live == 0 {
			waiting = append(waiting, "service role "+role+" has no live node")
		}
	}
	if len(waiting) > 0 {
		r.HealthySince = nil
		if now.Sub(r.StartedAt) > time.Duration(r.Timeout) {
			r.State, r.Reason = RolloutStopped, fmt.Sprintf("%s was not served by %s within %s (waiting on: %s)",
				r.Version, strings.Join(r.First, ", "), time.Duration(r.Timeout), strings.Join(waiting, "; "))
			return verdictStop
		}
		return verdictWait
	}
	if r.HealthySince == nil {
		r.HealthySince = ptr(now)
	}
	if now.Sub(*r.HealthySince) >= time.Duration(r.Soak) {
		return verdictPromote
	}
	return verdictWait
}

func orUnknown(s string) string {
	if s == "" {
		return "no error reported"
	}
	return s
}

func ptr[T any](v T) *T { return &v }

func timesEqual(a, b *time.Time) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Equal(*b))
}

// rolloutView is GET /admin/v1/rollout.
type rolloutView struct {
	Rollout *Rollout             `json:"rollout"`
	Roles   map[string]*RoleView `json:"roles"`
}

func (s *Server) getRollout(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	cur := s.rollout
	s.mu.Unlock()
	nodes, _ := s.nodes(r.Context())
	writeJSON(w, http.StatusOK, rolloutView{Rollout: cur, Roles: s.roleViews(nodes)})
}

// rolloutAction answers POST /admin/v1/rollout/{promote,stop,rollback}.
func (s *Server) rolloutAction(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.rollout
	if cur == nil {
		writeJSON(w, http.StatusNotFound, problem{Error: "no_rollout", Description: "nothing has been published through this admin node yet"})
		return
	}
	next := *cur
	now := time.Now().UTC()
	next.FinishedAt = &now
	switch action {
	case "promote", "stop":
		if cur.State != RolloutCanary {
			writeJSON(w, http.StatusConflict, problem{Error: "rollout_not_in_progress", Description: fmt.Sprintf("the rollout of %s is %s; only a canary rollout can be promoted or stopped", cur.Version, cur.State)})
			return
		}
		if action == "promote" {
			next.State, next.Reason = RolloutComplete, "promoted by an admin call"
		} else {
			next.State, next.Reason = RolloutStopped, "stopped by an admin call"
		}
	case "rollback":
		if cur.State == RolloutRolledBack {
			writeJSON(w, http.StatusConflict, problem{Error: "already_rolled_back", Description: fmt.Sprintf("the rollout of %s is already rolled back", cur.Version)})
			return
		}
		if missing := s.missingPrevious(cur); len(missing) > 0 {
			writeJSON(w, http.StatusConflict, problem{Error: "previous_not_kept", Description: "the versions to return to are no longer kept: " + strings.Join(missing, ", ") + "; activate a kept version instead"})
			return
		}
		next.State, next.Reason = RolloutRolledBack, "rolled back by an admin call"
	default:
		writeJSON(w, http.StatusNotFound, problem{Error: "not_found"})
		return
	}
	if err := s.save(&next); err == nil {
		if err := s.applyRecorded(&next); err != nil {
			s.c.Logger.Error("rollout "+action+" failed", "version", next.Version, "error", err.Error())
			writeJSON(w, http.StatusInternalServerError, problem{Error: "server_error", Description: "moving the role channels failed; see the admin node's log (the rollout record says where they should be, and a restart finishes the move)"})
			return
		}
	} else {
		s.c.Logger.Error("rollout "+action+" failed", "version", next.Version, "error", err.Error())
		writeJSON(w, http.StatusInternalServerError, problem{Error: "server_error", Description: "recording the rollout failed; see the admin node's log"})
		return
	}
	s.c.Logger.Info("rollout "+action, "version", next.Version, "state", next.State)
	go s.auditBundle("rollout_"+action, next.Version, "admin API", &next)
	writeJSON(w, http.StatusOK, rolloutView{Rollout: &next})
}

// missingPrevious lists the versions a rollback of r would return to that
// are no longer kept.
func (s *Server) missingPrevious(r *Rollout) []string {
	vs, err := s.c.Publisher.Versions()
	if err != nil {
		return []string{"(the publish directory cannot be read)"}
	}
	kept := map[string]bool{}
	for _, v := range vs {
		kept[v.Manifest.Version] = true
	}
	var missing []string
	for _, v := range append(mapValues(r.Previous), r.PreviousTop) {
		if v != "" && !kept[v] && !slices.Contains(missing, v) {
			missing = append(missing, v)
		}
	}
	slices.Sort(missing)
	return missing
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, m[k])
	}
	return out
}

// inProgress is the 409 for a publish during a canary rollout.
func (s *Server) inProgress(w http.ResponseWriter) {
	writeJSON(w, http.StatusConflict, problem{Error: "rollout_in_progress",
		Description: fmt.Sprintf("the rollout of %s is still in its canary stage; promote, stop or roll it back first (POST /admin/v1/rollout/{promote,stop,rollback})", s.rollout.Version)})
}
