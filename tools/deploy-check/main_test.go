package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testConfig = `schema: 1
service-roles:
  default: {zone: local, profiles: [token]}
zones:
  local: {data-source: db}
data-sources:
  db: {type: sqlite, path: "${DATA_DIR:-./data}/k.db"}
keys:
  k1: {algorithm: ES256, private-key: "${file:${SECRETS_DIR}/k1.pem}"}
profiles:
  token:
    type: token
    path: /oauth/v2
    issuer: ${PUBLIC_BASE_URL}/oauth/v2
    signing-keys: [k1]
    endpoints: [discovery, jwks]
clients:
  app:
    profile: token
    secret: $APP_SECRET
    grant-types: [client_credentials]
    scopes: [a]
  beta:
    profile: token
    secret: $BETA_SECRET
    grant-types: [client_credentials]
    scopes: [a]
    tags: [under-test]
`

// manifest renders a minimal overlay: the config ConfigMap, an env-file
// ConfigMap, and one runtime Deployment whose env entries are extraEnv.
func manifest(configYAML, envFile, extraEnv string) string {
	indent := func(s, pad string) string {
		return pad + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pad)
	}
	return `apiVersion: v1
kind: ConfigMap
metadata: {name: keygate-config}
data:
  00.yaml: |
` + indent(configYAML, "    ") + `
---
apiVersion: v1
kind: ConfigMap
metadata: {name: keygate-env-abc}
data:
  stage.env: |
` + indent(envFile, "    ") + `
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: keygate-default
  labels: {app.kubernetes.io/component: runtime, keygate.io/service-role: default}
spec:
  template:
    spec:
      containers:
        - name: keygate
          env:
            - {name: KEYGATE_SERVICE_ROLE, value: default}
            - {name: KEYGATE_ENV_FILE, value: /etc/keygate/env/stage.env}
` + extraEnv + `
          volumeMounts:
            - {name: config, mountPath: /etc/keygate/config.d}
            - {name: env, mountPath: /etc/keygate/env}
            - {name: secrets, mountPath: /var/run/secrets/keygate}
          livenessProbe: {timeoutSeconds: 3}
          readinessProbe: {timeoutSeconds: 3}
      volumes:
        - {name: config, configMap: {name: keygate-config}}
        - {name: env, configMap: {name: keygate-env-abc, items: [{key: stage.env, path: stage.env}]}}
        - {name: secrets, secret: {secretName: keygate-keys}}
`
}

const (
	testEnvFile = "PUBLIC_BASE_URL=https://id.example.com\nSECRETS_DIR=/var/run/secrets/keygate\n"
	appSecret   = "            - name: APP_SECRET\n              valueFrom: {secretKeyRef: {name: s, key: app}}\n"
	betaSecret  = "            - name: BETA_SECRET\n              valueFrom: {secretKeyRef: {name: s, key: beta}}\n"
	excludeTest = "            - {name: KEYGATE_EXCLUDE_TAGS, value: under-test}\n"
)

func TestCheckOverlay(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "00.yaml"), []byte(testConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		manifest string
		want     []string // substrings of the problems; none: no problem
	}{
		{name: "every variable provided", manifest: manifest(testConfig, testEnvFile, appSecret+betaSecret)},
		{name: "excluded tag needs no variable", manifest: manifest(testConfig, testEnvFile, appSecret+excludeTest)},
		{name: "secret missing", manifest: manifest(testConfig, testEnvFile, appSecret),
			want: []string{"overlay o: Deployment keygate-default (role default): variable BETA_SECRET is not provided"}},
		{name: "optional secret does not count",
			manifest: manifest(testConfig, testEnvFile, appSecret+strings.Replace(betaSecret, "key: beta}", "key: beta, optional: true}", 1)),
			want:     []string{"variable BETA_SECRET is not provided"}},
		{name: "env file variable missing", manifest: manifest(testConfig, "SECRETS_DIR=/var/run/secrets/keygate\n", appSecret+betaSecret),
			want: []string{"variable PUBLIC_BASE_URL is not provided"}},
		{name: "directory not mounted", manifest: manifest(testConfig, testEnvFile+"DATA_DIR=/var/lib/keygate\n", appSecret+betaSecret),
			want: []string{"DATA_DIR=/var/lib/keygate is not a mounted volume"}},
		{name: "config.d file missing from the ConfigMap", manifest: manifest("schema: 1\n", testEnvFile, appSecret+betaSecret),
			want: []string{"ConfigMap keygate-config: 00.yaml differs from"}},
		{name: "embedded secret", manifest: manifest(testConfig, testEnvFile, appSecret+betaSecret) +
			"---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {app: x}\n",
			want: []string{"Secret s embeds secret values"}},
		{name: "not YAML", manifest: "apiVersion: v1\nkind: [", want: []string{"rendered manifests do not parse"}},
		{name: "not an object", manifest: "- a\n- b\n", want: []string{"rendered manifests do not parse"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			problems, _ := checkOverlay("o", []byte(tt.manifest), dir)
			got := strings.Join(problems, "\n")
			if len(tt.want) == 0 && len(problems) > 0 {
				t.Fatalf("problems:\n%s", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("problems lack %q; got:\n%s", w, got)
				}
			}
		})
	}
}

func TestRoleWithoutDeployment(t *testing.T) {
	dir := t.TempDir()
	cfg := strings.Replace(testConfig, "service-roles:\n", "service-roles:\n  edge: {zone: local, profiles: [token]}\n", 1)
	if err := os.WriteFile(filepath.Join(dir, "00.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	problems, _ := checkOverlay("o", []byte(manifest(cfg, testEnvFile, appSecret+betaSecret)), dir)
	if got := strings.Join(problems, "\n"); !strings.Contains(got, "service role edge (config.d) has no runtime Deployment") {
		t.Errorf("problems:\n%s", got)
	}
}
