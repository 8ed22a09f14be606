package keyring_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/keyring"
)

// TestRetiredKeysOfExactlyMinKeyLenAreAccepted pins the retired keys' length
// bound where TestShortKeysRefused pins the current key's: MinKeyLen bytes
// is enough, one fewer is not (scripts/mutate found this bound unguarded).
func TestRetiredKeysOfExactlyMinKeyLenAreAccepted(t *testing.T) {
	t.Parallel()
	exact := strings.Repeat("r", keyring.MinKeyLen)
	kr, err := keyring.New(keyA, []string{exact})
	require.NoError(t, err)
	require.Len(t, kr.KIDs(), 2)
	_, err = keyring.New(keyA, []string{exact[1:]})
	require.ErrorIs(t, err, keyring.ErrKeyTooShort)
}
