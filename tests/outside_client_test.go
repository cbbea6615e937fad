package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The outside-client test: a DPoP-bound OpenID Connect flow driven by
// panva's oauth4webapi (tests/node/dpop-flow.mjs), a strict client library
// written by someone else from the RFCs, against the built binary serving
// the repository's config.d. Keygate's own tests check Keygate against
// Keygate's reading of the RFCs; this one checks that an independent
// reading agrees: discovery, PAR (RFC 9126) with a DPoP proof, the iss
// authorization response parameter (RFC 9207), the code exchange, userinfo
// and a refresh, every one with DPoP (RFC 9449) and server nonces.

const (
	o4wSecret   = "o4w-confidential-secret-0123456789"
	o4wRedirect = "http://127.0.0.1:9/callback" // nothing listens: the script reads the code from Location
)

// dpopFlowScript finds node and tests/node's installed packages. Missing:
// the test fails under CI=true (.ci/run installs them) and is skipped
// loudly otherwise, as the PostgreSQL and Chromium tests are.
func dpopFlowScript(t *testing.T) (nodeBin, script string) {
	t.Helper()
	dir, err := filepath.Abs("node")
	if err != nil {
		t.Fatal(err)
	}
	missing := ""
	nodeBin, err = exec.LookPath("node")
	if err != nil {
		missing = "node not found on the PATH (apt-get install nodejs npm)"
	} else if _, err := os.Stat(filepath.Join(dir, "node_modules", "oauth4webapi", "package.json")); err != nil {
		missing = "tests/node/node_modules is missing"
	}
	if missing != "" {
		msg := missing + ": run `npm ci --prefix tests/node` (.ci/run does): outside-client test NOT RUN"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED: " + msg)
	}
	return nodeBin, filepath.Join(dir, "dpop-flow.mjs")
}

// capped keeps the first max bytes written to it and drops the rest, so a
// runaway child cannot fill the test's memory.
type capped struct {
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// dpopFlowResult is the script's JSON line (tests/node/dpop-flow.mjs).
type dpopFlowResult struct {
	OK         bool   `json:"ok"`
	Issuer     string `json:"issuer"`
	ClientID   string `json:"client_id"`
	ClientAuth string `json:"client_auth"`
	DPoP       struct {
		Alg string `json:"alg"`
		JKT string `json:"jkt"`
	} `json:"dpop"`
	PAR struct {
		RequestURI bool `json:"request_uri"`
		ExpiresIn  int  `json:"expires_in"`
	} `json:"par"`
	Authorization struct {
		Iss          string `json:"iss"`
		StateChecked bool   `json:"state_checked"`
	} `json:"authorization"`
	Token struct {
		TokenType    string `json:"token_type"`
		CnfJKT       string `json:"cnf_jkt"`
		RefreshToken bool   `json:"refresh_token"`
		IDToken      struct {
			Sub              string `json:"sub"`
			NonceChecked     bool   `json:"nonce_checked"`
			SignatureChecked bool   `json:"signature_checked"`
		} `json:"id_token"`
	} `json:"token"`
	ResourceServerCheck struct {
		Sub      string `json:"sub"`
		ClientID string `json:"client_id"`
		CnfJKT   string `json:"cnf_jkt"`
	} `json:"resource_server_check"`
	Userinfo struct {
		Sub           string `json:"sub"`
		SubMatches    bool   `json:"sub_matches"`
		Email         string `json:"email"`
		BearerRefused bool   `json:"bearer_refused"`
	} `json:"userinfo"`
	Refresh struct {
		TokenType           string `json:"token_type"`
		CnfJKT              string `json:"cnf_jkt"`
		NewAccessToken      bool   `json:"new_access_token"`
		RefreshTokenRotated bool   `json:"refresh_token_rotated"`
	} `json:"refresh"`
	DPoPNonceRetries map[string]int `json:"dpop_nonce_retries"`
}

// TestOutsideClientDPoPFlow: a confidential client (client_secret_basic)
// and a public one (none, whose refresh tokens are DPoP-bound too), both
// with `dpop: required` and `require-pushed-authorization-requests`, on a
// token profile that demands DPoP server nonces. A user created with
// `keygate user add` signs in through the login form (the script posts it
// with its CSRF token, no browser).
func TestOutsideClientDPoPFlow(t *testing.T) {
	nodeBin, script := dpopFlowScript(t)
	s := newSite(t, map[string]string{"O4W_CLIENT_SECRET": o4wSecret})
	s.edit("30-profiles.yaml", func(y string) string {
		// Nonces on: the script must follow oauth4webapi's documented
		// use_dpop_nonce retry, the harder path for a client.
		return strings.Replace(y, "    access-tokens: {format: jwt, lifetime: 5m}\n",
			"    access-tokens: {format: jwt, lifetime: 5m}\n    dpop: {nonce: true}\n", 1)
	})
	s.edit("40-clients.yaml", func(y string) string {
		return y + `
  # tests/outside_client_test.go: oauth4webapi's DPoP flow.
  o4w-confidential:
    profile: token
    secret: $O4W_CLIENT_SECRET
    redirect-uris: [` + o4wRedirect + `]
    grant-types: [authorization_code, refresh_token]
    scopes: [openid, profile, email]
    require-pushed-authorization-requests: true
    dpop: required
  o4w-public:
    profile: token
    token-endpoint-auth-method: none
    redirect-uris: [` + o4wRedirect + `]
    grant-types: [authorization_code, refresh_token]
    scopes: [openid, profile, email]
    require-pushed-authorization-requests: true
    dpop: required
`
	})
	s.userAdd("alice", alicePassword, "--email", "alice@example.com", "--email-verified", "--name", "Alice Example")

	n := startNode(t, s.dir, s.env...)
	n.waitReady(t)
	issuer := s.setIssuer(n.Public(), n)

	for _, c := range []struct{ clientID, secret, auth string }{
		{"o4w-confidential", o4wSecret, "client_secret_basic"},
		{"o4w-public", "", "none"},
	} {
		t.Run(c.clientID, func(t *testing.T) {
			r := runDPoPFlow(t, nodeBin, script, issuer, c.clientID, c.secret)
			if !r.OK || r.Issuer != issuer || r.ClientID != c.clientID || r.ClientAuth != c.auth {
				t.Errorf("ok=%v issuer=%q client=%q auth=%q", r.OK, r.Issuer, r.ClientID, r.ClientAuth)
			}
			jkt := r.DPoP.JKT
			if r.DPoP.Alg != "ES256" || len(jkt) != 43 { // base64url SHA-256
				t.Errorf("DPoP key: alg %q jkt %q", r.DPoP.Alg, jkt)
			}
			if !r.PAR.RequestURI || r.PAR.ExpiresIn != 60 {
				t.Errorf("par: %+v", r.PAR)
			}
			if r.Authorization.Iss != issuer || !r.Authorization.StateChecked {
				t.Errorf("authorization response: %+v, want iss %q", r.Authorization, issuer)
			}
			if r.Token.TokenType != "DPoP" || r.Token.CnfJKT != jkt || !r.Token.RefreshToken {
				t.Errorf("code exchange: %+v, want DPoP bound to %s with a refresh token", r.Token, jkt)
			}
			if id := r.Token.IDToken; id.Sub == "" || !id.NonceChecked || !id.SignatureChecked {
				t.Errorf("ID token: %+v", id)
			}
			if rs := r.ResourceServerCheck; rs.Sub != r.Token.IDToken.Sub || rs.ClientID != c.clientID || rs.CnfJKT != jkt {
				t.Errorf("access token at the resource server: %+v", rs)
			}
			if u := r.Userinfo; u.Sub != r.Token.IDToken.Sub || !u.SubMatches || u.Email != "alice@example.com" || !u.BearerRefused {
				t.Errorf("userinfo: %+v", u)
			}
			if rf := r.Refresh; rf.TokenType != "DPoP" || rf.CnfJKT != jkt || !rf.NewAccessToken || !rf.RefreshTokenRotated {
				t.Errorf("refresh: %+v", rf)
			}
			// The first proof has no nonce: the push is refused with
			// use_dpop_nonce and retried; the handle then has the nonce,
			// so the token and userinfo requests need no retry.
			if r.DPoPNonceRetries["par"] != 1 {
				t.Errorf("DPoP nonce retries %v, want one at par", r.DPoPNonceRetries)
			}
		})
	}

	for _, ep := range []string{"authorize", "par", "token", "userinfo"} {
		if got := n.count("token", ep, "500"); got != 0 {
			t.Errorf("%s answered 500 %v times", ep, got)
		}
	}
	if n.Logs.Contains(alicePassword) || n.Logs.Contains(o4wSecret) {
		t.Error("the node logged the password or the client secret")
	}
}

// runDPoPFlow runs the script for one client, bounded in time, and
// returns its parsed JSON line; a failure shows the script's stderr (its
// own messages hold no token or secret).
func runDPoPFlow(t *testing.T, nodeBin, script, issuer, clientID, secret string) dpopFlowResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, script, "--issuer", issuer, "--client-id", clientID, "--redirect-uri", o4wRedirect)
	cmd.Dir = t.TempDir()
	// Secrets through the environment, not argv; nothing else inherited
	// but PATH, so no proxy setting reaches the loopback requests.
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"DPOP_FLOW_USERNAME=alice",
		"DPOP_FLOW_PASSWORD=" + alicePassword,
		"DPOP_FLOW_CLIENT_SECRET=" + secret,
	}
	cmd.WaitDelay = 5 * time.Second
	stdout, stderr := &capped{max: 64 << 10}, &capped{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	start := time.Now()
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("node %s: no result within 60 s\nstderr:\n%s", filepath.Base(script), stderr.buf.String())
	}
	if err != nil {
		t.Fatalf("node %s: %v\nstderr:\n%s", filepath.Base(script), err, stderr.buf.String())
	}
	line := strings.TrimSpace(stdout.buf.String())
	t.Logf("oauth4webapi (%s): %s", time.Since(start).Round(time.Millisecond), line)
	var r dpopFlowResult
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatalf("script output is not one JSON line: %v\n%s", err, line)
	}
	return r
}
