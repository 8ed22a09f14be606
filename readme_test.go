package openapi_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
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

// setting is one env-tagged field of a binary's Config struct.
type setting struct {
	name, def string
	hasDef    bool
}

// configSettings reads the env and envDefault tags of the Config struct in
// cmd/<binary> (a main package, so its tags are read from the source, with
// the same reflect.StructTag rules the library uses).
func configSettings(t *testing.T, binary string) map[string]setting {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("cmd", binary, "*.go"))
	require.NoError(t, err)
	out := map[string]setting{}
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok || ts.Name.Name != "Config" {
				return true
			}
			for _, fld := range ts.Type.(*ast.StructType).Fields.List {
				if fld.Tag == nil {
					continue
				}
				tag := reflect.StructTag(strings.Trim(fld.Tag.Value, "`"))
				name, _, _ := strings.Cut(tag.Get("env"), ",")
				if name == "" || name == "-" {
					continue
				}
				def, has := tag.Lookup("envDefault")
				out[name] = setting{name: name, def: def, hasDef: has}
			}
			return false
		})
	}
	require.NotEmpty(t, out, "cmd/%s has no Config struct with env tags", binary)
	return out
}

// readmeTable returns the README's settings table for a binary: variable →
// its default cell. A row may name several variables (`A` / `B`).
func readmeTable(t *testing.T, readme, binary string) map[string]string {
	t.Helper()
	start := strings.Index(readme, "**"+binary+"**")
	require.GreaterOrEqual(t, start, 0, "README has no **%s** settings table", binary)
	rest := readme[start:]
	rest = rest[strings.Index(rest, "\n|"):]
	out := map[string]string{}
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
	for _, line := range strings.Split(rest, "\n")[1:] {
		if !strings.HasPrefix(line, "|") {
			if len(out) > 0 {
				break
			}
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 4 || strings.HasPrefix(cells[1], "---") || strings.TrimSpace(cells[1]) == "variable" {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			out[m[1]] = strings.TrimSpace(cells[2])
		}
	}
	return out
}

// TestReadmeTablesFollowTheConfigStructs: each binary's table lists exactly
// the settings its Config struct reads, each with the default its envDefault
// tag gives (`${X}` reads "`X`"); a setting without a default shows none
// (—, off, none, or words saying how it is derived), never a value of its
// own. Settings both binaries read must have the same default in both.
func TestReadmeTablesFollowTheConfigStructs(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("README.md")
	require.NoError(t, err)
	readme := string(raw)
	lone := regexp.MustCompile("^`[^`]*`$")
	structs := map[string]map[string]setting{}
	for _, binary := range []string{"api", "syncer"} {
		settings, table := configSettings(t, binary), readmeTable(t, readme, binary)
		structs[binary] = settings
		for name, s := range settings {
			cell, ok := table[name]
			require.True(t, ok, "README's %s table does not list %s", binary, name)
			switch {
			case s.hasDef && strings.HasPrefix(s.def, "${"):
				require.Equal(t, "`"+strings.Trim(s.def, "${}")+"`", cell, "%s: README's default for %s", binary, name)
			case s.hasDef:
				require.True(t, strings.HasPrefix(cell, "`"+s.def+"`"), "%s: README says %s defaults to %s; its envDefault tag says %q", binary, name, cell, s.def)
			default:
				require.False(t, lone.MatchString(cell) && !regexp.MustCompile("^`[A-Z_]+`$").MatchString(cell),
					"%s: README gives %s the default %s, but its Config field has no envDefault", binary, name, cell)
			}
		}
		for name := range table {
			require.Contains(t, settings, name, "README's %s table lists %s, which its Config struct does not read", binary, name)
		}
	}
	for name, a := range structs["api"] {
		if s, ok := structs["syncer"][name]; ok {
			require.Equal(t, s.def, a.def, "%s is read by both binaries with different defaults", name)
		}
	}
}
