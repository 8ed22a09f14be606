// Package deploy holds the deployment files; this test reads them the way a
// reviewer would and fails when one breaks the key-custody split or runs as
// root.
package deploy

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// doc is the part of a Kubernetes object this test reads.
type doc struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	StringData map[string]string `yaml:"stringData"`
	Data       map[string]string `yaml:"data"`
	Spec       struct {
		Template    podTemplate `yaml:"template"`
		JobTemplate struct {
			Spec struct {
				Template podTemplate `yaml:"template"`
			} `yaml:"spec"`
		} `yaml:"jobTemplate"`
	} `yaml:"spec"`
}

type podTemplate struct {
	Metadata struct {
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		SecurityContext struct {
			RunAsNonRoot *bool `yaml:"runAsNonRoot"`
			RunAsUser    *int  `yaml:"runAsUser"`
		} `yaml:"securityContext"`
		Containers []struct {
			Name string `yaml:"name"`
			Env  []struct {
				Name      string `yaml:"name"`
				ValueFrom struct {
					SecretKeyRef struct {
						Name string `yaml:"name"`
					} `yaml:"secretKeyRef"`
				} `yaml:"valueFrom"`
			} `yaml:"env"`
			EnvFrom []struct {
				SecretRef struct {
					Name string `yaml:"name"`
				} `yaml:"secretRef"`
			} `yaml:"envFrom"`
			SecurityContext struct {
				AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
			} `yaml:"securityContext"`
		} `yaml:"containers"`
		Volumes []struct {
			Secret struct {
				SecretName string `yaml:"secretName"`
			} `yaml:"secret"`
		} `yaml:"volumes"`
	} `yaml:"spec"`
}

var secretVars = []string{"ENCRYPTION_KEY", "ENCRYPTION_KEYS_RETIRED"}

func TestKubernetesManifestsKeepTheSecretWithTheSyncer(t *testing.T) {
	t.Parallel()
	for _, ov := range overlays {
		rendered, _ := render(t, ov)
		checkSecretSplit(t, ov, decodeAll[doc](t, rendered))
	}
}

func checkSecretSplit(t *testing.T, overlay string, docs []doc) {
	// Which Secrets carry the syncer's key.
	keySecrets := map[string]bool{}
	for _, d := range docs {
		if d.Kind == "Secret" || d.Kind == "ConfigMap" {
			for _, v := range secretVars {
				_, inString := d.StringData[v]
				_, inData := d.Data[v]
				if inString || inData {
					require.Equal(t, "Secret", d.Kind, "%s must not be in a ConfigMap", v)
					keySecrets[d.Metadata.Name] = true
				}
			}
		}
	}
	require.Len(t, keySecrets, 1, "exactly one Secret holds ENCRYPTION_KEY")

	workloads := 0
	syncers := 0
	for _, d := range docs {
		var tpl podTemplate
		switch d.Kind {
		case "Deployment", "Job":
			tpl = d.Spec.Template
		case "CronJob":
			tpl = d.Spec.JobTemplate.Spec.Template
		default:
			continue
		}
		workloads++
		component := tpl.Metadata.Labels["app.kubernetes.io/component"]
		require.NotEmpty(t, component, d.Metadata.Name)
		sc := tpl.Spec.SecurityContext
		require.True(t, sc.RunAsNonRoot != nil && *sc.RunAsNonRoot, "%s must run as non-root", d.Metadata.Name)
		require.True(t, sc.RunAsUser != nil && *sc.RunAsUser != 0, "%s must name a non-zero uid", d.Metadata.Name)
		usesKey := false
		for _, c := range tpl.Spec.Containers {
			require.True(t, c.SecurityContext.AllowPrivilegeEscalation != nil && !*c.SecurityContext.AllowPrivilegeEscalation,
				"%s/%s must not allow privilege escalation", d.Metadata.Name, c.Name)
			for _, e := range c.Env {
				for _, v := range secretVars {
					usesKey = usesKey || e.Name == v
				}
				usesKey = usesKey || keySecrets[e.ValueFrom.SecretKeyRef.Name]
			}
			for _, ef := range c.EnvFrom {
				usesKey = usesKey || keySecrets[ef.SecretRef.Name]
			}
		}
		for _, v := range tpl.Spec.Volumes {
			usesKey = usesKey || keySecrets[v.Secret.SecretName]
		}
		if component == "syncer" {
			syncers++
			require.True(t, usesKey, "%s: the syncer needs ENCRYPTION_KEY", d.Metadata.Name)
		} else {
			require.False(t, usesKey, "%s (%s) must not be able to read ENCRYPTION_KEY", d.Metadata.Name, component)
		}
	}
	require.GreaterOrEqual(t, workloads, 3, overlay)
	require.Equal(t, 1, syncers, "%s: one syncer flavour", overlay)
}

func TestComposeGivesTheKeyToTheSyncerOnly(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../docker-compose.yml")
	require.NoError(t, err)
	var compose struct {
		Services map[string]struct {
			Build       any               `yaml:"build"`
			User        string            `yaml:"user"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &compose))
	for _, want := range []string{"db", "auth", "migrate", "api", "syncer", "fakeprovider", "incident"} {
		require.Contains(t, compose.Services, want)
	}
	for name, s := range compose.Services {
		for _, v := range secretVars {
			_, has := s.Environment[v]
			if name == "syncer" && v == "ENCRYPTION_KEY" {
				require.True(t, has, "the syncer needs ENCRYPTION_KEY")
			} else {
				require.False(t, has, "%s must not get %s", name, v)
			}
		}
		require.NotContains(t, []string{"root", "0", "0:0"}, s.User, name)
	}
	require.Contains(t, compose.Services["api"].Environment, "ENCRYPTION_PUBLIC_KEY")
	// The fingerprint secret is the api's alone, the mirror of ENCRYPTION_KEY.
	for name, s := range compose.Services {
		_, has := s.Environment["KEY_FINGERPRINT_SECRET"]
		require.Equal(t, name == "api", has, "%s and KEY_FINGERPRINT_SECRET", name)
	}
}

func TestImagesRunAsNonRoot(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	var lastUser string
	finalStage := false
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "FROM "):
			finalStage, lastUser = true, ""
			require.NotContains(t, line, ":latest", "pin base images")
		case strings.HasPrefix(line, "USER ") && finalStage:
			lastUser = strings.TrimSpace(strings.TrimPrefix(line, "USER "))
		}
	}
	require.NotEmpty(t, lastUser, "the final stage must set USER")
	require.NotContains(t, []string{"root", "0", "0:0"}, lastUser)
}
