package auth_test

import (
	"context"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/auth"
	"github.com/tokka-dev/tokka/pkg/authtest"
)

// TestOnlyHS256UsesTheSecret: HS384 and HS512 tokens signed with the real
// project secret are refused, with and without a JWKS configured. Supabase
// signs with HS256 only, and the two guards against the other HMAC algs
// (the parser's allow-list and the keyfunc's HS256 check) must each hold on
// their own: this test fails only when both are gone, which the mutation
// run showed no other test noticed.
func TestOnlyHS256UsesTheSecret(t *testing.T) {
	t.Parallel()
	js := newJWKSServer(t, mustKey(t, "ES256", "es-1"))
	ctx := context.Background()
	for name, cfg := range map[string]auth.Config{
		"secret only":     {HS256Secret: []byte(secret)},
		"secret and JWKS": {HS256Secret: []byte(secret), JWKSURL: js.url},
	} {
		v, err := auth.NewVerifier(cfg)
		require.NoError(t, err, name)
		_, err = v.Verify(ctx, hs(t, authtest.Token{}, secret))
		require.NoError(t, err, "%s: the HS256 control must pass", name)
		for _, m := range []*jwt.SigningMethodHMAC{jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
			tok, err := jwt.NewWithClaims(m, authtest.Token{}.Claims()).SignedString([]byte(secret))
			require.NoError(t, err)
			_, err = v.Verify(ctx, tok)
			requireUnauthorized(t, err, "%s: %s signed with the project secret", name, m.Alg())
		}
	}
}
