package seal_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/seal"
)

// FuzzParseBlob checks that ParseBlob never panics, fails only with
// ErrCannotOpen, and that anything it accepts serializes back to the exact
// input (one spelling per blob, so nothing can be smuggled in a variant).
// The seed corpus in testdata/fuzz/FuzzParseBlob holds valid v1 and v2
// blobs and near misses.
func FuzzParseBlob(f *testing.F) {
	f.Add(validV1())
	f.Add(validV2(f))
	f.Add("v2:0123456789abcdef::")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := seal.ParseBlob(s)
		if err != nil {
			require.ErrorIs(t, err, seal.ErrCannotOpen)
			require.Equal(t, seal.ErrCannotOpen.Error(), err.Error())
			return
		}
		require.Equal(t, s, b.String())
		require.Contains(t, []int{1, 2}, b.Version)
		switch b.Version {
		case 1:
			require.Len(t, b.IV, seal.V1IVSize)
			require.Len(t, b.Tag, seal.TagSize)
			require.NotEmpty(t, b.Ciphertext)
		case 2:
			require.True(t, strings.HasPrefix(s, "v2:"))
			require.Len(t, b.KID, seal.KIDSize)
			require.Len(t, b.Enc, seal.EncSize)
			require.GreaterOrEqual(t, len(b.Ciphertext), seal.TagSize)
		}
	})
}
