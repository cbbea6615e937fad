package admin

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/keygate/keygate/internal/readfile"
)

// ServerTLS builds the admin listener's TLS configuration from PEM files:
// certFile and keyFile are its certificate chain and private key; with
// clientCAFile it requires, and verifies against those CAs, a client
// certificate on every connection (mTLS). The bearer token is still
// required on every call. It returns nil, nil when certFile is empty
// (plain HTTP).
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" && clientCAFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("admin TLS: a certificate and a key are both needed")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("admin TLS: certificate and key: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCAFile != "" {
		pool, err := certPool(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("admin TLS: client CA: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientTLS builds a client's TLS configuration for the admin API (used by
// `keygate bundle publish`): caFile, if set, replaces the system roots;
// certFile and keyFile, if set (both), are the client certificate. It
// returns nil, nil when nothing is set (system roots, no client
// certificate).
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := certPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("--cert and --key must be given together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// certPool reads PEM CA certificates; a file without one is an error.
func certPool(file string) (*x509.CertPool, error) {
	data, err := readfile.Read(file, readfile.MaxSecretFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate found", file)
	}
	return pool, nil
}
