package keyring_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const keyringPkg = "github.com/tokka-dev/tokka/pkg/keyring"

// TestAPIDoesNotLinkKeyring enforces the process split structurally: the api
// binary seals with package seal but must never contain the code that derives
// the private key or opens a blob. If cmd/api, or anything it imports, ever
// imports this package, keyring shows up in its dependency list and this test
// fails. A missing cmd/api is a failure too, not a skip: a check that quietly
// stops checking is worse than none.
func TestAPIDoesNotLinkKeyring(t *testing.T) {
	t.Parallel()
	root := moduleRoot(t)
	info, err := os.Stat(filepath.Join(root, "cmd", "api"))
	require.NoError(t, err, "cmd/api does not exist under %s: this test must check the api binary's dependencies and cannot pass without it", root)
	require.True(t, info.IsDir(), "cmd/api is not a directory")

	deps := listDeps(t, root, "./cmd/api")
	require.Contains(t, deps, "github.com/tokka-dev/tokka/cmd/api", "go list output does not look like cmd/api's dependencies")
	for _, d := range deps {
		require.False(t, linksKeyring(d),
			"cmd/api links %s: the api must never be able to derive the private key or open a blob", d)
	}
}

// TestSplitCheckDetects proves the check above is not vacuous: the same
// listing and matching do find keyring where it is linked.
func TestSplitCheckDetects(t *testing.T) {
	t.Parallel()
	deps := listDeps(t, moduleRoot(t), "./pkg/keyring")
	found := false
	for _, d := range deps {
		found = found || linksKeyring(d)
	}
	require.True(t, found, "go list -deps ./pkg/keyring did not report keyring: the split check would miss a violation")
}

func linksKeyring(importPath string) bool {
	return importPath == keyringPkg || strings.HasPrefix(importPath, keyringPkg+"/")
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "go", "env", "GOMOD").Output()
	require.NoError(t, err, "go env GOMOD")
	gomod := strings.TrimSpace(string(out))
	require.NotEmpty(t, gomod, "not inside a Go module")
	require.NotEqual(t, os.DevNull, gomod, "not inside a Go module")
	return filepath.Dir(gomod)
}

func listDeps(t *testing.T, root, pkg string) []string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "list", "-deps", pkg)
	cmd.Dir = root
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list -deps %s failed: %s", pkg, stderr.String())
	return strings.Fields(string(out))
}
