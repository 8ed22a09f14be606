package client_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestGeneratedClientIsCurrent runs this package's go:generate command (the
// pinned oapi-codegen, from the module proxy on first use) with the output
// sent to a temporary directory, and fails when the result differs from the
// committed client.gen.go.
func TestGeneratedClientIsCurrent(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("generate.go")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^//go:generate (.+)$`).FindSubmatch(src)
	require.NotNil(t, m, "generate.go has no go:generate line")
	args := strings.Fields(string(m[1]))
	require.Equal(t, "go", args[0])
	// The same command, unchanged, in a copy of the layout it expects:
	// <tmp>/e2e/client/oapi-codegen.yaml and <tmp>/openapi.yaml.
	root := t.TempDir()
	dir := filepath.Join(root, "e2e", "client")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for from, to := range map[string]string{
		"oapi-codegen.yaml":  filepath.Join(dir, "oapi-codegen.yaml"),
		"../../openapi.yaml": filepath.Join(root, "openapi.yaml"),
	} {
		b, err := os.ReadFile(from)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(to, b, 0o644))
	}
	cmd := exec.Command("go", args[1:]...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Run(), "oapi-codegen failed:\n%s", stderr.String())
	out := filepath.Join(dir, "client.gen.go")

	want, err := os.ReadFile(out)
	require.NoError(t, err)
	got, err := os.ReadFile("client.gen.go")
	require.NoError(t, err)
	if !bytes.Equal(want, got) {
		t.Fatal("e2e/client/client.gen.go is not what openapi.yaml generates; run `go generate ./e2e/client` and commit the result")
	}
}

// TestGeneratedClientHasNoNilConstant: a nullable enum written with null
// among its values makes oapi-codegen emit a constant "<nil>", which a
// client could send as a value; openapi.yaml writes nullable enums with
// nullable: true instead.
func TestGeneratedClientHasNoNilConstant(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("client.gen.go")
	require.NoError(t, err)
	require.NotContains(t, string(src), `"<nil>"`)
}
