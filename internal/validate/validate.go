// Package validate is what "valid" means for a configuration, for every
// caller that judges one without serving it: `keygate config validate`,
// the admin node's gate on bundles and its plan. A service role is valid
// when a runtime node of that role would load the configuration and build
// its handlers (keys parsed, profiles wired) — served.Build without
// stores or listeners, on the same snapshot config.Load gives the node.
//
// Values that need a variable the caller cannot resolve (the vault's
// secrets, on the admin node) do not hide anything else: the load is
// lenient about them, keys whose value is unresolved get a generated
// stand-in so the profiles that sign with them are still built, and each
// such value is listed as not checked, with the variable it needs.
package validate

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/served"
)

// NotChecked is a value whose own checks (its type, a PEM key, URL rules)
// could not run because the variable it needs is not known here.
type NotChecked struct {
	Pos  config.Position
	Path string // keys.signing.private-key
	Var  string // SIGNING_KEY, or file:PATH for a ${file:} target not read
}

func (n NotChecked) String() string {
	what := "variable " + n.Var
	if target, ok := strings.CutPrefix(n.Var, "file:"); ok {
		what = "the file " + target
	}
	return fmt.Sprintf("%s: %s: not checked: needs %s", n.Pos, n.Path, what)
}

// Report is what checking one service role found.
type Report struct {
	Role string
	// Errors are every problem, load and build alike, sorted by position.
	Errors config.Errors
	// NotChecked lists the values left unresolved (only when the options
	// are Lenient: otherwise an unset variable is an error).
	NotChecked []NotChecked
	// Snapshot is the role's configuration as loaded (leniently, when a
	// variable is missing), or nil when it does not load at all.
	Snapshot *config.Snapshot
}

// Valid reports whether the role has no error.
func (r Report) Valid() bool { return len(r.Errors) == 0 }

// Role checks opts.Role. Without opts.Lenient an unset variable is an
// error, but the rest of the configuration is still loaded (leniently) and
// built, so every other error is reported with it.
func Role(opts config.Options) Report {
	rep := Report{Role: opts.Role}
	snap, err := config.Load(opts)
	if err != nil {
		rep.Errors = asErrors(err)
		if opts.Lenient {
			return rep
		}
		// Build what a lenient load gives, for the errors that a missing
		// variable does not explain.
		lenient := opts
		lenient.Lenient = true
		if snap, err = config.Load(lenient); err != nil {
			return rep
		}
	}
	rep.Snapshot = snap
	if opts.Lenient {
		for _, u := range snap.Unresolved {
			rep.NotChecked = append(rep.NotChecked, NotChecked{Pos: u.Pos, Path: u.Path, Var: u.Var})
		}
	}
	rt, err := served.Build(snap, served.Deps{StandInKeys: true})
	if err != nil {
		for _, e := range asErrors(err) {
			// An entry with an unresolved value was built with it empty:
			// what that breaks is not an error of the configuration.
			if len(unresolvedEntry(snap, e.Path)) == 0 && !slices.ContainsFunc(rep.Errors, func(o *config.Error) bool { return *o == *e }) {
				rep.Errors = append(rep.Errors, e)
			}
		}
		rep.Errors = rep.Errors.Sorted()
		return rep
	}
	_ = rt.Close()
	return rep
}

// unresolvedEntry returns the variables an entry on path ("clients.web.secret"
// is in entry "clients.web") is missing.
func unresolvedEntry(snap *config.Snapshot, path string) []string {
	section, rest, ok := strings.Cut(path, ".")
	if !ok {
		return nil
	}
	name, _, _ := strings.Cut(rest, ".")
	name, _, _ = strings.Cut(name, "[")
	return snap.UnresolvedEntry(section + "." + name)
}

// asErrors is err as config errors (a load or build error already is one).
func asErrors(err error) config.Errors {
	var es config.Errors
	var e *config.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &es):
		return es
	case errors.As(err, &e):
		return config.Errors{e}
	}
	return config.Errors{{Msg: err.Error()}}
}
