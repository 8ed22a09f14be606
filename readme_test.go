package openapi_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// notEnv are upper-case string constants in cmd/ that are not environment
// variables.
var notEnv = map[string]bool{"CERTIFICATE": true, "HS256": true}

// TestReadmeDocumentsEveryVariable fails when a binary reads an environment
// variable that the README's Configuration section does not list. Every
// upper-case string constant in cmd/ counts as a variable unless notEnv
// names it: a new constant must be documented or listed there.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	start := strings.Index(string(readme), "## Configuration")
	require.GreaterOrEqual(t, start, 0)
	end := strings.Index(string(readme)[start+1:], "\n## ")
	require.Positive(t, end)
	section := string(readme)[start : start+1+end]

	files, err := filepath.Glob("cmd/*/*.go")
	require.NoError(t, err)
	lit := regexp.MustCompile(`"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|[A-Z]{4,})"`)
	seen := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range lit.FindAllStringSubmatch(string(src), -1) {
			if !notEnv[m[1]] {
				seen[m[1]] = true
			}
		}
	}
	require.Contains(t, seen, "DATABASE_URL", "the scan finds variables")
	for v := range seen {
		require.Contains(t, section, "`"+v+"`", "README's Configuration section does not list %s", v)
	}
}
