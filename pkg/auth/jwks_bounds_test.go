package auth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/auth"
	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/logtest"
)

// TestJWKSOptionsMayMeetTheirBounds: RefreshAfter may equal MaxAge and
// MinInterval may equal RefreshAfter; only exceeding them is refused.
func TestJWKSOptionsMayMeetTheirBounds(t *testing.T) {
	t.Parallel()
	url := "http://127.0.0.1:1/jwks.json"
	for _, o := range []auth.JWKSOptions{
		{MaxAge: 10 * time.Minute, RefreshAfter: 10 * time.Minute, MinInterval: time.Minute},
		{MaxAge: 10 * time.Minute, RefreshAfter: time.Minute, MinInterval: time.Minute},
	} {
		_, err := auth.NewVerifier(auth.Config{JWKSURL: url, JWKS: o})
		require.NoError(t, err, "%+v", o)
	}
	for _, o := range []auth.JWKSOptions{
		{MaxAge: 5 * time.Minute, RefreshAfter: 5*time.Minute + time.Second, MinInterval: time.Minute},
		{MaxAge: 10 * time.Minute, RefreshAfter: time.Minute, MinInterval: time.Minute + time.Second},
	} {
		_, err := auth.NewVerifier(auth.Config{JWKSURL: url, JWKS: o})
		require.Error(t, err, "%+v", o)
	}
}

// TestJWKSCacheTimesAreExact drives the cache with a fake clock to each of
// its bounds exactly: an unknown kid may fetch once MinInterval has passed
// to the nanosecond, keys are refreshed once they are RefreshAfter old, and
// at exactly MaxAge they are no longer trusted.
func TestJWKSCacheTimesAreExact(t *testing.T) {
	t.Parallel()
	k := mustKey(t, "ES256", "k")
	js := newJWKSServer(t, k)
	clk := newClock()
	v, err := auth.NewVerifier(auth.Config{JWKSURL: js.url, Now: clk.Now, JWKS: auth.JWKSOptions{
		RefreshAfter: 5 * time.Minute, MaxAge: 10 * time.Minute, MinInterval: 30 * time.Second}})
	require.NoError(t, err)
	ctx := context.Background()
	verify := func(k *authtest.Key) error {
		_, err := v.Verify(ctx, sign(t, authtest.Token{IssuedAt: clk.Now()}, k))
		return err
	}
	require.NoError(t, verify(k))
	require.EqualValues(t, 1, js.Requests())

	clk.Advance(30 * time.Second)
	requireUnauthorized(t, verify(mustKey(t, "ES256", "unknown")))
	require.EqualValues(t, 2, js.Requests(), "an unknown kid fetches at exactly MinInterval")

	// Keys fetched at t+30s are RefreshAfter old at t+5m30s: the next
	// token is served from them and starts a refresh in the background.
	clk.Advance(5 * time.Minute)
	require.NoError(t, verify(k))
	require.Eventually(t, func() bool { return js.Requests() == 3 }, 10*time.Second, 5*time.Millisecond,
		"keys exactly RefreshAfter old are refreshed")
	// An unknown kid waits for a fetch in flight (and starts none, within
	// MinInterval): once it returns, the refreshed keys are in place.
	requireUnauthorized(t, verify(mustKey(t, "ES256", "unknown")))
	require.EqualValues(t, 3, js.Requests())

	// The Auth server goes away; at exactly MaxAge after the last fetch
	// the keys are no longer trusted.
	js.down.Store(true)
	clk.Advance(10 * time.Minute)
	requireUnauthorized(t, verify(k), "keys exactly MaxAge old")
}

// TestJWKSDocumentAndEntryLimitsAreExact: a key set of exactly 1 MiB is
// read, a kid of 128 characters is kept, and a key without "use" or
// "key_ops" (both optional in RFC 7517) is a signing key.
func TestJWKSDocumentAndEntryLimitsAreExact(t *testing.T) {
	t.Parallel()
	longKID := mustKey(t, "ES256", strings.Repeat("k", 128))
	bare := mustKey(t, "RS256", "bare")
	bareJWK := bare.JWK()
	delete(bareJWK, "use")
	delete(bareJWK, "key_ops")
	doc, err := json.Marshal(map[string]any{"keys": []map[string]any{longKID.JWK(), bareJWK}})
	require.NoError(t, err)
	const max = 1 << 20
	padded := append(doc[:len(doc)-1:len(doc)-1], []byte(strings.Repeat(" ", max-len(doc))+"}")...)
	require.Len(t, padded, max)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(padded) }))
	t.Cleanup(srv.Close)
	v, err := auth.NewVerifier(auth.Config{JWKSURL: srv.URL})
	require.NoError(t, err)
	for _, k := range []*authtest.Key{longKID, bare} {
		_, err = v.Verify(context.Background(), sign(t, authtest.Token{}, k))
		require.NoError(t, err, k.KID)
	}
}

// TestJWKSFetchIntervalDefaultsAndSettings: with default options an unknown
// kid fetches at most once per 30 seconds, and a configured MinInterval is
// used as given.
func TestJWKSFetchIntervalDefaultsAndSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts     auth.JWKSOptions
		interval time.Duration
	}{
		{auth.JWKSOptions{}, 30 * time.Second},
		{auth.JWKSOptions{MinInterval: time.Minute}, time.Minute},
	} {
		k := mustKey(t, "ES256", "k")
		js := newJWKSServer(t, k)
		clk := newClock()
		v, err := auth.NewVerifier(auth.Config{JWKSURL: js.url, Now: clk.Now, JWKS: tc.opts})
		require.NoError(t, err)
		unknown := func() {
			_, err := v.Verify(context.Background(), sign(t, authtest.Token{IssuedAt: clk.Now()}, mustKey(t, "ES256", "unknown")))
			requireUnauthorized(t, err)
		}
		_, err = v.Verify(context.Background(), sign(t, authtest.Token{IssuedAt: clk.Now()}, k))
		require.NoError(t, err)
		for i := 0; i < 5; i++ {
			unknown()
		}
		clk.Advance(tc.interval - time.Second)
		unknown()
		require.EqualValues(t, 1, js.Requests(), "no fetch within %s", tc.interval)
		clk.Advance(time.Second)
		unknown()
		require.EqualValues(t, 2, js.Requests(), "one fetch once %s has passed", tc.interval)
	}
}

// TestKnownKidWithTheWrongAlgCostsNoFetch: a token naming a published kid
// under another algorithm than the key's is refused from the keys at hand;
// only an unknown kid may cause a fetch.
func TestKnownKidWithTheWrongAlgCostsNoFetch(t *testing.T) {
	t.Parallel()
	es := mustKey(t, "ES256", "es-1")
	js := newJWKSServer(t, es)
	clk := newClock()
	v, err := auth.NewVerifier(auth.Config{JWKSURL: js.url, Now: clk.Now})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = v.Verify(ctx, sign(t, authtest.Token{IssuedAt: clk.Now()}, es))
	require.NoError(t, err)
	clk.Advance(time.Minute) // a fetch would be allowed
	_, err = v.Verify(ctx, sign(t, authtest.Token{IssuedAt: clk.Now()}, mustKey(t, "RS256", "es-1")))
	requireUnauthorized(t, err)
	require.EqualValues(t, 1, js.Requests())
}

// TestMalformedJWKSEntriesAreDropped: an entry that does not decode as a JWK
// (here a "use" that is not a string) is dropped whole, even though the
// rest of it would be a usable key.
func TestMalformedJWKSEntriesAreDropped(t *testing.T) {
	t.Parallel()
	k := mustKey(t, "ES256", "malformed")
	jwk := k.JWK()
	jwk["use"] = 5
	doc, err := json.Marshal(map[string]any{"keys": []map[string]any{jwk}})
	require.NoError(t, err)
	js := newJWKSServer(t)
	js.SetRaw(doc)
	v, err := auth.NewVerifier(auth.Config{JWKSURL: js.url})
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), sign(t, authtest.Token{}, k))
	requireUnauthorized(t, err)
}

// TestFailedJWKSFetchIsLogged: a fetch that fails is logged (with the URL,
// never a token) so an operator sees why asymmetric tokens stop verifying.
func TestFailedJWKSFetchIsLogged(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	out := &logtest.Buffer{}
	log := zerolog.New(out)
	_, err := auth.NewVerifier(auth.Config{JWKSURL: srv.URL, Log: &log})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "could not refresh the JWKS") },
		10*time.Second, 5*time.Millisecond)
	require.Contains(t, out.String(), "status 503")
}
