package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sealjsDir returns clients/js, failing (never skipping) with how to install
// what is missing.
func sealjsDir(t *testing.T) (node, dir string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir = filepath.Join(filepath.Dir(file), "..", "clients", "js")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed for clients/js: run ./scripts/test (it installs it), or `apt-get install -y nodejs npm`")
	}
	for _, pkg := range []string{"@hpke/core", "@hpke/hybridkem-x-wing", "esbuild", "typescript", "openapi-typescript"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("%s is not installed in %s: run ./scripts/test, or `npm ci` in that directory", pkg, dir)
		}
	}
	return node, dir
}

// TestSealingLibraryMatchesGo is the JS half of the cross-language vectors
// (pkg/keyring's TestSealingVectorsOpenInGo is the Go half): the library's
// typed client is what openapi.yaml generates today, the library
// type-checks with tsc --strict, and, built with esbuild, it opens every
// vector (Go-sealed and JS-sealed) only for its own binding and seals blobs
// that open.
func TestSealingLibraryMatchesGo(t *testing.T) {
	t.Parallel()
	node, dir := sealjsDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := func(name string, args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "NO_COLOR=1"}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), "%v:\n%s\n%s", args, stdout.String(), stderr.String())
		return stdout.Bytes()
	}
	exe := func(args ...string) []byte { t.Helper(); return run(node, args...) }
	generated := filepath.Join(t.TempDir(), "api.gen.ts")
	exe("node_modules/openapi-typescript/bin/cli.js", "../../openapi.yaml", "-o", generated)
	want, err := os.ReadFile(generated)
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(dir, "src", "api.gen.ts"))
	require.NoError(t, err)
	require.Equal(t, string(want), string(got), "clients/js/src/api.gen.ts is stale: run `npm run generate` in clients/js")
	exe("node_modules/typescript/bin/tsc", "--noEmit", "-p", ".")
	// esbuild's bin is the platform's native binary, not a script.
	run(filepath.Join(dir, "node_modules", ".bin", "esbuild"), "src/index.ts", "--bundle", "--format=esm", "--target=es2022",
		"--outfile=dist/tokka-seal.js", "--log-level=warning")
	out := exe("--test", "test/")
	require.Contains(t, string(out), "# fail 0")
}
