package auth_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/auth"
)

// TestSecretOfExactlyMinSecretLengthIsAccepted pins the secret-length bound
// from the accepting side (TestNewVerifierRefusesUnsafeConfig pins 31):
// scripts/mutate found "< MinSecretLength" could become "<=" unnoticed.
func TestSecretOfExactlyMinSecretLengthIsAccepted(t *testing.T) {
	t.Parallel()
	_, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(strings.Repeat("x", auth.MinSecretLength))})
	require.NoError(t, err)
}
