package seal_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
)

// TestParseBlobAtTheSizeLimits pins every length bound of ParseBlob at the
// value itself and one past it (scripts/mutate found the bounds unguarded):
// the largest key Seal accepts gives the longest blob ParseBlob accepts, a
// v2 ciphertext may be a bare tag, and a v1 ciphertext may be MaxKeySize
// bytes.
func TestParseBlobAtTheSizeLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	longest, err := b.pub.Seal(secret.New(make([]byte, seal.MaxKeySize)), b.bind)
	require.NoError(t, err)
	require.Len(t, longest, len("v2:")+seal.KIDSize+1+2*seal.EncSize+1+2*(seal.MaxKeySize+seal.TagSize))
	p, err := seal.ParseBlob(longest)
	require.NoError(t, err, "the blob of a MaxKeySize key")
	require.Len(t, p.Ciphertext, seal.MaxKeySize+seal.TagSize)
	require.Equal(t, longest, p.String())
	_, err = seal.ParseBlob(longest + "00")
	require.ErrorIs(t, err, seal.ErrCannotOpen, "one ciphertext byte too many")

	parts := strings.Split(longest, ":")
	bareTag := strings.Join(append(parts[:3:3], strings.Repeat("ab", seal.TagSize)), ":")
	p, err = seal.ParseBlob(bareTag)
	require.NoError(t, err, "a v2 ciphertext of exactly one tag")
	require.Len(t, p.Ciphertext, seal.TagSize)
	_, err = seal.ParseBlob(bareTag[:len(bareTag)-2])
	require.ErrorIs(t, err, seal.ErrCannotOpen, "a v2 ciphertext shorter than a tag")

	v1 := strings.Repeat("00", seal.V1IVSize) + ":" + strings.Repeat("11", seal.TagSize) + ":"
	p, err = seal.ParseBlob(v1 + strings.Repeat("22", seal.MaxKeySize))
	require.NoError(t, err, "a v1 ciphertext of MaxKeySize bytes")
	require.Len(t, p.Ciphertext, seal.MaxKeySize)
	_, err = seal.ParseBlob(v1 + strings.Repeat("22", seal.MaxKeySize+1))
	require.ErrorIs(t, err, seal.ErrCannotOpen)
}
