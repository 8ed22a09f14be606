package deploy

import (
	"os"
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
		TerminationGracePeriodSeconds *int `yaml:"terminationGracePeriodSeconds"`
		Containers                    []struct {
			Args []string `yaml:"args"`
			Env  []struct {
				Name  string `yaml:"name"`
				Value string `yaml:"value"`
			} `yaml:"env"`
			EnvFrom []struct {
				SecretRef struct {
					Name string `yaml:"name"`
				} `yaml:"secretRef"`
				ConfigMapRef struct {
					Name string `yaml:"name"`
				} `yaml:"configMapRef"`
			} `yaml:"envFrom"`
			Ports []struct {
				Name          string `yaml:"name"`
				ContainerPort scalar `yaml:"containerPort"`
			} `yaml:"ports"`
			ReadinessProbe probe `yaml:"readinessProbe"`
			LivenessProbe  probe `yaml:"livenessProbe"`
			Lifecycle      struct {
				PreStop struct {
					Sleep *struct {
						Seconds int `yaml:"seconds"`
					} `yaml:"sleep"`
				} `yaml:"preStop"`
			} `yaml:"lifecycle"`
		} `yaml:"containers"`
	} `yaml:"spec"`
}

// probe is an HTTP probe; Path is empty when there is none.
type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port scalar `yaml:"port"` // a number or a port's name
	} `yaml:"httpGet"`
}

// scalar is a YAML scalar kept as written (a port is a number or a name).
type scalar string

// UnmarshalYAML keeps the scalar's text, whatever its YAML type.
func (s *scalar) UnmarshalYAML(n *yaml.Node) error {
	*s = scalar(n.Value)
	return nil
}

func (s scalar) String() string { return string(s) }

// TestKubernetesWorkloadsGetWhatTheirBinaryRequires checks each workload's
// environment (its own env, Secrets and ConfigMaps) against what the binary
// refuses to start without, so a manifest cannot crash-loop on a missing
// variable: the api needs DATABASE_URL, ENCRYPTION_PUBLIC_KEY,
// KEY_FINGERPRINT_SECRET (and the syncer must not get it) and a way to
// verify tokens (with SUPABASE_URL also SUPABASE_ANON_KEY), the syncer
// DATABASE_URL and ENCRYPTION_KEY, the migration DATABASE_URL. It also wants
// the kinds the issue lists: the api Deployment with probes and a Service, a
// migration Job, and one syncer flavour, in each overlay.
func TestKubernetesWorkloadsGetWhatTheirBinaryRequires(t *testing.T) {
	t.Parallel()
	for _, ov := range overlays {
		docs, _ := render(t, ov)
		checkWorkloads(t, ov, decodeAll[k8sObject](t, docs))
	}
}

func checkWorkloads(t *testing.T, overlay string, objs []k8sObject) {
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
	for _, k := range []string{"Namespace", "Secret", "ConfigMap", "Job", "Deployment", "Service", "NetworkPolicy"} {
		require.Positive(t, kinds[k], "%s: a %s", overlay, k)
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
				need = append(need, "ENCRYPTION_PUBLIC_KEY", "KEY_FINGERPRINT_SECRET")
				require.True(t, env["SUPABASE_JWT_SECRET"] || env["SUPABASE_URL"] || env["SUPABASE_AUTH_URL"] || env["SUPABASE_JWKS_URL"],
					"%s: the api needs a way to verify tokens", o.Metadata.Name)
				if env["SUPABASE_URL"] {
					need = append(need, "SUPABASE_ANON_KEY")
				}
				require.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path, "%s: readiness probe", o.Metadata.Name)
				require.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path, "%s: liveness probe", o.Metadata.Name)
			case "syncer":
				need = append(need, "ENCRYPTION_KEY")
				require.False(t, env["KEY_FINGERPRINT_SECRET"], "%s: the fingerprint secret is the api's alone", o.Metadata.Name)
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
	require.Equal(t, map[string]int{"api": 1, "syncer": 1, "migrate": 1}, checked, overlay)
}

// TestComposeAuthServerIsConfiguredLikeTheReference checks the settings the
// real Supabase Auth server needs (checked against it; see the shared
// supabase-auth reference §4): without GOTRUE_JWT_AUD and
// GOTRUE_JWT_DEFAULT_GROUP_NAME its tokens carry empty aud and role, which
// the api rejects. The api must verify with the same secret the Auth server
// signs with, the api checks live sessions with it, and the incident command
// can reach its admin API.
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
	require.Equal(t, "http://auth:9999", api.Environment["SUPABASE_AUTH_URL"],
		"the api asks the Auth server whether a session is live before any mutation")
	require.Equal(t, "http://auth:9999", compose.Services["incident"].Environment["SUPABASE_AUTH_URL"])
}

// TestComposeGivesTheServiceKeyToTheIncidentCommandOnly: the Auth server's
// service_role key reads every user's address and more, and only `syncer
// incident notify` needs it. It used to sit in the `syncer run` daemon's
// environment (and so in every process it starts, its crash dumps, `docker
// inspect`); now a separate service has it, one that `docker compose up`
// never starts.
func TestComposeGivesTheServiceKeyToTheIncidentCommandOnly(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../docker-compose.yml")
	require.NoError(t, err)
	var compose struct {
		Services map[string]struct {
			Build struct {
				Args map[string]string `yaml:"args"`
			} `yaml:"build"`
			Profiles    []string          `yaml:"profiles"`
			Entrypoint  any               `yaml:"entrypoint"`
			Command     any               `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &compose))
	for name, s := range compose.Services {
		_, has := s.Environment["SUPABASE_SERVICE_ROLE_KEY"]
		require.Equal(t, name == "incident", has, "%s and SUPABASE_SERVICE_ROLE_KEY", name)
	}
	inc := compose.Services["incident"]
	require.Equal(t, "syncer", inc.Build.Args["CMD"])
	require.Equal(t, []any{"/app", "incident"}, inc.Entrypoint, "it runs `syncer incident` and nothing else")
	require.NotEmpty(t, inc.Profiles, "`docker compose up` must not start it")
	require.Contains(t, inc.Environment["DATABASE_URL"], "tokka_sync:", "the syncer's login role")
	require.Equal(t, []any{"run"}, compose.Services["syncer"].Command)
}

// TestComposeRunsOnDockerCompose129: Debian's docker-compose 1.29 refused
// the file's top-level `name:` (a later Compose addition). Top-level keys
// are limited to what 1.29 knows.
func TestComposeRunsOnDockerCompose129(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../docker-compose.yml")
	require.NoError(t, err)
	var top map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &top))
	for k := range top {
		if strings.HasPrefix(k, "x-") {
			continue
		}
		require.Contains(t, []string{"version", "services", "volumes", "networks", "configs", "secrets"}, k,
			"docker-compose 1.29 does not know the top-level key %q", k)
	}
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	require.True(t, strings.Contains(string(readme), "docker-compose 1.29"), "the README states the minimum Compose version")
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
