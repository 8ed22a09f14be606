package deploy

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// overlays are the two ways to run Tokka on Kubernetes (`kubectl apply -k`
// one of them); each must be complete and correct on its own.
var overlays = []string{"k8s/overlays/daemon", "k8s/overlays/cronjob"}

// kustomization is the part of a kustomization.yaml this test renders. Any
// other field (patches, generators, namespace rewrites…) would change what
// kubectl applies without this test seeing it, so render refuses it.
type kustomization struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Resources  []string `yaml:"resources"`
}

// render returns the documents `kubectl apply -k dir` would apply, as YAML
// nodes: each resource of dir's kustomization, directories through their
// own kustomization, in order. It also returns every file it read. It fails
// the test on a missing file, an unknown kustomization field, or the same
// object twice (kustomize refuses that too).
func render(t *testing.T, dir string) (docs []*yaml.Node, files []string) {
	t.Helper()
	path := filepath.Join(dir, "kustomization.yaml")
	raw, err := os.ReadFile(path)
	require.NoError(t, err, "%s has no kustomization.yaml", dir)
	var k kustomization
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&k), path)
	require.Equal(t, "kustomize.config.k8s.io/v1beta1", k.APIVersion, path)
	require.Equal(t, "Kustomization", k.Kind, path)
	require.NotEmpty(t, k.Resources, path)
	files = append(files, path)
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		info, err := os.Stat(p)
		require.NoError(t, err, "%s lists %s", path, r)
		if info.IsDir() {
			d, f := render(t, p)
			docs, files = append(docs, d...), append(files, f...)
			continue
		}
		files = append(files, p)
		f, err := os.Open(p)
		require.NoError(t, err)
		dec := yaml.NewDecoder(f)
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, p)
			docs = append(docs, &n)
		}
		require.NoError(t, f.Close())
	}
	seen := map[string]bool{}
	for _, n := range docs {
		var id struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name      string `yaml:"name"`
				Namespace string `yaml:"namespace"`
			} `yaml:"metadata"`
		}
		require.NoError(t, n.Decode(&id))
		key := id.Kind + "/" + id.Metadata.Namespace + "/" + id.Metadata.Name
		require.False(t, seen[key], "%s: %s twice", dir, key)
		seen[key] = true
	}
	return docs, files
}

// decodeAll decodes every rendered document into a T.
func decodeAll[T any](t *testing.T, docs []*yaml.Node) []T {
	t.Helper()
	out := make([]T, 0, len(docs))
	for _, n := range docs {
		var v T
		require.NoError(t, n.Decode(&v))
		out = append(out, v)
	}
	return out
}

// TestKubernetesOverlaysAreAlternatives: the daemon and the CronJob used to
// sit side by side in one directory, so `kubectl apply -f deploy/k8s` ran
// both. Each overlay now holds exactly one syncer flavour on top of a base
// that has none, and every manifest file belongs to some overlay.
func TestKubernetesOverlaysAreAlternatives(t *testing.T) {
	t.Parallel()
	type object struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Template    k8sPod `yaml:"template"`
			JobTemplate struct {
				Spec struct {
					Template k8sPod `yaml:"template"`
				} `yaml:"spec"`
			} `yaml:"jobTemplate"`
		} `yaml:"spec"`
	}
	syncerKinds := func(docs []*yaml.Node) []string {
		var kinds []string
		for _, o := range decodeAll[object](t, docs) {
			pod := o.Spec.Template
			if o.Kind == "CronJob" {
				pod = o.Spec.JobTemplate.Spec.Template
			}
			if pod.Metadata.Labels["app.kubernetes.io/component"] == "syncer" {
				kinds = append(kinds, o.Kind)
			}
		}
		return kinds
	}
	base, _ := render(t, "k8s/base")
	require.Empty(t, syncerKinds(base), "the base has no syncer: each overlay brings its own")

	used := map[string]bool{}
	want := map[string][]string{"k8s/overlays/daemon": {"Deployment"}, "k8s/overlays/cronjob": {"CronJob"}}
	for _, o := range overlays {
		docs, files := render(t, o)
		require.Equal(t, want[o], syncerKinds(docs), "%s: exactly one syncer flavour", o)
		for _, f := range files {
			used[filepath.Clean(f)] = true
		}
	}
	require.NoError(t, filepath.WalkDir("k8s", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		require.True(t, used[filepath.Clean(p)], "%s is in no overlay: kubectl apply -k would never apply it", p)
		return nil
	}))
}

// TestSyncerDaemonHasALivenessProbe: the daemon's /healthz (on the metrics
// listener) is what restarts a wedged scheduler.
func TestSyncerDaemonHasALivenessProbe(t *testing.T) {
	t.Parallel()
	docs, _ := render(t, "k8s/overlays/daemon")
	found := false
	for _, o := range decodeAll[k8sObject](t, docs) {
		if o.Kind != "Deployment" || o.Spec.Template.Metadata.Labels["app.kubernetes.io/component"] != "syncer" {
			continue
		}
		found = true
		c := o.Spec.Template.Spec.Containers[0]
		require.Equal(t, []string{"run"}, c.Args)
		probe := c.LivenessProbe.HTTPGet
		require.Equal(t, "/healthz", probe.Path)
		require.Equal(t, "metrics", probe.Port.String())
		var metricsAddr string
		for _, e := range c.Env {
			if e.Name == "METRICS_ADDR" {
				metricsAddr = e.Value
			}
		}
		require.NotEmpty(t, metricsAddr, "/healthz is served on METRICS_ADDR")
		ports := map[string]string{}
		for _, p := range c.Ports {
			ports[p.Name] = ":" + p.ContainerPort.String()
		}
		require.Equal(t, metricsAddr, ports["metrics"], "the probe's port is the metrics listener")
	}
	require.True(t, found)
}

// TestAPIShutsDownWithoutDroppingRequests: on a pod's deletion the api keeps
// serving through a preStop sleep (endpoints propagate), then its own
// readiness delay, then the drain; terminationGracePeriodSeconds must cover
// all three or the kubelet kills it mid-drain.
func TestAPIShutsDownWithoutDroppingRequests(t *testing.T) {
	t.Parallel()
	for _, ov := range overlays {
		docs, _ := render(t, ov)
		found := false
		for _, o := range decodeAll[k8sObject](t, docs) {
			if o.Kind != "Deployment" || o.Spec.Template.Metadata.Labels["app.kubernetes.io/component"] != "api" {
				continue
			}
			found = true
			pod := o.Spec.Template.Spec
			c := pod.Containers[0]
			require.NotNil(t, c.Lifecycle.PreStop.Sleep, "%s: the api needs a preStop sleep", ov)
			sleep := c.Lifecycle.PreStop.Sleep.Seconds
			require.Positive(t, sleep)
			delay, grace := 5, 15 // the api's defaults
			for _, e := range c.Env {
				switch e.Name {
				case "SHUTDOWN_READINESS_DELAY", "SHUTDOWN_GRACE":
					t.Fatalf("%s: %s set here must be added to the grace-period sum in this test", ov, e.Name)
				}
			}
			require.NotNil(t, pod.TerminationGracePeriodSeconds)
			require.Greater(t, *pod.TerminationGracePeriodSeconds, sleep+delay+grace,
				"%s: terminationGracePeriodSeconds must cover preStop + readiness delay + drain", ov)
		}
		require.True(t, found, ov)
	}
}

// policy is a NetworkPolicy as this test reads it.
type policy struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		PodSelector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"podSelector"`
		PolicyTypes []string `yaml:"policyTypes"`
		Ingress     []rule   `yaml:"ingress"`
		Egress      []rule   `yaml:"egress"`
	} `yaml:"spec"`
}

type rule struct {
	Ports []struct {
		Port     int    `yaml:"port"`
		Protocol string `yaml:"protocol"`
	} `yaml:"ports"`
	Peers []peer `yaml:"to"`
	From  []peer `yaml:"from"`
}

type peer struct {
	IPBlock *struct {
		CIDR string `yaml:"cidr"`
	} `yaml:"ipBlock"`
	NamespaceSelector *struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"namespaceSelector"`
	PodSelector *struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"podSelector"`
}

// TestNetworkPoliciesLimitEveryWorkload is issue 11's deployment finding:
// nothing limited where a compromised api could send data, and the syncer's
// metrics were open to the whole cluster. In every overlay: a default deny
// for the namespace; the api may reach only DNS, PostgreSQL and the Auth
// server (HTTPS to named addresses, never anywhere: that would include the
// providers); the syncer only DNS, PostgreSQL and HTTPS (SMTP submission may
// be added for budget emails); the migration Job only DNS and PostgreSQL; metrics ports only from the monitoring
// namespace. Deleting a policy, or opening egress, fails here.
func TestNetworkPoliciesLimitEveryWorkload(t *testing.T) {
	t.Parallel()
	for _, ov := range overlays {
		docs, _ := render(t, ov)
		var pols []policy
		for _, p := range decodeAll[policy](t, docs) {
			if p.Kind == "NetworkPolicy" {
				pols = append(pols, p)
			}
		}
		defaultDeny := false
		byComponent := map[string]policy{}
		for _, p := range pols {
			if len(p.Spec.PodSelector.MatchLabels) == 0 {
				defaultDeny = defaultDeny || (len(p.Spec.Ingress) == 0 && len(p.Spec.Egress) == 0 &&
					slices.Contains(p.Spec.PolicyTypes, "Ingress") && slices.Contains(p.Spec.PolicyTypes, "Egress"))
				continue
			}
			c := p.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"]
			require.NotEmpty(t, c, "%s: policy %s selects no component", ov, p.Metadata.Name)
			_, dup := byComponent[c]
			require.False(t, dup, "%s: one policy per component (%s)", ov, c)
			byComponent[c] = p
		}
		require.True(t, defaultDeny, "%s: a default-deny policy for the namespace", ov)

		type port struct {
			n     int
			proto string
		}
		dns, pg, https := port{53, "UDP"}, port{5432, "TCP"}, port{443, "TCP"}
		dnsTCP := port{53, "TCP"}
		for component, allowed := range map[string][]port{
			"api": {dns, dnsTCP, pg, https},
			// SMTP submission may be added for budget emails (SMTP_URL).
			"syncer":  {dns, dnsTCP, pg, https, {587, "TCP"}, {465, "TCP"}},
			"migrate": {dns, dnsTCP, pg},
		} {
			p, ok := byComponent[component]
			require.True(t, ok, "%s: no NetworkPolicy for the %s", ov, component)
			require.ElementsMatch(t, []string{"Ingress", "Egress"}, p.Spec.PolicyTypes, "%s: %s limits both directions", ov, component)
			require.NotEmpty(t, p.Spec.Egress, "%s: %s needs some egress", ov, component)
			for _, r := range p.Spec.Egress {
				require.NotEmpty(t, r.Ports, "%s: a %s egress rule without ports opens every port", ov, component)
				for _, pt := range r.Ports {
					proto := pt.Protocol
					if proto == "" {
						proto = "TCP"
					}
					got := port{pt.Port, proto}
					require.Contains(t, allowed, got, "%s: %s may not send to port %d/%s", ov, component, pt.Port, proto)
					switch {
					case got == dns || got == dnsTCP:
						require.True(t, inNamespace(r.Peers, "kube-system"), "%s: %s's DNS goes to kube-system only", ov, component)
					case got == https && component == "api":
						require.NotEmpty(t, r.Peers, "%s: HTTPS from the api to anywhere reaches the providers too", ov)
						for _, peer := range r.Peers {
							if peer.IPBlock != nil {
								require.NotContains(t, []string{"0.0.0.0/0", "::/0"}, peer.IPBlock.CIDR, "%s: the api's HTTPS must name the Auth server", ov)
							}
						}
					}
				}
			}
			metricsPort := map[string]int{"api": 9101, "syncer": 9102}[component]
			for _, r := range p.Spec.Ingress {
				for _, pt := range r.Ports {
					switch {
					case component == "api" && pt.Port == 8080:
					case pt.Port == metricsPort:
						require.True(t, inNamespace(r.From, "monitoring"), "%s: %s's metrics only from monitoring", ov, component)
					default:
						t.Fatalf("%s: %s accepts port %d", ov, component, pt.Port)
					}
				}
				require.NotEmpty(t, r.Ports, "%s: an ingress rule without ports opens every port of the %s", ov, component)
			}
		}
	}
}

// inNamespace reports whether peers are non-empty and every one is limited
// to the namespace ns.
func inNamespace(peers []peer, ns string) bool {
	for _, p := range peers {
		if p.IPBlock != nil || p.NamespaceSelector == nil || p.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != ns {
			return false
		}
	}
	return len(peers) > 0
}
