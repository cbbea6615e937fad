package tests

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/keygate/keygate/internal/testkit"
)

// The dashboard and the alerting rules in deploy/monitoring: the rules
// pass Prometheus's own rule-file parser, every query of both parses as
// PromQL, and every metric they name is exported by a running node.
func TestMonitoringUsesExportedMetrics(t *testing.T) {
	promql := parser.NewParser(parser.Options{})
	rules, errs := rulefmt.ParseFile(filepath.Join("..", "deploy", "monitoring", "keygate-alerts.yaml"), false, model.UTF8Validation, promql, slog.Default())
	if len(errs) > 0 {
		t.Fatalf("the alerting rules do not load: %v", errs)
	}
	exprs := map[string]string{} // where → query
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Annotations["runbook"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert %s lacks a summary or a runbook", r.Alert)
			}
			exprs["alert "+r.Alert] = r.Expr
		}
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct{ Name, Query string }
		}
	}
	raw, err := os.ReadFile(filepath.Join("..", "deploy", "monitoring", "keygate-dashboard.json"))
	check(t, err)
	check(t, json.Unmarshal(raw, &dash))
	for _, p := range dash.Panels {
		for i, tg := range p.Targets {
			// Grafana's variables, as Grafana substitutes them.
			q := strings.NewReplacer("$__rate_interval", "5m", `"$instance"`, `".*"`).Replace(tg.Expr)
			exprs[fmt.Sprintf("panel %q query %d", p.Title, i)] = q
		}
	}
	if len(dash.Panels) < 10 {
		t.Errorf("the dashboard has %d panels", len(dash.Panels))
	}
	used := map[string][]string{} // metric → where
	for where, q := range exprs {
		e, err := promql.ParseExpr(q)
		if err != nil {
			t.Errorf("%s: %v\n%s", where, err, q)
			continue
		}
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				used[vs.Name] = append(used[vs.Name], where)
			}
			return nil
		})
	}
	if len(used) < 10 {
		t.Errorf("the queries name only %d metrics: %v", len(used), used)
	}

	// A node that has done each kind of thing once: issued a token,
	// refused a secret, refused a sign-in, reloaded, run its GC.
	addr := fedPort(t)
	issuer := "http://" + addr + "/oauth/v2"
	dir := testkit.ConfigDir(t, map[string]string{
		"00.yaml": testkit.Head(testkit.SQLiteYAML(filepath.Join(t.TempDir(), "m.db")), "token", "authn") + fmt.Sprintf(`profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: %s
    signing-keys: [k1]
    endpoints: [discovery, jwks, authorize, token]
    authentication-profile: authn
  authn:
    type: authentication
    path: /authn
    authenticators:
      password: {type: password, argon2: {memory-kib: 1024, iterations: 1, parallelism: 1}}
clients:
  svc: {profile: token, secret: %s, grant-types: [client_credentials]}
  app: {profile: token, secret: %s, redirect-uris: [%s], grant-types: [authorization_code], scopes: [openid]}
`, issuer, auditAppSecret, auditAppSecret, fedRPRedirect),
		"10.yaml": testkit.KeysConfig(map[string]string{"k1": testkit.KeyFile(t, t.TempDir(), "k1")}),
	})
	n := startNode(t, dir, "KEYGATE_LISTEN_ADDR="+addr, "KEYGATE_GC_INTERVAL=200ms")
	n.waitReady(t)
	n.issue(t, url.Values{}, "svc", auditAppSecret)
	postForm(t, issuer+"/token", url.Values{"grant_type": {"client_credentials"}}, "svc", "not-the-secret-0123456789")
	br := newFedBrowser()
	resp, body := br.get(t, issuer+"/authorize?response_type=code&client_id=app&scope=openid&state=s&code_challenge_method=S256"+
		"&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&redirect_uri="+url.QueryEscape(fedRPRedirect))
	br.login(t, resp.Request.URL.String(), body, "nobody", "wrong-password-0123")
	before := n.Status()
	testkit.WriteAtomic(t, filepath.Join(dir, "20.yaml"), "# a new file: a reload\n")
	n.WaitLoaded(before)

	lastMissing := ""
	exported := regexp.MustCompile(`(?m)^# TYPE (keygate_\w+) (\w+)$`)
	testkit.WaitFor(t, 15*time.Second, "every metric the dashboard and the rules use", func() bool {
		have := map[string]bool{}
		for _, m := range exported.FindAllStringSubmatch(n.Metrics(), -1) {
			have[m[1]] = true
			if m[2] == "histogram" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					have[m[1]+s] = true
				}
			}
		}
		missing := []string{}
		for name := range used {
			if !have[name] {
				missing = append(missing, name)
			}
		}
		slices.Sort(missing)
		if m := strings.Join(missing, " "); m != "" && m != lastMissing {
			t.Logf("not exported yet: %s", m)
			lastMissing = m
		}
		return len(missing) == 0
	})
}
