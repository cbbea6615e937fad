package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/bundle"
	"github.com/keygate/keygate/internal/console"
	"github.com/keygate/keygate/internal/datasource"
	"github.com/keygate/keygate/internal/gitback"
	"github.com/keygate/keygate/internal/publish"
	"github.com/keygate/keygate/internal/readfile"
	"github.com/keygate/keygate/internal/settings"
)

// adminFileDirs is KEYGATE_FILE_DIRS on the admin node, with its default.
func adminFileDirs(set []string) []string {
	if len(set) > 0 {
		return set
	}
	return settings.DefaultAdminFileDirs
}

// runAdmin runs the admin node until SIGTERM or SIGINT. It needs
// KEYGATE_PUBLISH_DIR, KEYGATE_BUNDLE_SIGNING_KEY_FILE and
// KEYGATE_ADMIN_TOKEN_FILE; at start it cleans up after an interrupted
// publish. With KEYGATE_ADMIN_TLS_CERT_FILE and _KEY_FILE it serves HTTPS;
// with KEYGATE_ADMIN_TLS_CLIENT_CA_FILE too, only to clients presenting a
// certificate signed by that CA (the bearer token is still required).
func runAdmin(args, environ []string, stderr io.Writer) (int, error) {
	s, log, code, err := startNode("admin", args, environ, stderr)
	if err != nil {
		return code, err
	}
	var missing []string
	for name, v := range map[string]string{"KEYGATE_PUBLISH_DIR": s.PublishDir, "KEYGATE_BUNDLE_SIGNING_KEY_FILE": s.BundleSigningKeyFile, "KEYGATE_ADMIN_TOKEN_FILE": s.AdminTokenFile} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return exitFailure, fmt.Errorf("admin: %s must be set", strings.Join(missing, ", "))
	}
	key, err := bundle.LoadPrivateKey(s.BundleSigningKeyFile)
	if err != nil {
		return exitFailure, fmt.Errorf("KEYGATE_BUNDLE_SIGNING_KEY_FILE: %w", err)
	}
	token, err := readfile.Read(s.AdminTokenFile, readfile.MaxSecretFile)
	if err != nil {
		return exitFailure, fmt.Errorf("KEYGATE_ADMIN_TOKEN_FILE: %w", err)
	}
	if len(strings.TrimSpace(string(token))) < 16 {
		return exitFailure, errors.New("KEYGATE_ADMIN_TOKEN_FILE: the admin token must be at least 16 characters")
	}
	pub, err := publish.New(s.PublishDir, s.PublishRetention)
	if err != nil {
		return exitFailure, fmt.Errorf("KEYGATE_PUBLISH_DIR: %w", err)
	}
	pools := datasource.New(datasource.Options{Logger: log})
	defer pools.Close()
	api := admin.New(admin.Config{
		Publisher: pub, SigningKey: key, Token: []byte(strings.TrimSpace(string(token))), Logger: log,
		ConfigDir: s.ConfigDir, EnvFiles: s.EnvFiles, Environ: environ, Pools: pools, FileDirs: adminFileDirs(s.FileDirs),
		Stage: s.Stage, ExcludeTags: s.ExcludeTags, RolloutSoak: s.RolloutSoak, RolloutTimeout: s.RolloutTimeout,
	})
	if err := api.Resume(); err != nil {
		return exitFailure, fmt.Errorf("KEYGATE_PUBLISH_DIR: %w", err)
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go func() { _ = api.Run(watchCtx) }()
	tlsConfig, err := admin.ServerTLS(s.AdminTLSCertFile, s.AdminTLSKeyFile, s.AdminTLSClientCAFile)
	if err != nil {
		return exitFailure, fmt.Errorf("KEYGATE_ADMIN_TLS_*: %w", err)
	}
	ln, err := net.Listen("tcp", s.AdminListenAddr)
	if err != nil {
		return exitFailure, fmt.Errorf("listen %s (KEYGATE_ADMIN_LISTEN_ADDR): %w", s.AdminListenAddr, err)
	}
	scheme := "http"
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
		scheme = "https"
	}
	handler, err := withConsole(api, s, []byte(strings.TrimSpace(string(token))), log)
	if err != nil {
		return exitFailure, err
	}
	srv := &http.Server{Handler: handler, TLSConfig: tlsConfig, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("admin node serving", "admin", ln.Addr().String(), "scheme", scheme, "client_certificates", s.AdminTLSClientCAFile != "",
		"publish_dir", s.PublishDir, "retention", s.PublishRetention, "console", s.ConsoleURL != "")
	select {
	case err := <-served:
		return exitFailure, fmt.Errorf("serve: %w", err)
	case sig := <-signals:
		log.Info("shutting down", "signal", sig.String())
		ctx, cancel := context.WithTimeout(context.Background(), s.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			return exitFailure, fmt.Errorf("shutdown: %w", err)
		}
		return exitOK, nil
	}
}

// withConsole mounts the console under /admin/ui/ when KEYGATE_CONSOLE_URL
// is set; the API keeps the rest.
func withConsole(api *admin.Server, s settings.Settings, token []byte, log *slog.Logger) (http.Handler, error) {
	if s.ConsoleURL == "" {
		return api.Handler(), nil
	}
	var secret []byte
	if s.ConsoleClientSecretFile != "" {
		b, err := readfile.Read(s.ConsoleClientSecretFile, readfile.MaxSecretFile)
		if err != nil {
			return nil, fmt.Errorf("KEYGATE_CONSOLE_CLIENT_SECRET_FILE: %w", err)
		}
		secret = []byte(strings.TrimSpace(string(b)))
	}
	var git *gitback.Writer
	if s.GitURL != "" {
		var err error
		git, err = gitback.New(gitback.Config{URL: s.GitURL, Base: s.GitBase, Dir: s.GitDir, BranchPrefix: s.GitBranchPrefix,
			Username: s.GitUsername, TokenFile: s.GitTokenFile, SSHKeyFile: s.GitSSHKeyFile, CompareURL: s.GitCompareURL})
		if err != nil {
			return nil, fmt.Errorf("KEYGATE_GIT_URL: %w", err)
		}
	}
	c, err := console.New(console.Config{Admin: api, BaseURL: s.ConsoleURL, Issuer: s.ConsoleIssuer, ClientID: s.ConsoleClientID,
		ClientSecret: secret, RoleClaim: s.ConsoleRoleClaim, Editors: s.ConsoleEditors, Viewers: s.ConsoleViewers,
		AdminToken: token, Git: git, ClientsFile: s.ConsoleClientsFile, Title: s.ConsoleTitle, BrandingDir: s.ConsoleBrandingDir, Logger: log})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/ui/", c.Handler())
	mux.Handle("/", api.Handler())
	return mux, nil
}
