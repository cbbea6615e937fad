package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/readfile"
	"github.com/keygate/keygate/internal/settings"
)

// runBundle: `keygate bundle publish|plan --admin URL [--dir D]
// [--token-file F] [--message M] [--author A] [--env-file key=F]…
// [--force] [--first ROLES [--soak D] [--rollout-timeout D]] [--cacert F]
// [--cert F --key F]`. publish: exit 0 with the new version on stdout; 1
// with every error on stderr when the admin node refuses the bundle. plan:
// the admin node's plan on stdout, per role; exit 0 when the bundle is
// valid, 1 when not. `keygate bundle rollout status|wait|promote|stop|
// rollback`: the last rollout. 2 on usage errors.
func runBundle(args, environ []string, stdout, stderr io.Writer) (int, error) {
	if len(args) > 0 && args[0] == "rollout" {
		return runRollout(args[1:], environ, stdout, stderr)
	}
	if len(args) == 0 || (args[0] != "publish" && args[0] != "plan") {
		return exitUsage, usageError{"usage: keygate bundle publish|plan --admin URL [--dir config.d] [--token-file F] [--message M] [--author A] [--env-file stage=F]… [--force] [--first ROLES [--soak D] [--rollout-timeout D]] [--cacert F] [--cert F --key F]\n       keygate bundle rollout status|wait|promote|stop|rollback --admin URL [--token-file F] [--timeout D]"}
	}
	verb := args[0]
	s, _, err := settings.Load(environ)
	if err != nil {
		return exitFailure, err
	}
	var (
		dir, message, author, first string
		soak, rolloutTimeout        time.Duration
		force                       bool
		envFiles                    listFlag
	)
	fs := flag.NewFlagSet("keygate bundle "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	conn := adminFlags(fs, s)
	fs.StringVar(&dir, "dir", s.ConfigDir, "config directory to publish")
	fs.StringVar(&message, "message", "", "what this bundle changes")
	fs.StringVar(&author, "author", os.Getenv("USER"), "who publishes")
	fs.BoolVar(&force, "force", false, "publish even if live runtime nodes support only an older schema, or production lint errors")
	stage := fs.String("stage", "", "the stage the bundle is for, for the go-live lint (default: the admin node's KEYGATE_STAGE)")
	fs.Var(&envFiles, "env-file", "stage=FILE or role=FILE: check that the env file declares every variable the roles need (repeatable)")
	fs.StringVar(&first, "first", "", "staged rollout: the service roles (comma-separated) that get the bundle first; the others follow once those serve it")
	fs.DurationVar(&soak, "soak", 0, "staged rollout: how long the first roles must serve it (default: the admin node's KEYGATE_ROLLOUT_SOAK)")
	fs.DurationVar(&rolloutTimeout, "rollout-timeout", 0, "staged rollout: how long they may take before it stops (default: the admin node's KEYGATE_ROLLOUT_TIMEOUT)")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return exitUsage, usageError{"bundle " + verb + ": takes no arguments"}
	}
	if first == "" && (soak != 0 || rolloutTimeout != 0) {
		return exitUsage, usageError{"bundle " + verb + ": --soak and --rollout-timeout go with --first"}
	}
	client, err := conn.client("bundle " + verb)
	if err != nil {
		return exitCode(err), err
	}
	files, err := config.ReadDir(dir)
	if err != nil {
		return exitFailure, err
	}
	up := admin.Upload{Files: map[string]string{}, Author: author, Message: message, EnvFiles: map[string]map[string]string{}, Stage: *stage}
	for _, f := range files {
		up.Files[f.Name] = string(f.Data)
	}
	for _, spec := range envFiles {
		key, path, ok := strings.Cut(spec, "=")
		if !ok || key == "" {
			return exitUsage, usageError{fmt.Sprintf("--env-file %q: want stage=FILE or role=FILE", spec)}
		}
		data, err := readfile.Read(path, readfile.MaxSecretFile)
		if err != nil {
			return exitFailure, fmt.Errorf("read env file: %w", err)
		}
		if up.EnvFiles[key] == nil {
			up.EnvFiles[key] = map[string]string{}
		}
		up.EnvFiles[key][filepath.Base(path)] = string(data)
	}
	if first != "" {
		up.Rollout = &admin.RolloutSpec{First: settings.SplitList(first)}
		if soak != 0 {
			up.Rollout.Soak = ptrTo(admin.Duration(soak))
		}
		if rolloutTimeout != 0 {
			up.Rollout.Timeout = ptrTo(admin.Duration(rolloutTimeout))
		}
	}
	path := "/admin/v1/bundles"
	if verb == "plan" {
		path += "/plan"
	} else if force {
		path += "?force=true"
	}
	code, data, err := client.call(http.MethodPost, path, up)
	if err != nil {
		return exitFailure, err
	}
	if verb == "plan" && code == http.StatusOK {
		return printPlan(data, stdout, stderr)
	}
	var out struct {
		Version    string         `json:"version"`
		Lint       []string       `json:"lint"`
		NotChecked []string       `json:"not_checked"`
		Rollout    *admin.Rollout `json:"rollout"`
	}
	if code != http.StatusCreated {
		return refused(code, data, stderr, "bundle refused")
	}
	_ = json.Unmarshal(data, &out)
	for _, f := range out.Lint {
		fmt.Fprintln(stderr, "lint: "+f)
	}
	printNotChecked(stderr, out.NotChecked)
	if r := out.Rollout; r != nil && r.State == admin.RolloutCanary {
		fmt.Fprintf(stderr, "staged rollout: %s now serve %s; %s follow once they have served it for %s (keygate bundle rollout wait)\n",
			strings.Join(r.First, ", "), r.Version, orNone(r.Rest), time.Duration(r.Soak))
	}
	fmt.Fprintln(stdout, out.Version)
	return exitOK, nil
}

// runRollout: `keygate bundle rollout status|wait|promote|stop|rollback
// --admin URL [--token-file F] [--timeout D]`. status prints the last
// rollout; wait polls until it leaves the canary stage (exit 0 complete,
// 1 stopped or rolled back, or when --timeout passes); promote, stop and
// rollback act on it.
func runRollout(args, environ []string, stdout, stderr io.Writer) (int, error) {
	verbs := []string{"status", "wait", "promote", "stop", "rollback"}
	if len(args) == 0 || !slices.Contains(verbs, args[0]) {
		return exitUsage, usageError{"usage: keygate bundle rollout status|wait|promote|stop|rollback --admin URL [--token-file F] [--timeout D] [--cacert F] [--cert F --key F]"}
	}
	verb := args[0]
	s, _, err := settings.Load(environ)
	if err != nil {
		return exitFailure, err
	}
	fs := flag.NewFlagSet("keygate bundle rollout "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	conn := adminFlags(fs, s)
	timeout := fs.Duration("timeout", 15*time.Minute, "wait: give up after this long")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return exitUsage, usageError{"bundle rollout " + verb + ": takes no arguments"}
	}
	client, err := conn.client("bundle rollout " + verb)
	if err != nil {
		return exitCode(err), err
	}
	method, path := http.MethodGet, "/admin/v1/rollout"
	if verb != "status" && verb != "wait" {
		method, path = http.MethodPost, "/admin/v1/rollout/"+verb
	}
	deadline := time.Now().Add(*timeout)
	for {
		code, data, err := client.call(method, path, nil)
		if err != nil {
			return exitFailure, err
		}
		if code != http.StatusOK {
			return refused(code, data, stderr, "rollout "+verb+" refused")
		}
		var v struct {
			Rollout *admin.Rollout `json:"rollout"`
		}
		if err := json.Unmarshal(data, &v); err != nil || v.Rollout == nil {
			return exitFailure, errors.New("admin node: no rollout recorded yet")
		}
		r := v.Rollout
		if verb == "wait" && r.State == admin.RolloutCanary && time.Now().Before(deadline) {
			time.Sleep(time.Second)
			continue
		}
		fmt.Fprintf(stdout, "%s: %s", r.Version, r.State)
		if r.Reason != "" {
			fmt.Fprintf(stdout, " (%s)", r.Reason)
		}
		fmt.Fprintf(stdout, "\nfirst: %s\nrest: %s\n", orNone(r.First), orNone(r.Rest))
		if verb == "wait" && r.State != admin.RolloutComplete {
			if r.State == admin.RolloutCanary {
				return exitFailure, fmt.Errorf("rollout of %s still in its canary stage after %s", r.Version, *timeout)
			}
			return exitFailure, fmt.Errorf("rollout of %s %s", r.Version, strings.ReplaceAll(r.State, "_", " "))
		}
		return exitOK, nil
	}
}

// adminConn holds the flags that reach the admin node.
type adminConn struct {
	url, tokenFile, caFile, certFile, keyFile string
}

func adminFlags(fs *flag.FlagSet, s settings.Settings) *adminConn {
	c := &adminConn{}
	fs.StringVar(&c.url, "admin", "", "admin node URL (http://admin:8081)")
	fs.StringVar(&c.tokenFile, "token-file", s.AdminTokenFile, "file holding the admin bearer token")
	fs.StringVar(&c.caFile, "cacert", "", "PEM CA certificate(s) that verify the admin node's HTTPS certificate (default: system roots)")
	fs.StringVar(&c.certFile, "cert", "", "PEM client certificate, for an admin node that requires one (mTLS); with --key")
	fs.StringVar(&c.keyFile, "key", "", "PEM private key of --cert")
	return c
}

// adminClient calls the admin API with the bearer token.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

// client checks the flags (a usageError) and reads the token and TLS
// files (any other error).
func (c *adminConn) client(cmd string) (*adminClient, error) {
	if c.url == "" {
		return nil, usageError{cmd + ": --admin URL is required"}
	}
	if c.tokenFile == "" {
		return nil, usageError{cmd + ": --token-file (or KEYGATE_ADMIN_TOKEN_FILE) is required"}
	}
	if (c.certFile == "") != (c.keyFile == "") {
		return nil, usageError{cmd + ": --cert and --key must be given together"}
	}
	tlsConfig, err := admin.ClientTLS(c.caFile, c.certFile, c.keyFile)
	if err != nil {
		return nil, err
	}
	token, err := readfile.Read(c.tokenFile, readfile.MaxSecretFile)
	if err != nil {
		return nil, fmt.Errorf("read token file: %w", err)
	}
	hc := &http.Client{Timeout: 2 * time.Minute}
	if tlsConfig != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsConfig
		hc.Transport = tr
	}
	return &adminClient{base: strings.TrimRight(c.url, "/"), token: strings.TrimSpace(string(token)), http: hc}, nil
}

// call sends body (JSON, if not nil) and returns the status and at most
// 4 MiB of the answer.
func (c *adminClient) call(method, path string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		return 0, nil, usageError{err.Error()}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("admin node: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("admin node: %w", err)
	}
	return resp.StatusCode, data, nil
}

// refused prints an admin refusal's errors and returns its summary.
func refused(code int, data []byte, stderr io.Writer, what string) (int, error) {
	var out struct {
		Error       string   `json:"error"`
		Description string   `json:"error_description"`
		Errors      []string `json:"errors"`
	}
	_ = json.Unmarshal(data, &out)
	for _, e := range out.Errors {
		fmt.Fprintln(stderr, e)
	}
	if out.Error == "" {
		return exitFailure, fmt.Errorf("admin node answered %d %s", code, http.StatusText(code))
	}
	return exitFailure, fmt.Errorf("%s (%s): %s", what, out.Error, out.Description)
}

// printNotChecked says which values the admin node could not check (their
// variables are the vault's), the first few by name.
func printNotChecked(w io.Writer, notChecked []string) {
	const shown = 10
	if len(notChecked) == 0 {
		return
	}
	fmt.Fprintf(w, "%d value(s) not checked by the admin node (their variables are set on the runtime nodes, which check them):\n", len(notChecked))
	for i, n := range notChecked {
		if i == shown {
			fmt.Fprintf(w, "  … and %d more\n", len(notChecked)-shown)
			break
		}
		fmt.Fprintln(w, "  "+n)
	}
}

// exitCode is 2 for a usage error, 1 for any other.
func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	return exitFailure
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "(none)"
	}
	return strings.Join(list, ", ")
}

func ptrTo[T any](v T) *T { return &v }

// printPlan prints the admin node's plan: per role, its changes, the
// variables it newly needs, the nodes that will load it and warnings.
func printPlan(data []byte, stdout, stderr io.Writer) (int, error) {
	var p admin.Plan
	if err := json.Unmarshal(data, &p); err != nil {
		return exitFailure, fmt.Errorf("admin node: unreadable plan: %w", err)
	}
	if !p.Valid {
		for _, e := range p.Errors {
			fmt.Fprintln(stderr, e)
		}
		return exitFailure, errors.New("the bundle is invalid; publishing it would be refused")
	}
	against := p.ActiveVersion
	if against == "" {
		against = "nothing published yet"
	}
	fmt.Fprintf(stdout, "plan against %s (bundle schema %d)\n", against, p.Schema)
	printNotChecked(stdout, p.NotChecked)
	if len(p.Lint) > 0 {
		fmt.Fprintf(stdout, "\ngo-live lint (stage %s):\n", cmp.Or(p.Stage, "local"))
		for _, f := range p.Lint {
			fmt.Fprintln(stdout, "  "+f)
		}
	}
	for _, role := range slices.Sorted(maps.Keys(p.Roles)) {
		rp := p.Roles[role]
		fmt.Fprintf(stdout, "\nservice role %s (now on %s): %d change(s)\n", role, cmp.Or(rp.ActiveVersion, "nothing"), len(rp.Changes))
		for _, c := range rp.Changes {
			fmt.Fprintln(stdout, "  "+c.String())
		}
		if len(rp.NewVariables) > 0 {
			fmt.Fprintf(stdout, "  newly needs: %s\n", strings.Join(rp.NewVariables, ", "))
		}
		for _, n := range rp.Nodes {
			fmt.Fprintf(stdout, "  node %s (%s, now on %s) will load it\n", n.ID, n.BinaryVersion, n.ConfigVersion)
		}
		for _, w := range rp.Warnings {
			fmt.Fprintln(stdout, "  warning: "+w)
		}
	}
	return exitOK, nil
}
