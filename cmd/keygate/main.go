// Command keygate is the Keygate identity server: one binary, started as a
// runtime node or an admin node, plus the tools to validate, render and diff
// a configuration.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes scripts can rely on (documented in the README).
const (
	exitOK      = 0
	exitFailure = 1 // invalid config, differences found, server error
	exitUsage   = 2 // bad command line, or diff could not compare
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `keygate — configuration-as-code OAuth 2.0 / OpenID Connect server

Usage:
  keygate runtime                       run a runtime node (settings: KEYGATE_* variables)
  keygate admin                         run the admin node
  keygate config validate [flags]       check a configuration; exit 1 with every error
  keygate config render   [flags]       print the resolved configuration, secrets redacted
  keygate config diff --env-file A --env-file B [flags]
                                        show what differs between two stages
  keygate config lint [flags] [--stage NAME] [--forbid-tags a,b]
                                        judge a configuration for go-live; exit 1 on an error-level finding
  keygate bundle publish --admin URL [--dir D] [--token-file F] [--message M] [--author A] [--env-file stage=F]… [--force]
                [--first ROLES [--soak D] [--rollout-timeout D]]
                                        send config.d to the admin node to validate, sign and publish
                                        (with --first: to those roles first, the others once they serve it)
  keygate bundle rollout status|wait|promote|stop|rollback --admin URL [--token-file F] [--timeout D]
                                        follow or act on the last rollout
  keygate bundle plan --admin URL [same flags]
                                        show, per service role, what publishing config.d would change
  keygate migrate [flags]               create or upgrade the schema of every configured data source
  keygate user add --zone Z --username U [--name N] [--given-name G] [--family-name F] [--email E] [--email-verified]
                                        create a local user; the password is read from stdin
  keygate audit --zone Z [--since T] [--until T] [--type T] [--user U] [--client C] [--limit N] [--json]
                                        list the zone's audit events, oldest first
  keygate version                       print the version and supported schema versions

Config flags: --dir DIR (default $KEYGATE_CONFIG_DIR or ./config.d), --env-file FILE
(repeatable; default $KEYGATE_ENV_FILE), --role ROLE (default $KEYGATE_SERVICE_ROLE or
default), --all-roles (validate, lint), --exclude-tags a,b (default $KEYGATE_EXCLUDE_TAGS).
migrate takes --dir, --env-file, --exclude-tags and --role (default: every role's data source).
user add takes --dir, --env-file, --exclude-tags and --role (default: the first role in --zone).
`

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// usageError is a bad command line: exit 2 with the usage hint.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var code int
	var err error
	switch args[0] {
	case "runtime":
		code, err = runRuntime(args[1:], environ, stderr)
	case "admin":
		code, err = runAdmin(args[1:], environ, stderr)
	case "bundle":
		code, err = runBundle(args[1:], environ, stdout, stderr)
	case "config":
		code, err = runConfig(args[1:], environ, stdout, stderr)
	case "migrate":
		code, err = runMigrate(args[1:], environ, stdout, stderr)
	case "user":
		code, err = runUser(args[1:], environ, stdout, stderr)
	case "audit":
		code, err = runAudit(args[1:], environ, stdout, stderr)
	case "version", "--version":
		printVersion(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		err = usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "keygate: %s\nRun 'keygate help' for usage.\n", ue.msg)
		return exitUsage
	case err != nil:
		fmt.Fprintf(stderr, "keygate: %s\n", strings.TrimSpace(err.Error()))
		if code == exitOK {
			code = exitFailure
		}
	}
	return code
}
