package main

import (
	"slices"
	"testing"
)

// Each peer load runs right after the keygate scenario it is compared
// with, which is added when it was not selected; a storage that is not
// selected adds no comparison for it.
func TestWithPeersOrdersEachAfterItsKeygateScenario(t *testing.T) {
	ids := func(ss []scenario) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.id())
		}
		return out
	}
	all := catalogue([]string{"sqlite", "postgres"})
	sel, err := selectScenarios(all, []string{"jwks/postgres"})
	if err != nil {
		t.Fatal(err)
	}
	got := ids(withPeers(all, sel))
	want := []string{"jwks/postgres", "cc-jwt-es256/sqlite", "dex-cc", "jwks/sqlite", "dex-jwks"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	pgOnly := catalogue([]string{"postgres"})
	if got := ids(withPeers(pgOnly, pgOnly[:1])); !slices.Equal(got, []string{pgOnly[0].id(), "dex-cc", "dex-jwks"}) {
		t.Fatalf("postgres only: got %v", got)
	}
}
