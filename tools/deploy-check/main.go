// Command deploy-check verifies rendered Kubernetes manifests (kustomize build
// output) against the configuration they deploy. .ci/check-deploy renders
// every overlay and runs
//
//	go run ./tools/deploy-check -config-dir config.d staging=/tmp/staging.yaml production=/tmp/production.yaml
//
// For each overlay it checks that:
//   - the output parses as YAML, every document a Kubernetes object;
//   - no Secret is embedded (secrets are referenced, never written);
//   - the keygate-config ConfigMap holds exactly the repository's config.d;
//   - every service role of the config has one runtime Deployment, and every
//     runtime Deployment a role the config defines;
//   - every variable a role needs (config.RequiredVariables, with the
//     Deployment's KEYGATE_EXCLUDE_TAGS) is provided to its Deployment, by
//     the env file it mounts (KEYGATE_ENV_FILE) or by its container env
//     (value, secretKeyRef, configMapKeyRef, envFrom);
//   - each *_DIR variable (DATA_DIR, SECRETS_DIR) names a mounted volume, as
//     the root file system is read-only;
//   - containers have liveness and readiness probes with timeoutSeconds >= 3.
//
// Every problem is reported, each naming the overlay, the Deployment, the
// role and the variable; the exit status is 1 if there is any.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/dotenv"
	"github.com/keygate/keygate/internal/settings"
)

// Names the manifests use (deploy/kubernetes/base).
const (
	configMapName   = "keygate-config"
	roleLabel       = "keygate.io/service-role"
	componentLabel  = "app.kubernetes.io/component"
	runtimeRole     = "runtime"
	containerName   = "keygate"
	minProbeTimeout = 3
)

func main() {
	configDir := flag.String("config-dir", "config.d", "the repository's config directory")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: check [-config-dir DIR] OVERLAY=RENDERED.yaml...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	var problems []string
	for _, arg := range flag.Args() {
		name, file, ok := strings.Cut(arg, "=")
		if !ok {
			flag.Usage()
			os.Exit(2)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			problems = append(problems, fmt.Sprintf("overlay %s: %v", name, err))
			continue
		}
		ps, n := checkOverlay(name, data, *configDir)
		problems = append(problems, ps...)
		if len(ps) == 0 {
			fmt.Printf("overlay %s: ok (%d objects, %d runtime Deployments)\n", name, n.objects, n.runtimes)
		}
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, p)
		}
		fmt.Fprintf(os.Stderr, "deploy check: %d problem(s)\n", len(problems))
		os.Exit(1)
	}
}

// ---- the objects read ----

type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Template struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	Containers []container `yaml:"containers"`
	Volumes    []volume    `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Env     []envVar `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name     string `yaml:"name"`
			Optional bool   `yaml:"optional"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
		Prefix string `yaml:"prefix"`
	} `yaml:"envFrom"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name     string `yaml:"name"`
			Key      string `yaml:"key"`
			Optional bool   `yaml:"optional"`
		} `yaml:"secretKeyRef"`
		ConfigMapKeyRef *struct {
			Name     string `yaml:"name"`
			Key      string `yaml:"key"`
			Optional bool   `yaml:"optional"`
		} `yaml:"configMapKeyRef"`
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
	} `yaml:"valueFrom"`
}

type probe struct {
	TimeoutSeconds int `yaml:"timeoutSeconds"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name  string `yaml:"name"`
		Items []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
		} `yaml:"items"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
	} `yaml:"secret"`
	EmptyDir              *struct{} `yaml:"emptyDir"`
	PersistentVolumeClaim *struct{} `yaml:"persistentVolumeClaim"`
}

type counts struct{ objects, runtimes int }

// ---- the checks ----

// checkOverlay returns every problem of one rendered overlay.
func checkOverlay(overlay string, data []byte, configDir string) (problems []string, n counts) {
	fail := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("overlay %s: ", overlay)+fmt.Sprintf(format, args...))
	}
	objs, err := parse(data)
	if err != nil {
		fail("rendered manifests do not parse: %v", err)
		return problems, n
	}
	n.objects = len(objs)
	configMaps := map[string]map[string]string{} // by name, as the volumes and envFrom refer to them
	var deployments []object
	for _, o := range objs {
		switch o.Kind {
		case "ConfigMap":
			configMaps[o.Metadata.Name] = o.Data
		case "Secret":
			if len(o.Data) > 0 || len(o.StringData) > 0 {
				fail("Secret %s embeds secret values; reference Secrets created by the vault instead", o.Metadata.Name)
			}
		case "Deployment":
			deployments = append(deployments, o)
		}
	}

	// The rendered config.d is what the nodes load: it must be the
	// repository's, every file of it.
	cfgData, ok := configMaps[configMapName]
	if !ok {
		fail("no ConfigMap %s (config.d)", configMapName)
		return problems, n
	}
	repo, err := config.ReadDir(configDir)
	if err != nil {
		fail("read %s: %v", configDir, err)
		return problems, n
	}
	for _, f := range repo {
		switch got, ok := cfgData[f.Name]; {
		case !ok:
			fail("ConfigMap %s lacks %s/%s: add it to the configMapGenerator in deploy/kubernetes/base/kustomization.yaml", configMapName, configDir, f.Name)
		case got != string(f.Data):
			fail("ConfigMap %s: %s differs from %s/%s", configMapName, f.Name, configDir, f.Name)
		}
	}
	rendered, err := os.MkdirTemp("", "keygate-deploy-check-")
	if err != nil {
		fail("%v", err)
		return problems, n
	}
	defer os.RemoveAll(rendered)
	for name, body := range cfgData {
		if name != filepath.Base(name) || strings.HasPrefix(name, ".") {
			fail("ConfigMap %s: bad file name %q", configMapName, name)
			continue
		}
		if err := os.WriteFile(filepath.Join(rendered, name), []byte(body), 0o600); err != nil {
			fail("%v", err)
		}
	}
	roles, err := config.Roles(config.Options{Dir: rendered})
	if err != nil {
		fail("config.d: %v", err)
		return problems, n
	}

	deployed := map[string]string{} // role → Deployment
	for _, d := range deployments {
		if d.Metadata.Labels[componentLabel] != runtimeRole {
			for _, c := range d.Spec.Template.Spec.Containers {
				problems = append(problems, checkProbes(overlay, d.Metadata.Name, c)...)
			}
			continue
		}
		n.runtimes++
		c, ok := keygateContainer(d)
		if !ok {
			fail("Deployment %s: no container named %q", d.Metadata.Name, containerName)
			continue
		}
		problems = append(problems, checkProbes(overlay, d.Metadata.Name, c)...)
		env, envProblems := containerEnv(c, configMaps)
		for _, p := range envProblems {
			fail("Deployment %s: %s", d.Metadata.Name, p)
		}
		role := env.value("KEYGATE_SERVICE_ROLE")
		if role == "" {
			role = config.DefaultRole
		}
		if l := d.Metadata.Labels[roleLabel]; l != "" && l != role {
			fail("Deployment %s: label %s=%s but KEYGATE_SERVICE_ROLE=%s", d.Metadata.Name, roleLabel, l, role)
		}
		if !slices.Contains(roles, role) {
			fail("Deployment %s: service role %q is not defined in config.d (roles: %s)", d.Metadata.Name, role, strings.Join(roles, ", "))
			continue
		}
		if prev, dup := deployed[role]; dup {
			fail("Deployments %s and %s both run service role %s", prev, d.Metadata.Name, role)
		}
		deployed[role] = d.Metadata.Name
		where := fmt.Sprintf("Deployment %s (role %s)", d.Metadata.Name, role)

		// The env file the node reads: find the mounted ConfigMap key.
		fileVars := map[string]string{}
		envFile := env.value("KEYGATE_ENV_FILE")
		for _, f := range settings.SplitList(envFile) {
			body, ok := mountedConfigMapFile(d.Spec.Template.Spec, c, configMaps, f)
			if !ok {
				fail("%s: KEYGATE_ENV_FILE %s is not a file of a mounted ConfigMap", where, f)
				continue
			}
			vars, err := dotenv.Parse(f, []byte(body))
			if err != nil {
				fail("%s: env file %s: %v", where, f, err)
			}
			for _, v := range vars {
				fileVars[v.Name] = v.Value
			}
		}

		required, err := config.RequiredVariables(config.Options{
			Dir: rendered, Role: role, ExcludeTags: settings.SplitList(env.value("KEYGATE_EXCLUDE_TAGS")),
		})
		if err != nil {
			fail("%s: config.d does not load: %v", where, err)
			continue
		}
		for _, v := range required {
			if _, ok := env.vars[v]; ok {
				continue
			}
			if _, ok := fileVars[v]; ok {
				continue
			}
			fail("%s: variable %s is not provided: set it in the env file (%s) or reference it from a Secret (env: valueFrom.secretKeyRef)", where, v, orNone(envFile))
		}

		// Directories named by variables must be mounted: the root file
		// system is read-only and secrets arrive as volumes.
		for name, val := range merged(fileVars, env) {
			if !strings.HasSuffix(name, "_DIR") || !path.IsAbs(val) {
				continue
			}
			if !mounted(c, val) {
				fail("%s: %s=%s is not a mounted volume (the root file system is read-only)", where, name, val)
			}
		}
	}
	for _, r := range roles {
		if _, ok := deployed[r]; !ok {
			fail("service role %s (config.d) has no runtime Deployment (labelled %s=%s, with KEYGATE_SERVICE_ROLE=%s)", r, componentLabel, runtimeRole, r)
		}
	}
	sort.Strings(problems)
	return problems, n
}

// parse decodes every YAML document; each must be a Kubernetes object.
func parse(data []byte) ([]object, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var objs []object
	for i := 1; ; i++ {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var o object
		if err := node.Decode(&o); err != nil {
			return nil, fmt.Errorf("document %d (line %d): %w", i, node.Line, err)
		}
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			return nil, fmt.Errorf("document %d (line %d): not a Kubernetes object (apiVersion, kind and metadata.name are required)", i, node.Line)
		}
		objs = append(objs, o)
	}
	if len(objs) == 0 {
		return nil, errors.New("no objects")
	}
	return objs, nil
}

func checkProbes(overlay, deployment string, c container) []string {
	var out []string
	for _, p := range []struct {
		name string
		p    *probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}} {
		switch {
		case p.p == nil:
			out = append(out, fmt.Sprintf("overlay %s: Deployment %s: container %s has no %s", overlay, deployment, c.Name, p.name))
		case p.p.TimeoutSeconds < minProbeTimeout:
			out = append(out, fmt.Sprintf("overlay %s: Deployment %s: container %s: %s.timeoutSeconds is %d, want at least %d (/readyz pings the data source)",
				overlay, deployment, c.Name, p.name, p.p.TimeoutSeconds, minProbeTimeout))
		}
	}
	return out
}

func keygateContainer(d object) (container, bool) {
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == containerName {
			return c, true
		}
	}
	return container{}, false
}

// env is a container's environment as far as the manifests tell: literal
// values and ConfigMap values are known; Secret and field references are
// provided but their values are not.
type env struct {
	vars map[string]string
}

func (e env) value(name string) string { return e.vars[name] }

func containerEnv(c container, configMaps map[string]map[string]string) (env, []string) {
	e := env{vars: map[string]string{}}
	var problems []string
	for _, f := range c.EnvFrom {
		switch {
		case f.ConfigMapRef != nil:
			data, ok := configMaps[f.ConfigMapRef.Name]
			if !ok {
				if !f.ConfigMapRef.Optional {
					problems = append(problems, fmt.Sprintf("envFrom ConfigMap %s is not in the overlay", f.ConfigMapRef.Name))
				}
				continue
			}
			for k, v := range data {
				e.vars[f.Prefix+k] = v
			}
		case f.SecretRef != nil:
			// Its keys are unknown here: list variables one by one with
			// secretKeyRef so that the check can see them.
			problems = append(problems, fmt.Sprintf("envFrom Secret %s: reference each variable with env[].valueFrom.secretKeyRef instead, so its variables can be checked", f.SecretRef.Name))
		}
	}
	for _, v := range c.Env {
		switch {
		case v.ValueFrom == nil:
			e.vars[v.Name] = v.Value
		case v.ValueFrom.SecretKeyRef != nil:
			if v.ValueFrom.SecretKeyRef.Optional {
				continue // may be absent: does not count as provided
			}
			e.vars[v.Name] = "<secret>"
		case v.ValueFrom.ConfigMapKeyRef != nil:
			ref := v.ValueFrom.ConfigMapKeyRef
			val, ok := configMaps[ref.Name][ref.Key]
			if !ok {
				if !ref.Optional {
					problems = append(problems, fmt.Sprintf("env %s: ConfigMap %s has no key %s", v.Name, ref.Name, ref.Key))
				}
				continue
			}
			e.vars[v.Name] = val
		default:
			e.vars[v.Name] = "<field>"
		}
	}
	return e, problems
}

// mountedConfigMapFile returns the content of file as the container sees
// it, if a ConfigMap volume provides it.
func mountedConfigMapFile(spec podSpec, c container, configMaps map[string]map[string]string, file string) (string, bool) {
	for _, m := range c.VolumeMounts {
		rel, ok := under(file, m.MountPath)
		if !ok {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			data := configMaps[v.ConfigMap.Name]
			key := rel
			if m.SubPath != "" {
				key = m.SubPath
			}
			if len(v.ConfigMap.Items) > 0 {
				key = ""
				for _, it := range v.ConfigMap.Items {
					if it.Path == rel || (m.SubPath != "" && it.Path == m.SubPath) {
						key = it.Key
					}
				}
			}
			body, ok := data[key]
			return body, ok
		}
	}
	return "", false
}

// under reports whether p is mountPath or below it, and the rest of p.
func under(p, mountPath string) (string, bool) {
	p, mountPath = path.Clean(p), path.Clean(mountPath)
	if p == mountPath {
		return "", true
	}
	rest, ok := strings.CutPrefix(p, mountPath+"/")
	return rest, ok
}

func mounted(c container, dir string) bool {
	for _, m := range c.VolumeMounts {
		if _, ok := under(dir, m.MountPath); ok {
			return true
		}
	}
	return false
}

// merged is what the node sees: the container env wins over env files.
func merged(fileVars map[string]string, e env) map[string]string {
	out := map[string]string{}
	for k, v := range fileVars {
		out[k] = v
	}
	for k, v := range e.vars {
		out[k] = v
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "KEYGATE_ENV_FILE is not set"
	}
	return s
}
