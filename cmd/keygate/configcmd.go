package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/settings"
	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/validate"
)

// configFlags are the flags shared by the config subcommands; their defaults
// come from the node settings, so `keygate config validate` checks exactly
// what `keygate runtime` would load.
type configFlags struct {
	dir         string
	envFiles    listFlag
	role        string
	allRoles    bool
	excludeTags string
}

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, settings.SplitList(v)...)
	return nil
}

// register adds the flags every config-reading command shares (--dir,
// --env-file, --exclude-tags), defaulting to the node settings. Call
// defaults after parsing.
func (f *configFlags) register(fs *flag.FlagSet, s settings.Settings) {
	fs.StringVar(&f.dir, "dir", s.ConfigDir, "config directory")
	fs.Var(&f.envFiles, "env-file", "env file (repeatable, or comma-separated)")
	fs.StringVar(&f.excludeTags, "exclude-tags", strings.Join(s.ExcludeTags, ","), "comma-separated tags whose entries are dropped")
}

// defaults fills what the command line left empty from the settings.
func (f *configFlags) defaults(s settings.Settings) {
	if len(f.envFiles) == 0 {
		f.envFiles = s.EnvFiles
	}
}

// configFlagSet starts the flags of a command that reads the
// configuration: the settings, which give the flags' defaults, and a flag
// set named name that already has the config flags; the command adds its
// own before parsing.
func configFlagSet(name string, environ []string, stderr io.Writer) (settings.Settings, *flag.FlagSet, *configFlags, error) {
	s, _, err := settings.Load(environ)
	if err != nil {
		return s, nil, nil, err
	}
	f := &configFlags{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.register(fs, s)
	return s, fs, f, nil
}

func parseConfigFlags(name string, args, environ []string, stderr io.Writer, allowAllRoles bool) (*configFlags, error) {
	s, fs, f, err := configFlagSet("keygate config "+name, environ, stderr)
	if err != nil {
		return nil, err
	}
	fs.StringVar(&f.role, "role", s.ServiceRole, "service role")
	if allowAllRoles {
		fs.BoolVar(&f.allRoles, "all-roles", false, "validate every service role")
	}
	if err := fs.Parse(args); err != nil {
		return nil, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("config %s: unexpected argument %q", name, fs.Arg(0))}
	}
	f.defaults(s)
	return f, nil
}

func (f *configFlags) options(environ []string, role string, envFiles []string) config.Options {
	var tags listFlag
	_ = tags.Set(f.excludeTags)
	return config.Options{Dir: f.dir, EnvFiles: envFiles, Environ: environ, Role: role, ExcludeTags: tags, FileDirs: fileDirs(environ)}
}

// fileDirs is KEYGATE_FILE_DIRS from environ, so the CLI judges ${file:}
// paths as a node with the same environment would.
func fileDirs(environ []string) []string {
	var dirs []string
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "KEYGATE_FILE_DIRS="); ok {
			dirs = settings.SplitList(v)
		}
	}
	return dirs
}

func runConfig(args, environ []string, stdout, stderr io.Writer) (int, error) {
	if len(args) == 0 {
		return exitUsage, usageError{"config: want validate, render, diff or lint"}
	}
	switch args[0] {
	case "validate":
		return configValidate(args[1:], environ, stdout, stderr)
	case "render":
		return configRender(args[1:], environ, stdout, stderr)
	case "diff":
		return configDiff(args[1:], environ, stdout, stderr)
	case "lint":
		return configLint(args[1:], environ, stdout, stderr)
	}
	return exitUsage, usageError{fmt.Sprintf("config: unknown subcommand %q (want validate, render, diff or lint)", args[0])}
}

func configValidate(args, environ []string, stdout, stderr io.Writer) (int, error) {
	f, err := parseConfigFlags("validate", args, environ, stderr, true)
	if err != nil {
		return exitUsage, err
	}
	roles := []string{f.role}
	if f.allRoles {
		if roles, err = config.Roles(f.options(environ, "", f.envFiles)); err != nil {
			fmt.Fprintln(stderr, err)
			return exitFailure, nil
		}
	}
	failed := false
	for _, role := range roles {
		// "Valid" is what validate.Role says: loaded and built, as a
		// runtime node of the role would on start-up, without serving.
		rep := validate.Role(f.options(environ, role, f.envFiles))
		if !rep.Valid() {
			failed = true
			fmt.Fprintf(stderr, "role %s: invalid\n%s\n", role, rep.Errors)
			continue
		}
		fmt.Fprintf(stdout, "role %s: valid\n", role)
	}
	if failed {
		return exitFailure, nil
	}
	return exitOK, nil
}

func configRender(args, environ []string, stdout, stderr io.Writer) (int, error) {
	f, err := parseConfigFlags("render", args, environ, stderr, false)
	if err != nil {
		return exitUsage, err
	}
	snap, err := config.Load(f.options(environ, f.role, f.envFiles))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailure, nil
	}
	out, err := config.Render(snap)
	if err != nil {
		return exitFailure, err
	}
	_, err = stdout.Write(out)
	return exitOK, err
}

// configDiff exits 0 when the two stages resolve alike, 1 when they differ,
// 2 when either cannot be loaded (like diff(1)).
func configDiff(args, environ []string, stdout, stderr io.Writer) (int, error) {
	f, err := parseConfigFlags("diff", args, environ, stderr, false)
	if err != nil {
		return exitUsage, err
	}
	if len(f.envFiles) != 2 {
		return exitUsage, usageError{"config diff: give exactly two --env-file flags (stage A, stage B)"}
	}
	var snaps [2]*config.Snapshot
	for i, file := range f.envFiles {
		// Each stage resolves from its env file alone: the caller's own
		// environment would hide the differences being looked for.
		// Secrets injected from a vault are unset here; Lenient leaves them
		// empty in both stages instead of failing.
		opts := f.options(nil, f.role, []string{file})
		opts.Lenient = true
		snaps[i], err = config.Load(opts)
		if err != nil {
			fmt.Fprintf(stderr, "%s:\n%s\n", file, err)
			return exitUsage, nil
		}
	}
	diffs := config.Diff(snaps[0], snaps[1])
	fmt.Fprintf(stdout, "--- %s\n+++ %s\n", f.envFiles[0], f.envFiles[1])
	for _, d := range diffs {
		switch {
		case d.Secret && d.Before != "" && d.After != "":
			fmt.Fprintf(stdout, "~ %s: differs (secret)\n", d.Path)
		case d.Before == "":
			fmt.Fprintf(stdout, "+ %s: %s\n", d.Path, d.After)
		case d.After == "":
			fmt.Fprintf(stdout, "- %s: %s\n", d.Path, d.Before)
		default:
			fmt.Fprintf(stdout, "~ %s: %s → %s\n", d.Path, d.Before, d.After)
		}
	}
	if len(diffs) > 0 {
		fmt.Fprintf(stdout, "%d differences\n", len(diffs))
		return exitFailure, nil
	}
	fmt.Fprintln(stdout, "no differences")
	return exitOK, nil
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "keygate %s\nconfig schema: %d (supported: %v)\ndatabase schema: %d to %d\n", version, config.SchemaVersion, config.SupportedSchemas, model.SchemaMin, model.SchemaMax)
}
