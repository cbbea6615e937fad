package admin

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/publish"
	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/testkit"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, other := testkit.NewCA(t, "admin CA"), testkit.NewCA(t, "another CA")
	caFile := ca.WriteCert(t, dir, "ca")
	srvCert, srvKey := ca.Issue(t, dir, "server", true)
	cliCert, cliKey := ca.Issue(t, dir, "client", false)
	strangerCert, strangerKey := other.Issue(t, dir, "stranger", false)

	serverTLS, err := ServerTLS(srvCert, srvKey, caFile)
	if err != nil {
		t.Fatal(err)
	}
	if serverTLS.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("ClientAuth = %v", serverTLS.ClientAuth)
	}
	p, err := publish.New(t.TempDir(), 10)
	if err != nil {
		t.Fatal(err)
	}
	api := New(Config{Publisher: p, SigningKey: ed25519.NewKeyFromSeed(make([]byte, 32)), Token: []byte(token), ConfigDir: t.TempDir()})
	srv := httptest.NewUnstartedServer(api.Handler())
	srv.TLS = serverTLS
	srv.StartTLS()
	t.Cleanup(srv.Close)

	call := func(t *testing.T, cfg *tls.Config, tok string) (int, error) {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: cfg}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", srv.URL+"/admin/v1/bundles", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	withCert, err := ClientTLS(caFile, cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	noCert, err := ClientTLS(caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := ClientTLS(caFile, strangerCert, strangerKey)
	if err != nil {
		t.Fatal(err)
	}
	if code, err := call(t, withCert, token); err != nil || code != http.StatusOK {
		t.Errorf("client certificate + token: %d %v, want 200", code, err)
	}
	if code, err := call(t, withCert, ""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("client certificate, no token: %d %v, want 401", code, err)
	}
	if code, err := call(t, noCert, token); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("no client certificate: %d %v, want a handshake failure", code, err)
	}
	if code, err := call(t, stranger, token); err == nil {
		t.Errorf("client certificate from another CA: %d, want a handshake failure", code)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t, "ca")
	srvCert, srvKey := ca.Issue(t, dir, "server", true)
	notPEM := filepath.Join(dir, "not.pem")
	writeFile(t, notPEM, []byte("hello"))
	if cfg, err := ServerTLS("", "", ""); cfg != nil || err != nil {
		t.Errorf("nothing set: %v %v", cfg, err)
	}
	if cfg, err := ServerTLS(srvCert, srvKey, ""); err != nil || cfg.ClientAuth != tls.NoClientCert {
		t.Errorf("TLS without client CA: %v", err)
	}
	for name, args := range map[string][3]string{
		"cert without key":   {srvCert, "", ""},
		"CA without cert":    {"", "", notPEM},
		"key mismatch":       {srvCert, notPEM, ""},
		"CA file not PEM":    {srvCert, srvKey, notPEM},
		"CA file is missing": {srvCert, srvKey, filepath.Join(dir, "missing.crt")},
	} {
		if _, err := ServerTLS(args[0], args[1], args[2]); err == nil {
			t.Errorf("ServerTLS %s: no error", name)
		}
	}
	if cfg, err := ClientTLS("", "", ""); cfg != nil || err != nil {
		t.Errorf("client, nothing set: %v %v", cfg, err)
	}
	if _, err := ClientTLS(notPEM, "", ""); err == nil || !strings.Contains(err.Error(), "--cacert") {
		t.Errorf("client CA not PEM: %v", err)
	}
	if _, err := ClientTLS("", srvCert, ""); err == nil {
		t.Error("client cert without key: no error")
	}
}

// TestClusterStale: a node is stale when its row expired (three of its own
// intervals) or it reported a clean stop, even within StaleAfter.
func TestClusterStale(t *testing.T) {
	f := newFixture(t)
	if code, _, body := f.do(t, "POST", "/admin/v1/bundles", token, Upload{Files: map[string]string{"a.yaml": cfg(f.db, "a")}}); code != http.StatusCreated {
		t.Fatalf("%d %s", code, body)
	}
	ctx := context.Background()
	st := f.st
	now := time.Now()
	rows := []model.NodeStatus{
		{ID: "live", Role: "default", Zone: "z", HeartbeatAt: now, ExpiresAt: now.Add(time.Minute), Details: map[string]any{"state": "serving"}},
		{ID: "expired", Role: "default", Zone: "z", HeartbeatAt: now.Add(-2 * time.Second), ExpiresAt: now.Add(-500 * time.Millisecond), Details: map[string]any{"state": "serving"}},
		{ID: "stopped", Role: "default", Zone: "z", HeartbeatAt: now, ExpiresAt: now.Add(time.Minute), Details: map[string]any{"state": "stopping"}},
	}
	for _, n := range rows {
		if err := st.Nodes().Heartbeat(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	var c struct{ Nodes []NodeInfo }
	_, _, body := f.do(t, "GET", "/admin/v1/cluster", token, nil)
	if err := json.Unmarshal(body, &c); err != nil || len(c.Nodes) != 3 {
		t.Fatalf("%v %s", err, body)
	}
	want := map[string][2]any{"live": {false, "serving"}, "expired": {true, "serving"}, "stopped": {true, "stopping"}}
	for _, n := range c.Nodes {
		if w := want[n.ID]; n.Stale != w[0] || n.State != w[1] {
			t.Errorf("node %s: stale %v state %q, want %v %q", n.ID, n.Stale, n.State, w[0], w[1])
		}
	}
}
