package auth_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/auth"
	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/logtest"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// payloadOf returns tok's claim set as JSON text, for tests that splice
// claims into it by hand.
func payloadOf(t *testing.T, tok authtest.Token) string {
	t.Helper()
	raw, err := json.Marshal(tok.Claims())
	require.NoError(t, err)
	return string(raw)
}

// splice inserts members (without braces) at the start of the object.
func splice(payload, members string) string {
	return "{" + members + "," + strings.TrimPrefix(payload, "{")
}

// TestClaimsAreReadExactlyAsPostgresReadsThem: encoding/json matches names
// case-insensitively and keeps the last of two equal names, while RLS reads
// request.jwt.claims with jsonb ->> 'sub'. A correctly signed payload that
// the two could read differently ("sub":A,"SUB":B made the api act as B
// while the database saw A) is refused outright.
func TestClaimsAreReadExactlyAsPostgresReadsThem(t *testing.T) {
	t.Parallel()
	v, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(secret)})
	require.NoError(t, err)
	ctx := context.Background()
	a, b := uuid.NewString(), uuid.NewString()
	base := payloadOf(t, authtest.Token{Subject: a, Email: "a@example.com"})

	u, err := v.Verify(ctx, authtest.HS256Raw(base, []byte(secret)))
	require.NoError(t, err, "control: the untouched payload verifies")
	require.Equal(t, a, u.ID)

	withMetadata := func(meta string) string {
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(base), &m))
		delete(m, "user_metadata")
		raw, err := json.Marshal(m)
		require.NoError(t, err)
		return splice(string(raw), `"user_metadata":`+meta)
	}
	for name, payload := range map[string]string{
		"sub then SUB":              strings.Replace(base, `"sub":"`+a+`"`, `"sub":"`+a+`","SUB":"`+b+`"`, 1),
		"SUB then sub":              splice(base, `"SUB":"`+b+`"`),
		"Sub alone":                 strings.Replace(base, `"sub":"`+a+`"`, `"Sub":"`+b+`"`, 1),
		"sub twice":                 strings.Replace(base, `"sub":"`+a+`"`, `"sub":"`+a+`","sub":"`+b+`"`, 1),
		"sub twice, other first":    splice(base, `"sub":"`+b+`"`),
		"long s (U+017F) for s":     splice(base, `"ſub":"`+b+`"`),
		"role variant":              splice(base, `"ROLE":"service_role"`),
		"email variant":             splice(base, `"Email":"victim@example.com"`),
		"session_id twice":          splice(base, `"session_id":"`+uuid.NewString()+`"`),
		"is_anonymous variant":      splice(base, `"IS_ANONYMOUS":true`),
		"exp twice":                 splice(base, `"exp":1`),
		"aud variant":               splice(base, `"AUD":"anon"`),
		"custom claim twice":        splice(splice(base, `"x_tenant":"one"`), `"x_tenant":"two"`),
		"custom claim by case":      splice(splice(base, `"x_tenant":"one"`), `"X_Tenant":"two"`),
		"email_verified twice":      withMetadata(`{"email_verified":false,"email_verified":true}`),
		"email_verified variant":    withMetadata(`{"email_verified":false,"Email_Verified":true}`),
		"trailing object":           base + `{"sub":"` + b + `"}`,
		"escaped NUL (jsonb error)": splice(base, `"x_nul":"\u0000"`),
		"invalid UTF-8":             splice(base, "\"x_bad\":\"\xff\""),
	} {
		_, err := v.Verify(ctx, authtest.HS256Raw(payload, []byte(secret)))
		requireUnauthorized(t, err, name)
	}
}

func TestAnonymousUsersAreRefusedUnlessAllowed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tok := hs(t, authtest.Token{Anonymous: true}, secret)

	strict, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(secret)})
	require.NoError(t, err)
	_, err = strict.Verify(ctx, tok)
	require.Error(t, err)
	require.Equal(t, tokka.CodeForbidden, tokka.ErrorCode(err), "a valid token of an anonymous user is forbidden, not invalid")
	require.Contains(t, err.Error(), "anonymous")

	lenient, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(secret), AllowAnonymous: true})
	require.NoError(t, err)
	_, err = lenient.Verify(ctx, tok)
	require.NoError(t, err, "ALLOW_ANONYMOUS_USERS lets them in")

	// A forged anonymous token is still just invalid.
	_, err = strict.Verify(ctx, hs(t, authtest.Token{Anonymous: true}, secret+"x"))
	requireUnauthorized(t, err)
}

func TestEmailVerifiedComesFromUserMetadata(t *testing.T) {
	t.Parallel()
	v, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(secret)})
	require.NoError(t, err)
	ctx := context.Background()
	u, err := v.Verify(ctx, hs(t, authtest.Token{Email: "a@example.com"}, secret))
	require.NoError(t, err)
	require.True(t, u.EmailVerified)
	u, err = v.Verify(ctx, hs(t, authtest.Token{Email: "a@example.com", EmailUnverified: true}, secret))
	require.NoError(t, err)
	require.False(t, u.EmailVerified)

	// Anything but the JSON value true is not verified.
	base := payloadOf(t, authtest.Token{Email: "a@example.com"})
	for _, val := range []string{`"true"`, `1`, `null`} {
		p := strings.Replace(base, `"email_verified":true`, `"email_verified":`+val, 1)
		u, err := v.Verify(ctx, authtest.HS256Raw(p, []byte(secret)))
		require.NoError(t, err, val)
		require.False(t, u.EmailVerified, val)
	}
}

// TestRefusalsAreLoggedAtDebugWithoutTheToken: an operator chasing 401s
// turns on debug logging and reads why each token was refused; the line
// never carries the token or a claim value.
func TestRefusalsAreLoggedAtDebugWithoutTheToken(t *testing.T) {
	t.Parallel()
	const issuer = "https://ref.supabase.co/auth/v1"
	logs := &logtest.Buffer{}
	log := zerolog.New(logs).Level(zerolog.DebugLevel)
	v, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(secret), Issuer: issuer, Log: &log})
	require.NoError(t, err)
	ctx := context.Background()
	sub := uuid.NewString()
	const evilIssuer = "https://evil-issuer.example/auth/v1"
	cases := map[string]struct {
		token  string
		reason string
	}{
		"wrong issuer": {hs(t, authtest.Token{Subject: sub, Issuer: evilIssuer}, secret), "issuer"},
		"no issuer":    {hs(t, authtest.Token{Subject: sub}, secret), "issuer"},
		"expired": {hs(t, authtest.Token{Subject: sub, Issuer: issuer, IssuedAt: time.Now().Add(-3 * time.Hour)}, secret),
			"expired"},
		"bad signature":  {hs(t, authtest.Token{Subject: sub, Issuer: issuer}, secret+"-other"), "signature"},
		"duplicate sub":  {authtest.HS256Raw(splice(payloadOf(t, authtest.Token{Subject: sub, Issuer: issuer}), `"SUB":"`+uuid.NewString()+`"`), []byte(secret)), "claim"},
		"wrong role":     {hs(t, authtest.Token{Subject: sub, Issuer: issuer, Role: "service_role"}, secret), "role"},
		"anonymous":      {hs(t, authtest.Token{Subject: sub, Issuer: issuer, Anonymous: true}, secret), "anonymous"},
		"not a token":    {"abc.def.ghi", "malformed"},
		"wrong audience": {hs(t, authtest.Token{Subject: sub, Issuer: issuer, Audience: "anon"}, secret), "audience"},
	}
	for name, tc := range cases {
		before := len(logs.String())
		_, err := v.Verify(ctx, tc.token)
		require.Error(t, err, name)
		line := logs.String()[before:]
		require.Contains(t, line, `"level":"debug"`, name)
		require.Contains(t, line, "token refused", name)
		require.Contains(t, line, tc.reason, name)
	}
	all := logs.String()
	require.NotContains(t, all, sub, "claim values are never logged")
	require.NotContains(t, all, evilIssuer)
	for _, tc := range cases {
		for _, part := range strings.Split(tc.token, ".") {
			if len(part) >= 16 {
				require.NotContains(t, all, part, "tokens are never logged")
			}
		}
	}

	// At info level nothing is written for a refusal.
	quiet := &logtest.Buffer{}
	infoLog := zerolog.New(quiet).Level(zerolog.InfoLevel)
	v, err = auth.NewVerifier(auth.Config{HS256Secret: []byte(secret), Issuer: issuer, Log: &infoLog})
	require.NoError(t, err)
	_, err = v.Verify(ctx, cases["wrong issuer"].token)
	require.Error(t, err)
	require.Empty(t, quiet.String())
}

// TestLiveSessionReportsTheConfirmedEmail: the session check also returns
// the address the Auth server holds and whether it is confirmed, which
// decides whether budget emails may go there.
func TestLiveSessionReportsTheConfirmedEmail(t *testing.T) {
	t.Parallel()
	b := setupSessions(t)
	ctx := context.Background()
	u := tokka.User{ID: uuid.NewString()}
	tok := hs(t, authtest.Token{Subject: u.ID, Email: "live@example.com"}, secret)
	live, err := b.checker.Live(ctx, u, tok)
	require.NoError(t, err)
	require.Equal(t, "live@example.com", live.Email)
	require.True(t, live.EmailConfirmed)

	b.fake.Unconfirm(u.ID)
	live, err = b.checker.Live(ctx, u, tok)
	require.NoError(t, err)
	require.Equal(t, "live@example.com", live.Email)
	require.False(t, live.EmailConfirmed, "email_confirmed_at null")

	b.fake.DeleteUser(u.ID)
	_, err = b.checker.Live(ctx, u, tok)
	require.ErrorIs(t, err, auth.ErrSessionEnded)
}
