package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/datasource"
)

// migrateTimeout bounds opening and migrating one data source.
const migrateTimeout = 5 * time.Minute

// runMigrate creates or upgrades the schema of every data source the
// configuration uses (every service role's zone's data source, or one
// role's with --role), printing each one's schema version. Errors name the
// data source, never its URL. Exit 1 if any role or data source fails; the
// others are still migrated.
func runMigrate(args, environ []string, stdout, stderr io.Writer) (int, error) {
	s, fs, cf, err := configFlagSet("keygate migrate", environ, stderr)
	if err != nil {
		return exitFailure, err
	}
	var role string
	fs.StringVar(&role, "role", "", "migrate only this service role's data source (default: every role's)")
	if err := fs.Parse(args); err != nil {
		return exitUsage, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return exitUsage, usageError{fmt.Sprintf("migrate: unexpected argument %q", fs.Arg(0))}
	}
	cf.defaults(s)
	opts := func(role string) config.Options { return cf.options(environ, role, cf.envFiles) }

	roles := []string{role}
	if role == "" {
		if roles, err = config.Roles(opts("")); err != nil {
			fmt.Fprintln(stderr, err)
			return exitFailure, nil
		}
	}
	// Each role is resolved on its own (a role needs only its own
	// variables); data sources are collected once by name.
	failed := false
	sources := map[string]*config.DataSource{}
	for _, r := range roles {
		snap, err := config.Load(opts(r))
		if err != nil {
			failed = true
			fmt.Fprintf(stderr, "role %s: configuration not loaded\n%s\n", r, err)
			continue
		}
		sr := snap.ServiceRoles[r]
		if sr == nil {
			continue
		}
		if z := snap.Zones[sr.Zone]; z != nil {
			if ds := snap.DataSources[z.DataSource]; ds != nil {
				sources[ds.Name] = ds
			}
		}
	}
	names := make([]string, 0, len(sources))
	for name := range sources {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		ds := sources[name]
		v, err := migrate(ds)
		if err != nil {
			failed = true
			fmt.Fprintf(stderr, "data source %s (%s): %s\n", name, ds.Type, strings.TrimPrefix(err.Error(), "data source "+name+": "))
			continue
		}
		fmt.Fprintf(stdout, "data source %s (%s): schema version %d\n", name, ds.Type, v)
	}
	if failed {
		return exitFailure, nil
	}
	if len(names) == 0 {
		fmt.Fprintln(stdout, "no data sources configured")
	}
	return exitOK, nil
}

// migrate opens one data source, applies its migrations and returns the
// schema version.
func migrate(ds *config.DataSource) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
	defer cancel()
	st, err := datasource.Open(ctx, ds)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	return st.SchemaVersion(ctx)
}
