package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tsclientTools returns node and the directory of the TypeScript client
// check, failing (never skipping) with how to install what is missing.
func tsclientTools(t *testing.T) (node, dir string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir = filepath.Join(filepath.Dir(file), "tsclient")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed for the TypeScript client: run ./scripts/test (it installs it), or `apt-get install -y nodejs npm`")
	}
	for _, pkg := range []string{"openapi-typescript", "openapi-fetch", "typescript"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("%s is not installed in %s: run ./scripts/test, or `npm ci` in that directory", pkg, dir)
		}
	}
	return node, dir
}

// TestTypeScriptClientDrivesTheFlow generates the TypeScript types from
// openapi.yaml (openapi-typescript, pinned in e2e/tsclient's lockfile),
// type-checks e2e/tsclient/flow.ts against them with tsc --strict, and runs
// it with node against the real binaries: openapi-fetch adds a connection,
// waits for its sync, and asks for usage with group_by as an array, which it
// sends as group_by=day&group_by=model; the answer is grouped by both, the
// same rows the Go side gets for group_by=day,model. It also reads a list
// page, the CSV export as text and the summary.
func TestTypeScriptClientDrivesTheFlow(t *testing.T) {
	t.Parallel()
	node, dir := tsclientTools(t)
	// Under dir, so that node and tsc find dir/node_modules.
	run, err := os.MkdirTemp(dir, ".run-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(run) })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	exe := func(name string, args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "NO_COLOR=1"}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), "%s %s:\n%s%s", filepath.Base(name), strings.Join(args, " "), stdout.String(), stderr.String())
		return stdout.Bytes()
	}
	exe(node, "node_modules/openapi-typescript/bin/cli.js", "../../openapi.yaml", "-o", filepath.Join(run, "schema.d.ts"))
	src, err := os.ReadFile(filepath.Join(dir, "flow.ts"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(run, "flow.ts"), src, 0o644))
	exe(node, "node_modules/typescript/bin/tsc", "--strict", "--noEmitOnError", "--module", "nodenext",
		"--moduleResolution", "nodenext", "--target", "es2022", "--lib", "es2022,dom",
		"--outDir", filepath.Join(run, "out"), filepath.Join(run, "flow.ts"))

	s := startStack(t)
	u := s.newUser(t)
	key := "sk-admin-e2eTSCLIENT" + randomHex(8)
	out := exe(node, filepath.Join(run, "out", "flow.js"), s.apiURL, u.token, key)
	var got struct {
		Connection, From, To, Month, Overall, CSV string
		GroupBy                                   []string `json:"group_by"`
		Rows                                      []map[string]any
		Totals                                    map[string]any
		HasMore                                   bool    `json:"has_more"`
		NextCursor                                *string `json:"next_cursor"`
	}
	require.NoError(t, json.Unmarshal(out, &got), string(out))
	require.Equal(t, []string{"day", "model"}, got.GroupBy, "the array reached the server whole")
	require.NotEmpty(t, got.Rows)
	for _, r := range got.Rows {
		require.NotEmpty(t, r["day"])
		require.Contains(t, r, "model")
	}

	// The same query from Go, comma-separated: the same rows.
	var want struct {
		Data   []map[string]any
		Totals map[string]any
	}
	require.Equal(t, http.StatusOK, s.call(t, u, http.MethodGet, "/v1/usage?from="+got.From+"&to="+got.To+"&group_by=day,model", nil, &want))
	require.Equal(t, want.Data, got.Rows)
	require.Equal(t, want.Totals, got.Totals)

	require.False(t, got.HasMore, "one connection fits a page of one")
	require.Nil(t, got.NextCursor)
	require.True(t, strings.HasPrefix(got.CSV, "day,model,"), got.CSV)
	require.Len(t, strings.Split(strings.TrimSpace(got.CSV), "\n"), len(got.Rows)+1)
	require.Regexp(t, `^[0-9]{4}-[0-9]{2}$`, got.Month)
	require.Equal(t, "all", got.Overall)
	require.NotContains(t, string(out), key[len("sk-admin-"):], "the key is never returned")
}
