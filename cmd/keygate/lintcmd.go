package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/dotenv"
	"github.com/keygate/keygate/internal/lint"
)

// configLint judges the configuration for go-live: 0 when no finding is an
// unsilenced error, 1 when one is (or a role does not load), 2 on usage.
func configLint(args, environ []string, stdout, stderr io.Writer) (int, error) {
	s, fs, f, err := configFlagSet("keygate config lint", environ, stderr)
	if err != nil {
		return exitUsage, err
	}
	fs.StringVar(&f.role, "role", s.ServiceRole, "service role whose resolution must load")
	fs.BoolVar(&f.allRoles, "all-roles", false, "every service role must load")
	stage := fs.String("stage", "", "stage name (default: KEYGATE_STAGE from the env files, else local)")
	forbid := fs.String("forbid-tags", "", "comma-separated tags that must not reach the stage (default: under-test in production)")
	if err := fs.Parse(args); err != nil {
		return exitUsage, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return exitUsage, usageError{fmt.Sprintf("config lint: unexpected argument %q", fs.Arg(0))}
	}
	f.defaults(s)
	if *stage == "" {
		if *stage, err = envFileStage(f.envFiles); err != nil {
			return exitUsage, usageError{err.Error()}
		}
	}
	opts := lint.Options{Stage: *stage}
	fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "forbid-tags" {
			var tags listFlag
			_ = tags.Set(*forbid)
			opts.ForbidTags = append([]string{}, tags...) // given, even if empty: none forbidden
		}
	})

	roles := []string{f.role}
	if f.allRoles {
		if roles, err = config.Roles(f.options(environ, "", f.envFiles)); err != nil {
			fmt.Fprintln(stderr, err)
			return exitFailure, nil
		}
	}
	var written *config.Written
	for _, role := range roles {
		// Lenient: the stage's secrets live in its vault, not here.
		o := f.options(environ, role, f.envFiles)
		o.Lenient = true
		_, w, err := config.LoadWritten(o)
		if err != nil {
			fmt.Fprintf(stderr, "role %s: invalid\n%s\n", role, err)
			return exitFailure, nil
		}
		written = w
	}
	// Findings concern every defined entry, whichever role loaded them:
	// the roles differ only in which variables must be set.
	findings := lint.Check(written, opts)
	for _, fd := range findings {
		fmt.Fprintln(stdout, fd)
	}
	if lint.Failing(findings) {
		return exitFailure, nil
	}
	return exitOK, nil
}

// envFileStage is KEYGATE_STAGE from the env files (a later file wins), else
// local. Errors name the file, never a value.
func envFileStage(files []string) (string, error) {
	stage := "local"
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("config lint: env file %s: %w", file, unwrapPath(err))
		}
		vars, err := dotenv.Parse(file, data)
		if err != nil {
			return "", err
		}
		for _, v := range vars {
			if v.Name == "KEYGATE_STAGE" && strings.TrimSpace(v.Value) != "" {
				stage = strings.TrimSpace(v.Value)
			}
		}
	}
	return stage, nil
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
