package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/datasource"
	"github.com/keygate/keygate/internal/password"
	"github.com/keygate/keygate/internal/profile/authn"
	"github.com/keygate/keygate/internal/storage/model"
)

// stdin is where keygate user add reads the password (tests replace it).
var stdin io.Reader = os.Stdin

// maxPasswordInput bounds what user add reads from stdin.
const maxPasswordInput = 1024

func runUser(args, environ []string, stdout, stderr io.Writer) (int, error) {
	if len(args) == 0 || args[0] != "add" {
		return exitUsage, usageError{"user: want 'keygate user add --zone Z --username U'"}
	}
	return runUserAdd(args[1:], environ, stdout, stderr)
}

// checkSQLiteExists refuses to create a SQLite database unless asked: a
// user added to a new file is invisible to a running node that still has
// the old one open (deleted, or at another path than the CLI resolved).
func checkSQLiteExists(ds *config.DataSource, create bool) error {
	if ds.Type != config.DataSourceSQLite || create {
		return nil
	}
	if _, err := os.Stat(ds.Path); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("data source %s: the database %s does not exist. A running node creates it when it starts; "+
			"if one is running, its file was deleted or it uses another path (check the working directory and the env files). "+
			"Pass --create-db to create it here", ds.Name, ds.Path)
	}
	return nil
}

// runUserAdd creates a local user in the data source of a zone, with the
// password read from stdin (one line; a trailing newline is dropped) and
// hashed with the argon2id parameters of the zone's password
// authenticator (the defaults if none is configured).
func runUserAdd(args, environ []string, stdout, stderr io.Writer) (int, error) {
	s, fs, cf, err := configFlagSet("keygate user add", environ, stderr)
	if err != nil {
		return exitFailure, err
	}
	var (
		role, zone, username       string
		name, given, family, email string
		emailVerified, createDB    bool
	)
	fs.StringVar(&role, "role", "", "a service role in the zone (default: the first role whose zone is --zone)")
	fs.StringVar(&zone, "zone", "", "the user's home zone (required)")
	fs.StringVar(&username, "username", "", "the username (required; stored trimmed and lower-cased)")
	fs.StringVar(&name, "name", "", "claim name")
	fs.StringVar(&given, "given-name", "", "claim given_name")
	fs.StringVar(&family, "family-name", "", "claim family_name")
	fs.StringVar(&email, "email", "", "claim email")
	fs.BoolVar(&emailVerified, "email-verified", false, "claim email_verified = true")
	fs.BoolVar(&createDB, "create-db", false, "create the zone's SQLite database if its file does not exist")
	if err := fs.Parse(args); err != nil {
		return exitUsage, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return exitUsage, usageError{fmt.Sprintf("user add: unexpected argument %q", fs.Arg(0))}
	}
	username = authn.NormaliseUsername(username)
	if zone == "" || username == "" {
		return exitUsage, usageError{"user add: --zone and --username are required"}
	}
	cf.defaults(s)
	opts := func(role string) config.Options { return cf.options(environ, role, cf.envFiles) }

	pw, err := readPassword(stdin)
	if err != nil {
		return exitUsage, usageError{"user add: " + err.Error()}
	}

	snap, role, err := zoneSnapshot(opts, role, zone, "user add")
	if err != nil {
		return exitFailure, err
	}
	ds := snap.DataSources[snap.Zones[zone].DataSource]
	params := password.ForRole(snap, snap.ServiceRoles[role])

	if err := checkSQLiteExists(ds, createDB); err != nil {
		return exitFailure, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
	defer cancel()
	st, err := datasource.Open(ctx, ds)
	if err != nil {
		return exitFailure, err
	}
	defer st.Close()
	v, err := st.SchemaVersion(ctx)
	if err != nil {
		return exitFailure, fmt.Errorf("data source %s: %w", ds.Name, err)
	}
	if model.CheckSchemaVersion(v) != nil {
		if !s.MigrateOnStart {
			return exitFailure, fmt.Errorf("data source %s: the database schema is too old (version %d); run 'keygate migrate' first", ds.Name, v)
		}
		if err := st.Migrate(ctx); err != nil {
			return exitFailure, fmt.Errorf("data source %s: migrate: %w", ds.Name, err)
		}
	}

	claims := map[string]any{}
	for k, v := range map[string]string{"name": name, "given_name": given, "family_name": family, "email": email} {
		if v != "" {
			claims[k] = v
		}
	}
	if email != "" || emailVerified {
		claims["email_verified"] = emailVerified
	}
	now := time.Now().UTC()
	u := model.User{
		ID: model.NewID(), Zone: zone, Username: username,
		PasswordHash: password.Hash(pw, params),
		Claims:       claims, Status: model.UserActive, CreatedAt: now, UpdatedAt: now,
	}
	if err := st.Users().Create(ctx, u); err != nil {
		if errors.Is(err, model.ErrConflict) {
			return exitFailure, fmt.Errorf("user %q already exists in zone %s", username, zone)
		}
		return exitFailure, fmt.Errorf("data source %s: create user: %w", ds.Name, err)
	}
	fmt.Fprintf(stdout, "created user %s (id %s) in zone %s (data source %s)\n", username, u.ID, zone, ds.Name)
	return exitOK, nil
}

// readPassword reads one password from r: everything up to EOF, without
// one trailing newline (CRLF or LF). Empty is an error.
func readPassword(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxPasswordInput+2))
	if err != nil {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	switch {
	case len(b) == 0:
		return "", errors.New("no password on stdin (pipe it in: printf %s \"$PW\" | keygate user add ...)")
	case len(b) > maxPasswordInput:
		return "", fmt.Errorf("password longer than %d bytes", maxPasswordInput)
	case bytes.ContainsRune(b, '\n'):
		return "", errors.New("the password on stdin has more than one line")
	}
	return string(b), nil
}

func sortedNames[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// zoneSnapshot loads the configuration of a service role in zone (role,
// or the first role whose zone it is), so a command finds the zone's data
// source through it; what is the command's name for errors.
func zoneSnapshot(opts func(role string) config.Options, role, zone, what string) (*config.Snapshot, string, error) {
	roles := []string{role}
	if role == "" {
		var err error
		if roles, err = config.Roles(opts("")); err != nil {
			return nil, "", err
		}
	}
	var loadErrs []error
	for _, r := range roles {
		sn, err := config.Load(opts(r))
		if err != nil {
			loadErrs = append(loadErrs, fmt.Errorf("role %s: configuration not loaded\n%w", r, err))
			continue
		}
		if sr := sn.ServiceRoles[r]; sr != nil && sr.Zone == zone {
			return sn, r, nil
		}
	}
	if len(loadErrs) > 0 {
		return nil, "", errors.Join(append([]error{fmt.Errorf("no loadable service role is in zone %q", zone)}, loadErrs...)...)
	}
	return nil, "", fmt.Errorf("no service role is in zone %q (%s finds the zone's data source through a role)", zone, what)
}
