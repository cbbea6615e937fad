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
// [--force] [--cacert F] [--cert F --key F]`. publish: exit 0 with the new
// version on stdout; 1 with every error on stderr when the admin node
// refuses the bundle. plan: the admin node's plan on stdout, per role;
// exit 0 when the bundle is valid, 1 when not. 2 on usage errors.
func runBundle(args, environ []string, stdout, stderr io.Writer) (int, error) {
	if len(args) == 0 || (args[0] != "publish" && args[0] != "plan") {
		return exitUsage, usageError{"usage: keygate bundle publish|plan --admin URL [--dir config.d] [--token-file F] [--message M] [--author A] [--env-file stage=F]… [--force] [--cacert F] [--cert F --key F]"}
	}
	verb := args[0]
	s, _, err := settings.Load(environ)
	if err != nil {
		return exitFailure, err
	}
	var (
		adminURL, dir, tokenFile, message, author string
		caFile, certFile, keyFile                 string
		force                                     bool
		envFiles                                  listFlag
	)
	fs := flag.NewFlagSet("keygate bundle "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&adminURL, "admin", "", "admin node URL (http://admin:8081)")
	fs.StringVar(&dir, "dir", s.ConfigDir, "config directory to publish")
	fs.StringVar(&tokenFile, "token-file", s.AdminTokenFile, "file holding the admin bearer token")
	fs.StringVar(&message, "message", "", "what this bundle changes")
	fs.StringVar(&author, "author", os.Getenv("USER"), "who publishes")
	fs.BoolVar(&force, "force", false, "publish even if live runtime nodes support only an older schema, or production lint errors")
	stage := fs.String("stage", "", "the stage the bundle is for, for the go-live lint (default: the admin node's KEYGATE_STAGE)")
	fs.StringVar(&caFile, "cacert", "", "PEM CA certificate(s) that verify the admin node's HTTPS certificate (default: system roots)")
	fs.StringVar(&certFile, "cert", "", "PEM client certificate, for an admin node that requires one (mTLS); with --key")
	fs.StringVar(&keyFile, "key", "", "PEM private key of --cert")
	fs.Var(&envFiles, "env-file", "stage=FILE or role=FILE: check that the env file declares every variable the roles need (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage, usageError{err.Error()}
	}
	if adminURL == "" || fs.NArg() > 0 {
		return exitUsage, usageError{"bundle " + verb + ": --admin URL is required and takes no arguments"}
	}
	if tokenFile == "" {
		return exitUsage, usageError{"bundle " + verb + ": --token-file (or KEYGATE_ADMIN_TOKEN_FILE) is required"}
	}
	if (certFile == "") != (keyFile == "") {
		return exitUsage, usageError{"bundle publish: --cert and --key must be given together"}
	}
	tlsConfig, err := admin.ClientTLS(caFile, certFile, keyFile)
	if err != nil {
		return exitFailure, err
	}
	token, err := readfile.Read(tokenFile, readfile.MaxSecretFile)
	if err != nil {
		return exitFailure, fmt.Errorf("read token file: %w", err)
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
	body, _ := json.Marshal(up)
	url := strings.TrimRight(adminURL, "/") + "/admin/v1/bundles"
	if verb == "plan" {
		url += "/plan"
	} else if force {
		url += "?force=true"
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return exitUsage, usageError{err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	httpClient := &http.Client{Timeout: 2 * time.Minute}
	if tlsConfig != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsConfig
		httpClient.Transport = tr
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return exitFailure, fmt.Errorf("admin node: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Version     string   `json:"version"`
		Lint        []string `json:"lint"`
		Error       string   `json:"error"`
		Description string   `json:"error_description"`
		Errors      []string `json:"errors"`
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if verb == "plan" && resp.StatusCode == http.StatusOK {
		return printPlan(data, stdout, stderr)
	}
	_ = json.Unmarshal(data, &out)
	if resp.StatusCode == http.StatusCreated {
		for _, f := range out.Lint {
			fmt.Fprintln(stderr, "lint: "+f)
		}
		fmt.Fprintln(stdout, out.Version)
		return exitOK, nil
	}
	for _, e := range out.Errors {
		fmt.Fprintln(stderr, e)
	}
	if out.Error == "" {
		return exitFailure, fmt.Errorf("admin node answered %s", resp.Status)
	}
	return exitFailure, fmt.Errorf("bundle refused (%s): %s", out.Error, out.Description)
}

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
	if len(p.Lint) > 0 {
		fmt.Fprintf(stdout, "\ngo-live lint (stage %s):\n", cmp.Or(p.Stage, "local"))
		for _, f := range p.Lint {
			fmt.Fprintln(stdout, "  "+f)
		}
	}
	for _, role := range slices.Sorted(maps.Keys(p.Roles)) {
		rp := p.Roles[role]
		fmt.Fprintf(stdout, "\nservice role %s: %d change(s)\n", role, len(rp.Changes))
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
