package tests

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testkit"
)

// The node, once serving, says where to look; and an issuer on loopback
// whose port is not the listener's (KEYGATE_LISTEN_ADDR moved, the
// issuer's variable left) is a warning naming what to change.
func TestStartupTalks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		issuer func(addr string) string
		warns  bool
	}{
		{"issuer on the listener's port", func(addr string) string { return "http://" + addr + "/oauth/v2" }, false},
		{"issuer on another loopback port", func(string) string { return "http://localhost:8080/oauth/v2" }, true},
		{"issuer behind a proxy", func(string) string { return "https://id.example.com/oauth/v2" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fedPort(t)
			issuer := tc.issuer(addr)
			dir := testkit.ConfigDir(t, map[string]string{
				"00.yaml": testkit.TokenConfig(testkit.SQLiteYAML(filepath.Join(t.TempDir(), "k.db")), issuer, "k1"),
				"10.yaml": testkit.KeysConfig(map[string]string{"k1": testkit.KeyFile(t, t.TempDir(), "k1")}),
			})
			n := startNode(t, dir, "KEYGATE_LISTEN_ADDR="+addr)
			testkit.WaitFor(t, 10*time.Second, "the open line", func() bool { return n.Logs.Contains(`"msg":"open"`) })
			if !n.Logs.Contains(`"discovery.token":"` + issuer + `/.well-known/openid-configuration"`) {
				t.Errorf("the open line lacks the discovery URL:\n%s", n.Logs.Tail(5))
			}
			if !n.Logs.Contains(`/healthz"`) || !n.Logs.Contains(`/metrics"`) {
				t.Errorf("the open line lacks the ops URLs:\n%s", n.Logs.Tail(5))
			}
			warned := n.Logs.Contains("the issuer's port is not the public listener's")
			if warned != tc.warns {
				t.Errorf("warned %v, want %v:\n%s", warned, tc.warns, n.Logs.Tail(8))
			}
			if warned && (!strings.Contains(n.Logs.String(), `"issuer_port":"8080"`) || !n.Logs.Contains("PUBLIC_BASE_URL")) {
				t.Errorf("the warning does not say which port and what to set:\n%s", n.Logs.Tail(8))
			}
		})
	}
}
