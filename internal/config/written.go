package config

// This file gives checks outside the loader (keygate config lint) what the
// files wrote beyond the resolved snapshot: every entry of every service
// role, and how each value was written. It only reads what the loader
// already recorded; the Snapshot itself is unchanged.

// Written is every entry a load kept (enabled, not excluded by tag), of
// every service role, and how its values were written. Entries the role
// does not use may lack defaults if a variable they need is unset.
// Callers never write to it.
type Written struct {
	Entries

	recs map[string]map[string]*entryRec
}

// LoadWritten is Load that also returns what the files wrote (Written).
func LoadWritten(opts Options) (*Snapshot, *Written, error) {
	l := newLoader(opts)
	snap, err := l.load()
	if err != nil {
		return nil, nil, err
	}
	r := &l.raw
	return snap, &Written{Entries: *r, recs: l.recs}, nil
}

// Value says how one value of an entry was written.
type Value struct {
	// Pos is where the value was written.
	Pos Position
	// Placeholder: the value came through a placeholder ($VAR,
	// ${file:PATH}), or is unresolved because one is missing.
	Placeholder bool
	// Unresolved: a variable or ${file:} target it needs is missing
	// (Options.Lenient), so the value is empty.
	Unresolved bool
	// Text is the value as written when it came through a placeholder and
	// resolved; empty otherwise. Never the expanded value.
	Text string
}

// Value reports how the value at a key path ("clients.web-app.secret") of
// the entry section/name ("clients", "web-app") was written; ok is false
// when the entry or the key is not in the files.
func (w *Written) Value(section, name, path string) (v Value, ok bool) {
	r := w.recs[section][name]
	if r == nil {
		return Value{}, false
	}
	pos, ok := r.posOf(path)
	if !ok {
		return Value{}, false
	}
	v.Pos = pos
	if r.failed[path] {
		// In a load that succeeded, a value that failed to decode is one
		// whose variable or file is missing.
		v.Placeholder, v.Unresolved = true, true
	}
	if raw, exp := r.expanded[path]; exp {
		v.Placeholder, v.Text = true, raw
	}
	return v, true
}
