package secret_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/secret"
)

// TestHasPrefixAtEveryLength pins HasPrefix at the lengths around the
// prefix's own: a key that is exactly the prefix has it, one byte shorter
// does not (scripts/mutate found the boundary unguarded).
func TestHasPrefixAtEveryLength(t *testing.T) {
	t.Parallel()
	const prefix = "sk-admin-"
	require.True(t, secret.FromString(prefix).HasPrefix(prefix), "a key equal to the prefix has it")
	require.False(t, secret.FromString(prefix[:len(prefix)-1]).HasPrefix(prefix), "one byte short")
	require.True(t, secret.FromString(prefix+"x").HasPrefix(prefix))
	require.True(t, secret.FromString("").HasPrefix(""))
	require.False(t, (*secret.Key)(nil).HasPrefix(prefix))
	wiped := secret.FromString(prefix + "x")
	wiped.Wipe()
	require.False(t, wiped.HasPrefix(prefix), "a wiped key has no prefix")
}

// TestHintShowsASuffixOnlyFromTwelveHiddenBytes pins the one place a key's
// characters are shown: the last four appear only once at least twelve
// bytes after the prefix stay hidden, so a short key is never mostly shown.
func TestHintShowsASuffixOnlyFromTwelveHiddenBytes(t *testing.T) {
	t.Parallel()
	const prefix = "sk-admin-"
	atBoundary := prefix + strings.Repeat("a", 8) + "WXYZ" // 12 bytes after the prefix
	require.Equal(t, prefix+"…WXYZ", secret.FromString(atBoundary).Hint(prefix))
	require.Equal(t, prefix+"…", secret.FromString(atBoundary[:len(atBoundary)-1]).Hint(prefix), "11 bytes after the prefix")
	require.Equal(t, prefix+"…", (*secret.Key)(nil).Hint(prefix))
}
