package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/auth"
	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// A remembered token is answered exactly as a full verification answers
// it: at every instant around its expiry, a verifier that has seen it
// before (and remembers it) and a fresh one agree, to the nanosecond at
// exp + leeway.
func TestRememberedTokensExpireExactlyAsVerifiedOnes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	cfg := auth.Config{HS256Secret: []byte(secret), Now: clk.Now}
	seen, err := auth.NewVerifier(cfg)
	require.NoError(t, err)
	iat := clk.Now().Truncate(time.Second)
	tok := hs(t, authtest.Token{IssuedAt: iat, Email: "a@example.com"}, secret)
	first, err := seen.Verify(ctx, tok)
	require.NoError(t, err)
	require.Equal(t, 1, auth.Remembered(seen))

	exp := iat.Add(time.Hour) // authtest's default lifetime
	for _, at := range []time.Duration{-time.Minute, 29 * time.Second, 30*time.Second - time.Nanosecond, 30 * time.Second, time.Hour} {
		clk.mu.Lock()
		clk.t = exp.Add(at)
		clk.mu.Unlock()
		fresh, err := auth.NewVerifier(cfg)
		require.NoError(t, err)
		_, want := fresh.Verify(ctx, tok)
		got, err := seen.Verify(ctx, tok)
		require.Equal(t, want == nil, err == nil, "exp%+v: remembered and full verification must agree", at)
		if err == nil {
			require.Equal(t, first, got, "the same caller, claims byte for byte")
		} else {
			requireUnauthorized(t, err)
		}
	}
}

// Only accepted tokens are remembered: a forged, anonymous or expired
// token is refused again at every use, and nothing about it is kept.
func TestOnlyAcceptedTokensAreRemembered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(secret)})
	require.NoError(t, err)
	forged := hs(t, authtest.Token{}, secret+"x")
	anonymous := hs(t, authtest.Token{Anonymous: true}, secret)
	expired := hs(t, authtest.Token{IssuedAt: time.Now().Add(-2 * time.Hour)}, secret)
	for range 3 {
		_, err := v.Verify(ctx, forged)
		requireUnauthorized(t, err)
		_, err = v.Verify(ctx, expired)
		requireUnauthorized(t, err)
		_, err = v.Verify(ctx, anonymous)
		require.Equal(t, tokka.CodeForbidden, tokka.ErrorCode(err))
	}
	require.Zero(t, auth.Remembered(v))
}

// A token verified by a JWKS key is taken on trust only while the key set
// that verified it is current: when the project withdraws the key, the
// token stops verifying at the refresh that learns it, as an unseen token
// signed by that key does, even though it is remembered and not expired.
func TestRememberedTokensFollowTheKeySet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	old, next := mustKey(t, "ES256", "old"), mustKey(t, "ES256", "next")
	js := newJWKSServer(t, old, next)
	clk := newClock()
	v, err := auth.NewVerifier(auth.Config{JWKSURL: js.url, Now: clk.Now, JWKS: auth.JWKSOptions{
		RefreshAfter: 5 * time.Minute, MaxAge: 10 * time.Minute, MinInterval: 30 * time.Second}})
	require.NoError(t, err)
	tok := sign(t, authtest.Token{IssuedAt: clk.Now()}, old)
	kept := sign(t, authtest.Token{IssuedAt: clk.Now()}, next)
	for _, tk := range []string{tok, kept} {
		_, err = v.Verify(ctx, tk)
		require.NoError(t, err)
	}
	require.Equal(t, 2, auth.Remembered(v))

	js.Set(next) // the project withdraws "old"
	_, err = v.Verify(ctx, tok)
	require.NoError(t, err, "until the keys are refreshed, as without remembering")
	clk.Advance(5 * time.Minute)
	require.Eventually(t, func() bool {
		_, err := v.Verify(ctx, tok)
		return err != nil
	}, 5*time.Second, 10*time.Millisecond, "withdrawn at the refresh")
	_, err = v.Verify(ctx, tok)
	requireUnauthorized(t, err)
	_, err = v.Verify(ctx, kept)
	require.NoError(t, err, "a key still published keeps verifying")

	// The Auth server goes away: past MaxAge nothing is trusted, remembered
	// or not.
	js.down.Store(true)
	clk.Advance(10 * time.Minute)
	_, err = v.Verify(ctx, kept)
	requireUnauthorized(t, err)
}

// However many distinct tokens arrive, the verifier remembers at most
// MaxRemembered of them, and every one still verifies.
func TestRememberedTokensAreBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(secret)})
	require.NoError(t, err)
	for i := range auth.MaxRemembered + 50 {
		_, err := v.Verify(ctx, hs(t, authtest.Token{IssuedAt: time.Now().Add(-time.Duration(i) * time.Millisecond)}, secret))
		require.NoError(t, err)
		require.LessOrEqual(t, auth.Remembered(v), auth.MaxRemembered)
	}
	require.Positive(t, auth.Remembered(v))
}
