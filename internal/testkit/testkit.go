// Package testkit is the one kit the tests and the load benchmark build
// their worlds with: a migrated store on each backend (a SQLite file in a
// temporary directory, a fresh PostgreSQL schema), a keygate process and
// its logs, signing keys, certificates, config files and the waits that
// watch them. Unit tests, the black-box tests in tests/ and
// tools/keygate-bench use it instead of keeping copies.
//
// It is for tests and tools only: the product never imports it (it
// imports testing). Helpers that take a testing.TB fail the test; the
// ones the benchmark needs return errors instead.
package testkit
