package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in the configuration, with where it was written and the
// path of the key it concerns. Msg never contains a secret value.
type Error struct {
	Pos  Position
	Path string // clients.web-app.redirect-uris[0]
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Pos.File != "" {
		b.WriteString(e.Pos.File)
		if e.Pos.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Pos.Line)
		}
		if e.Pos.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Pos.Column)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found by one load, sorted by position. A user fixes
// a config in one pass, not ten.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Sorted orders errors by position and drops exact duplicates (see sorted).
func (es Errors) Sorted() Errors { return es.sorted() }

// sorted orders errors by file, line, column and drops exact duplicates (the
// same variable missing twice in one scalar, or the same error from two roles).
func (es Errors) sorted() Errors {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Column, b.Pos.Column),
			cmp.Compare(a.Path, b.Path),
			cmp.Compare(a.Msg, b.Msg),
		)
	})
	return slices.CompactFunc(es, func(a, b *Error) bool { return *a == *b })
}

func (p Position) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// lineRef is the short form used to name another place ("first defined at a.yaml:3").
func (p Position) lineRef() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }
