package openapi_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/tokka-dev/tokka"

// boundaries are the package dependencies the architecture forbids: for
// each package, what it must not link, directly or through anything it
// imports. The api holds no provider client, no key-opening code, no budget
// evaluator and no sender (it validates destinations with pkg/egress only);
// storage knows no transport; the consumers of storage declare the
// interfaces they need and speak domain types, so none of them links it.
var boundaries = []struct {
	pkg, why  string
	forbidden []string
}{
	{"./cmd/api", "the api only seals keys and serves reads",
		[]string{"pkg/provider", "pkg/openai", "pkg/anthropic", "pkg/keyring", "pkg/budget", "pkg/notify", "pkg/syncer", "pkg/incident"}},
	{"./pkg/postgres", "storage imports no transport",
		[]string{"pkg/provider", "pkg/openai", "pkg/anthropic", "pkg/notify", "pkg/egress", "pkg/httpapi", "pkg/syncer", "pkg/budget"}},
	{"./pkg/httpapi", "handlers speak the domain, not storage", []string{"pkg/postgres"}},
	{"./pkg/syncer", "the sync loop speaks the domain, not storage", []string{"pkg/postgres", "pkg/openai", "pkg/anthropic"}},
	{"./pkg/budget", "budgets depend on the domain, not on storage", []string{"pkg/postgres", "pkg/provider"}},
	{"./pkg/incident", "the breach runbook speaks the domain, not storage", []string{"pkg/postgres"}},
	{"./pkg/provider", "the provider contract is transport only", []string{"pkg/postgres", "pkg/httpapi"}},
	{"./pkg/tokka", "the domain depends on nothing of ours but the secret type", []string{"pkg/"}},
}

// TestPackageBoundaries fails when a package links one it must not. The
// listing is `go list -deps`, the same the linker follows.
func TestPackageBoundaries(t *testing.T) {
	t.Parallel()
	for _, b := range boundaries {
		t.Run(strings.TrimPrefix(b.pkg, "./"), func(t *testing.T) {
			t.Parallel()
			deps := goListDeps(t, b.pkg)
			require.Contains(t, deps, module+strings.TrimPrefix(b.pkg, "."), "go list output does not look like %s's dependencies", b.pkg)
			for _, d := range deps {
				for _, f := range b.forbidden {
					require.False(t, links(d, f), "%s links %s (%s)", b.pkg, d, b.why)
				}
			}
		})
	}
}

// TestBoundaryCheckDetects proves the check is not vacuous: the syncer does
// link the provider clients and storage is linked by the syncer binary.
func TestBoundaryCheckDetects(t *testing.T) {
	t.Parallel()
	found := map[string]bool{}
	for _, d := range goListDeps(t, "./cmd/syncer") {
		for _, f := range []string{"pkg/openai", "pkg/postgres", "pkg/keyring", "pkg/notify"} {
			found[f] = found[f] || links(d, f)
		}
	}
	require.Equal(t, map[string]bool{"pkg/openai": true, "pkg/postgres": true, "pkg/keyring": true, "pkg/notify": true}, found)
}

// links reports whether import path d is the package rel (relative to the
// module) or below it; rel "pkg/" matches every package of ours under pkg
// except the domain itself and pkg/secret (the type a plaintext key has,
// which domain values such as a new budget's signing secret carry).
func links(d, rel string) bool {
	if rel == "pkg/" {
		return strings.HasPrefix(d, module+"/pkg/") && d != module+"/pkg/tokka" && d != module+"/pkg/secret"
	}
	p := module + "/" + rel
	return d == p || strings.HasPrefix(d, p+"/")
}

func goListDeps(t *testing.T, pkg string) []string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "list", "-deps", pkg)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list -deps %s failed: %s", pkg, stderr.String())
	return strings.Fields(string(out))
}
