package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// k8sObject is the part of a manifest this file's tests read: enough to
// know which variables reach each container and how it is probed.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	StringData map[string]string `yaml:"stringData"`
	Data       map[string]string `yaml:"data"`
	Spec       struct {
		Template    k8sPod `yaml:"template"`
		JobTemplate struct {
			Spec struct {
				Template k8sPod `yaml:"template"`
			} `yaml:"spec"`
		} `yaml:"jobTemplate"`
		Selector map[string]any `yaml:"selector"`
	} `yaml:"spec"`
}

type k8sPod struct {
	Metadata struct {
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		Containers []struct {
			Args []string `yaml:"args"`
			Env  []struct {
				Name string `yaml:"name"`
			} `yaml:"env"`
			EnvFrom []struct {
				SecretRef struct {
					Name string `yaml:"name"`
				} `yaml:"secretRef"`
				ConfigMapRef struct {
					Name string `yaml:"name"`
				} `yaml:"configMapRef"`
			} `yaml:"envFrom"`
			ReadinessProbe map[string]any `yaml:"readinessProbe"`
			LivenessProbe  map[string]any `yaml:"livenessProbe"`
		} `yaml:"containers"`
	} `yaml:"spec"`
}

func readObjects(t *testing.T) []k8sObject {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	require.NoError(t, err)
	var out []k8sObject
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, part := range strings.Split(string(raw), "\n---\n") {
			var o k8sObject
			require.NoError(t, yaml.Unmarshal([]byte(part), &o), f)
			out = append(out, o)
		}
	}
	return out
}

// TestKubernetesWorkloadsGetWhatTheirBinaryRequires checks each workload's
// environment (its own env, Secrets and ConfigMaps) against what the binary
// refuses to start without, so a manifest cannot crash-loop on a missing
// variable: the api needs DATABASE_URL, ENCRYPTION_PUBLIC_KEY and a way to
// verify tokens (with SUPABASE_URL also SUPABASE_ANON_KEY), the syncer
// DATABASE_URL and ENCRYPTION_KEY, the migration DATABASE_URL. It also wants
// the kinds the issue lists: the api Deployment with probes and a Service, a
// migration Job, and both syncer flavours.
func TestKubernetesWorkloadsGetWhatTheirBinaryRequires(t *testing.T) {
	t.Parallel()
	objs := readObjects(t)
	vars := map[string]map[string]bool{} // "Secret/name" or "ConfigMap/name" → variables
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.Kind]++
		if o.Kind == "Secret" || o.Kind == "ConfigMap" {
			set := map[string]bool{}
			for k := range o.StringData {
				set[k] = true
			}
			for k := range o.Data {
				set[k] = true
			}
			vars[o.Kind+"/"+o.Metadata.Name] = set
		}
	}
	for _, k := range []string{"Namespace", "Secret", "ConfigMap", "Job", "Deployment", "Service", "CronJob", "NetworkPolicy"} {
		require.Positive(t, kinds[k], "a %s", k)
	}
	checked := map[string]int{}
	for _, o := range objs {
		pod := o.Spec.Template
		if o.Kind == "CronJob" {
			pod = o.Spec.JobTemplate.Spec.Template
		}
		if o.Kind != "Deployment" && o.Kind != "Job" && o.Kind != "CronJob" {
			continue
		}
		component := pod.Metadata.Labels["app.kubernetes.io/component"]
		for _, c := range pod.Spec.Containers {
			env := map[string]bool{}
			for _, e := range c.Env {
				env[e.Name] = true
			}
			for _, ef := range c.EnvFrom {
				for ref, kind := range map[string]string{ef.SecretRef.Name: "Secret", ef.ConfigMapRef.Name: "ConfigMap"} {
					if ref == "" {
						continue
					}
					set, ok := vars[kind+"/"+ref]
					require.True(t, ok, "%s refers to a missing %s %s", o.Metadata.Name, kind, ref)
					for k := range set {
						env[k] = true
					}
				}
			}
			need := []string{"DATABASE_URL"}
			switch component {
			case "api":
				need = append(need, "ENCRYPTION_PUBLIC_KEY")
				require.True(t, env["SUPABASE_JWT_SECRET"] || env["SUPABASE_URL"] || env["SUPABASE_AUTH_URL"] || env["SUPABASE_JWKS_URL"],
					"%s: the api needs a way to verify tokens", o.Metadata.Name)
				if env["SUPABASE_URL"] {
					need = append(need, "SUPABASE_ANON_KEY")
				}
				require.NotNil(t, c.ReadinessProbe, "%s: readiness probe", o.Metadata.Name)
				require.NotNil(t, c.LivenessProbe, "%s: liveness probe", o.Metadata.Name)
			case "syncer":
				need = append(need, "ENCRYPTION_KEY")
				require.Len(t, c.Args, 1)
				require.Contains(t, []string{"run", "once"}, c.Args[0])
			case "migrate":
				require.Equal(t, []string{"migrate"}, c.Args)
			}
			for _, v := range need {
				require.True(t, env[v], "%s (%s) gets no %s and would refuse to start", o.Metadata.Name, component, v)
			}
			checked[component]++
		}
	}
	require.Equal(t, map[string]int{"api": 1, "syncer": 2, "migrate": 1}, checked)
}

// TestComposeAuthServerIsConfiguredLikeTheReference checks the settings the
// real Supabase Auth server needs (checked against it; see the shared
// supabase-auth reference §4): without GOTRUE_JWT_AUD and
// GOTRUE_JWT_DEFAULT_GROUP_NAME its tokens carry empty aud and role, which
// the api rejects. The api must verify with the same secret the Auth server
// signs with, and the syncer can reach its admin API for incident notices.
func TestComposeAuthServerIsConfiguredLikeTheReference(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../docker-compose.yml")
	require.NoError(t, err)
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &compose))
	auth := compose.Services["auth"]
	require.True(t, strings.HasPrefix(auth.Image, "supabase/gotrue:v"), "a pinned GoTrue image, not %q", auth.Image)
	for k, v := range map[string]string{
		"GOTRUE_DB_DRIVER": "postgres", "GOTRUE_JWT_AUD": "authenticated",
		"GOTRUE_JWT_DEFAULT_GROUP_NAME": "authenticated", "PORT": "9999",
	} {
		require.Equal(t, v, auth.Environment[k], k)
	}
	for _, k := range []string{"DATABASE_URL", "GOTRUE_JWT_SECRET", "API_EXTERNAL_URL", "GOTRUE_SITE_URL", "GOTRUE_JWT_ISSUER"} {
		require.NotEmpty(t, auth.Environment[k], k)
	}
	api := compose.Services["api"]
	require.Equal(t, "${SUPABASE_JWT_SECRET}", api.Environment["SUPABASE_JWT_SECRET"])
	require.Contains(t, auth.Environment["GOTRUE_JWT_SECRET"], "${SUPABASE_JWT_SECRET")
	require.Equal(t, auth.Environment["GOTRUE_JWT_ISSUER"], api.Environment["SUPABASE_JWT_ISSUER"])
	require.Equal(t, "http://auth:9999", compose.Services["syncer"].Environment["SUPABASE_AUTH_URL"])
	_, apiHasServiceKey := api.Environment["SUPABASE_SERVICE_ROLE_KEY"]
	require.False(t, apiHasServiceKey, "the api never gets the service_role key")
}

// TestImageBuildIsStaticAndLeavesSecretsOut checks the Dockerfile builds
// static binaries in a separate stage onto a minimal base, and that the build
// context leaves out the local stack's secrets and the git history.
func TestImageBuildIsStaticAndLeavesSecretsOut(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	df := string(raw)
	require.GreaterOrEqual(t, strings.Count("\n"+df, "\nFROM "), 2, "multi-stage")
	require.Contains(t, df, "CGO_ENABLED=0")
	require.Contains(t, df, "FROM gcr.io/distroless/static")
	ignore, err := os.ReadFile("../.dockerignore")
	require.NoError(t, err, "a .dockerignore keeps .dev (local secrets) out of the build context")
	lines := strings.Split(string(ignore), "\n")
	for _, want := range []string{".dev", ".git", ".env"} {
		require.Contains(t, lines, want)
	}
}
