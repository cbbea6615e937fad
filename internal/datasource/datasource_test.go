package datasource

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/secret"
	"github.com/keygate/keygate/internal/storage/model"
)

func sqliteDS(name, path string) *config.DataSource {
	ds := &config.DataSource{Type: config.DataSourceSQLite, Path: path, MaxConnections: 4}
	ds.Name = name
	return ds
}

// countingOpen wraps Open and counts opens and closes per path.
type countingOpen struct {
	mu     sync.Mutex
	opens  map[string]int
	closes map[string]int
}

func newCounting() *countingOpen {
	return &countingOpen{opens: map[string]int{}, closes: map[string]int{}}
}

func (c *countingOpen) open(ctx context.Context, ds *config.DataSource) (model.Store, error) {
	s, err := Open(ctx, ds)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.opens[ds.Path]++
	c.mu.Unlock()
	return &closeCounter{Store: s, c: c, path: ds.Path}, nil
}

func (c *countingOpen) counts(path string) (opens, closes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opens[path], c.closes[path]
}

type closeCounter struct {
	model.Store
	c    *countingOpen
	path string
	once sync.Once
}

func (s *closeCounter) Close() error {
	s.once.Do(func() {
		s.c.mu.Lock()
		s.c.closes[s.path]++
		s.c.mu.Unlock()
	})
	return s.Store.Close()
}

func newPools(t *testing.T, c *countingOpen) *Pools {
	t.Helper()
	p := New(Options{Migrate: true, Open: c.open})
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func TestReuseOnIdenticalConfig(t *testing.T) {
	ctx := context.Background()
	c := newCounting()
	p := newPools(t, c)
	path := filepath.Join(t.TempDir(), "k.db")

	s1, rel1, err := p.Acquire(ctx, sqliteDS("db", path))
	if err != nil {
		t.Fatal(err)
	}
	// A reload: a fresh *DataSource with the same settings, acquired
	// before the old runtime releases.
	s2, rel2, err := p.Acquire(ctx, sqliteDS("db", path))
	if err != nil {
		t.Fatal(err)
	}
	rel1()
	rel1() // idempotent
	if s1 != s2 {
		t.Error("identical data source: a second pool was opened")
	}
	if o, cl := c.counts(path); o != 1 || cl != 0 {
		t.Errorf("opens=%d closes=%d, want 1, 0", o, cl)
	}
	if err := s2.Ping(ctx); err != nil {
		t.Errorf("shared store no longer answers: %v", err)
	}
	if v, err := s2.SchemaVersion(ctx); err != nil || v < model.SchemaMin {
		t.Errorf("migrate on open: schema version %d, %v", v, err)
	}
	rel2()
	if o, cl := c.counts(path); o != 1 || cl != 1 {
		t.Errorf("after the last release: opens=%d closes=%d, want 1, 1", o, cl)
	}
}

func TestChangedSettingsOpenNewPoolAndCloseOldAfterRelease(t *testing.T) {
	ctx := context.Background()
	c := newCounting()
	p := newPools(t, c)
	dir := t.TempDir()
	oldPath, newPath := filepath.Join(dir, "old.db"), filepath.Join(dir, "new.db")

	s1, rel1, err := p.Acquire(ctx, sqliteDS("db", oldPath))
	if err != nil {
		t.Fatal(err)
	}
	s2, rel2, err := p.Acquire(ctx, sqliteDS("db", newPath))
	if err != nil {
		t.Fatal(err)
	}
	defer rel2()
	if s1 == s2 {
		t.Fatal("changed path: the old pool was reused")
	}
	if o, cl := c.counts(oldPath); o != 1 || cl != 0 {
		t.Fatalf("old pool closed before its release: opens=%d closes=%d", o, cl)
	}
	if err := s1.Ping(ctx); err != nil {
		t.Fatalf("old pool does not answer while still held: %v", err)
	}
	rel1()
	if _, cl := c.counts(oldPath); cl != 1 {
		t.Errorf("old pool not closed after its last release (closes=%d)", cl)
	}
	if _, cl := c.counts(newPath); cl != 0 {
		t.Error("new pool closed")
	}

	// max-connections is part of the identity too.
	ds := sqliteDS("db", newPath)
	ds.MaxConnections = 2
	s3, rel3, err := p.Acquire(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	defer rel3()
	if s3 == s2 {
		t.Error("changed max-connections: pool reused")
	}
}

func TestKeyComparesURLWithoutHoldingIt(t *testing.T) {
	a := &config.DataSource{Type: config.DataSourcePostgres, URL: secret.New("postgres://u:pw1@h/db")}
	b := &config.DataSource{Type: config.DataSourcePostgres, URL: secret.New("postgres://u:pw2@h/db")}
	a.Name, b.Name = "pg", "pg"
	if keyOf(a) == keyOf(b) {
		t.Error("different URLs share a pool key")
	}
	if keyOf(a) != keyOf(&config.DataSource{Meta: a.Meta, Type: a.Type, URL: secret.New("postgres://u:pw1@h/db")}) {
		t.Error("equal URLs give different keys")
	}
	if strings.Contains(strings.ToLower(strings.Join([]string{keyOf(a).name, keyOf(a).path, keyOf(a).typ}, " ")), "pw1") {
		t.Error("key holds the URL")
	}
}

func TestFailingOpenNamesDataSourceNotURL(t *testing.T) {
	ctx := context.Background()
	p := newPools(t, newCounting())
	file := filepath.Join(t.TempDir(), "regular-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := p.Acquire(ctx, sqliteDS("broken-db", filepath.Join(file, "sub", "k.db")))
	if err == nil || !strings.Contains(err.Error(), "data source broken-db") {
		t.Fatalf("err = %v, want one naming data source broken-db", err)
	}
	if got := p.Open(); len(got) != 0 {
		t.Errorf("a failed open left pools behind: %v", got)
	}

	// An unreachable postgres: the error names the data source and never
	// the URL's password.
	const pw = "s3cr3t-pw"
	ds := &config.DataSource{Type: config.DataSourcePostgres, MaxConnections: 1,
		URL: secret.New("postgres://keygate:" + pw + "@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")}
	ds.Name = "pg-db"
	_, _, err = p.Acquire(ctx, ds)
	if err == nil || !strings.Contains(err.Error(), "data source pg-db") {
		t.Fatalf("err = %v, want one naming data source pg-db", err)
	}
	if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "postgres://") {
		t.Errorf("error leaks the URL: %v", err)
	}
}

// Without migrate-on-start a fresh database opens, but CheckSchema (the
// readiness check) refuses it until it is migrated.
func TestWithoutMigrateAFreshDatabaseIsNotReady(t *testing.T) {
	ctx := context.Background()
	p := New(Options{Migrate: false})
	defer p.Close()
	st, rel, err := p.Acquire(ctx, sqliteDS("db", filepath.Join(t.TempDir(), "k.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	err = p.CheckSchema(ctx, "db", st)
	if err == nil || !strings.Contains(err.Error(), "data source db") || !strings.Contains(err.Error(), "keygate migrate") {
		t.Fatalf("CheckSchema before migrate: %v", err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.CheckSchema(ctx, "db", st); err != nil {
		t.Fatalf("CheckSchema after migrate: %v", err)
	}
}

func TestConcurrentAcquireOpensOnce(t *testing.T) {
	ctx := context.Background()
	c := newCounting()
	p := newPools(t, c)
	path := filepath.Join(t.TempDir(), "k.db")
	var wg sync.WaitGroup
	rels := make([]func(), 8)
	for i := range rels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, rel, err := p.Acquire(ctx, sqliteDS("db", path))
			if err != nil {
				t.Error(err)
				return
			}
			rels[i] = rel
		}()
	}
	wg.Wait()
	if o, _ := c.counts(path); o != 1 {
		t.Errorf("opens = %d, want 1", o)
	}
	for _, rel := range rels {
		if rel != nil {
			rel()
		}
	}
	if _, cl := c.counts(path); cl != 1 {
		t.Errorf("closes = %d, want 1", cl)
	}
}

func TestCloseClosesEverythingAndRefusesAcquire(t *testing.T) {
	ctx := context.Background()
	c := newCounting()
	p := New(Options{Migrate: true, Open: c.open})
	path := filepath.Join(t.TempDir(), "k.db")
	_, rel, err := p.Acquire(ctx, sqliteDS("db", path))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, cl := c.counts(path); cl != 1 {
		t.Errorf("closes = %d after Close", cl)
	}
	rel() // a release after Close is harmless
	if _, _, err := p.Acquire(ctx, sqliteDS("db", path)); err == nil {
		t.Error("Acquire after Close succeeded")
	}
}
