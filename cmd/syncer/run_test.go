package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/anthropic"
	"github.com/tokka-dev/tokka/pkg/openai"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/syncer"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

const goodKey = "0123456789abcdef0123456789abcdef-syncer-test"

func TestPublicKeyIsWhatTheAPIParses(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"public-key"}, env("ENCRYPTION_KEY", goodKey), &out))
	pk, err := seal.ParsePublicKey(strings.TrimSpace(out.String()))
	require.NoError(t, err)
	require.Len(t, pk.KID(), 16)
	require.NotContains(t, out.String(), goodKey)

	// Deterministic: the same secret always gives the same public key.
	var again bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"public-key"}, env("ENCRYPTION_KEY", goodKey), &again))
	require.Equal(t, out.String(), again.String())
}

func TestConfigFailsFastWithOneClearLine(t *testing.T) {
	t.Parallel()
	db := "postgres://127.0.0.1:1/none"
	cases := []struct {
		name string
		args []string
		env  func(string) string
		want string
	}{
		{"no command", nil, env(), "no command given\nusage: syncer"},
		{"unknown command", []string{"sideways"}, env(), `unknown command "sideways"`},
		{"no key", []string{"once"}, env("DATABASE_URL", db), "ENCRYPTION_KEY is required"},
		{"short key", []string{"public-key"}, env("ENCRYPTION_KEY", "short"), "at least 32 bytes"},
		{"short retired key", []string{"public-key"}, env("ENCRYPTION_KEY", goodKey, "ENCRYPTION_KEYS_RETIRED", "tiny"), "at least 32 bytes"},
		{"no database", []string{"once"}, env("ENCRYPTION_KEY", goodKey), "DATABASE_URL is required"},
		{"bad interval", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "SYNC_INTERVAL", "soon"), "SYNC_INTERVAL"},
		{"zero concurrency", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "SYNC_CONCURRENCY", "0"), "SYNC_CONCURRENCY"},
		{"plain http provider", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "OPENAI_BASE_URL", "http://evil.example"), "OPENAI_BASE_URL"},
		{"pprof on every interface", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "PPROF_ADDR", ":6060"), "PPROF_ADDR:"},
		{"pprof on a public address", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "PPROF_ADDR", "0.0.0.0:6060"), "PPROF_ADDR:"},
		{"bad log level", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "LOG_LEVEL", "loud"), "LOG_LEVEL"},
		{"database down", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db), "cannot reach database"},
		{"stall time under the poll interval", []string{"run"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "SYNC_STALL_TIMEOUT", "4s"), "SYNC_STALL_TIMEOUT (4s) must be longer"},
		{"stall time under a lease renewal", []string{"run"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "SYNC_STALL_TIMEOUT", "3m"), "SYNC_STALL_TIMEOUT (3m0s) must be longer"},
		{"bad retry backoff", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "SYNC_RETRY_BACKOFF", "1m,soon"), "SYNC_RETRY_BACKOFF"},
		{"shrinking retry backoff", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "SYNC_RETRY_BACKOFF", "5m,1m"), "SYNC_RETRY_BACKOFF"},
		{"bad provider concurrency", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "PROVIDER_CONCURRENCY", "0"), "PROVIDER_CONCURRENCY must be a whole number from 1 to 1000"},
		{"negative anomaly threshold", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "ANOMALY_MIN_USD", "-1"), "ANOMALY_MIN_USD"},
		{"bad anomaly threshold", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "ANOMALY_MIN_USD", "ten"), "ANOMALY_MIN_USD"},
		{"zero reminder days", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "KEY_ROTATION_REMINDER_DAYS", "0"), "KEY_ROTATION_REMINDER_DAYS"},
		{"app URL not https", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "PUBLIC_APP_URL", "http://app.example.com"), "PUBLIC_APP_URL"},
		{"app URL relative", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "PUBLIC_APP_URL", "app.example.com"), "PUBLIC_APP_URL"},
		{"app URL with a query", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "PUBLIC_APP_URL", "https://app.example.com/?a=1"), "PUBLIC_APP_URL"},
		{"app URL with a user", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "PUBLIC_APP_URL", "https://u:p@app.example.com"), "PUBLIC_APP_URL"},
		{"app URL breaking a Slack link", []string{"once"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db, "PUBLIC_APP_URL", "https://app.example.com/a|b"), "PUBLIC_APP_URL"},
		{"rewrap without a database", []string{"rewrap"}, env("ENCRYPTION_KEY", goodKey), "DATABASE_URL is required"},
		{"rewrap, database down", []string{"rewrap"}, env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", db), "cannot reach database"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := run(context.Background(), tc.args, tc.env, &out)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), goodKey)
			if tc.name != "no command" && tc.name != "unknown command" {
				require.NotContains(t, err.Error(), "\n", "one line")
			}
		})
	}
}

func TestRetryBackoffSetting(t *testing.T) {
	t.Parallel()
	base := []string{"ENCRYPTION_KEY", goodKey, "DATABASE_URL", "postgres://127.0.0.1:1/none"}
	c, err := loadConfig(env(base...), needKeysAndDB)
	require.NoError(t, err)
	require.Equal(t, syncer.DefaultRetryBackoff(), c.Sync.RetryBackoff, "unset: the syncer's default (1m, 2m, 5m, 15m, 30m)")
	c, err = loadConfig(env(append(base, "SYNC_RETRY_BACKOFF", "30s, 1m,1m,10m")...), needKeysAndDB)
	require.NoError(t, err)
	require.Equal(t, []time.Duration{30 * time.Second, time.Minute, time.Minute, 10 * time.Minute}, c.Sync.RetryBackoff)
}

// TestStallTimeoutFollowsALongPoll: a daemon told to poll rarely (waking on
// NOTIFY instead) starts with the default stall time grown to three polls,
// while an explicit SYNC_STALL_TIMEOUT must still exceed the poll.
func TestStallTimeoutFollowsALongPoll(t *testing.T) {
	t.Parallel()
	base := []string{"ENCRYPTION_KEY", goodKey, "DATABASE_URL", "postgres://127.0.0.1:1/none"}
	c, err := loadConfig(env(base...), needKeysAndDB)
	require.NoError(t, err)
	require.Equal(t, 15*time.Minute, c.StallAfter)
	c, err = loadConfig(env(append(base, "SYNC_POLL_INTERVAL", "1h")...), needKeysAndDB)
	require.NoError(t, err)
	require.Equal(t, 3*time.Hour, c.StallAfter)
	_, err = loadConfig(env(append(base, "SYNC_POLL_INTERVAL", "1h", "SYNC_STALL_TIMEOUT", "30m")...), needKeysAndDB)
	require.ErrorContains(t, err, "SYNC_STALL_TIMEOUT (30m0s) must be longer")
}

// TestPublicAppURLSetting: PUBLIC_APP_URL is where Slack messages link to,
// kept without its trailing slash; plain http only for this machine.
func TestPublicAppURLSetting(t *testing.T) {
	t.Parallel()
	base := []string{"ENCRYPTION_KEY", goodKey, "DATABASE_URL", "postgres://127.0.0.1:1/none"}
	c, err := loadConfig(env(base...), needKeysAndDB)
	require.NoError(t, err)
	require.Empty(t, c.AppURL, "unset: no link")
	for in, want := range map[string]string{
		"https://app.tokka.dev/":       "https://app.tokka.dev",
		"https://tokka.example.com/ui": "https://tokka.example.com/ui",
		"http://localhost:5173":        "http://localhost:5173",
	} {
		c, err = loadConfig(env(append(base, "PUBLIC_APP_URL", in)...), needKeysAndDB)
		require.NoError(t, err, in)
		require.Equal(t, want, c.AppURL)
	}
}

// TestDefaultsAreThePackagesDefaults: the envDefault tags (what the README
// shows) and the defaults pkg/syncer gives a zero field are one set of
// numbers; SYNC_CONCURRENCY once said 16 here and 4 there.
func TestDefaultsAreThePackagesDefaults(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", "postgres://127.0.0.1:1/none"), needKeysAndDB)
	require.NoError(t, err)
	require.Equal(t, syncer.DefaultInterval, c.Sync.Interval)
	require.Equal(t, syncer.DefaultConcurrency, c.Sync.Concurrency)
	require.Equal(t, syncer.DefaultBackfillDays, c.Sync.BackfillDays)
	require.Equal(t, tokka.DefaultResyncDays, c.Sync.ResyncDays, "the api's provisional days default to the same")
	require.Equal(t, syncer.DefaultLeaseFor, c.Sync.LeaseFor)
	require.Equal(t, syncer.DefaultKeyRotationReminderDays, c.Sync.KeyRotationReminderDays)
	require.Equal(t, syncer.DefaultShutdownGrace, c.Sync.ShutdownGrace)
	require.Equal(t, openai.DefaultBaseURL, c.OpenAIBaseURL)
	require.Equal(t, anthropic.DefaultBaseURL, c.AnthropicBaseURL)
	require.Equal(t, c.Sync.Concurrency, c.ProviderConcurrency, "PROVIDER_CONCURRENCY follows SYNC_CONCURRENCY")

	c, err = loadConfig(env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", "postgres://127.0.0.1:1/none",
		"SYNC_CONCURRENCY", "5", "SYNC_RESYNC_DAYS", "7", "SYNCER_INSTANCES_ALLOWED", "a, b,"), needKeysAndDB)
	require.NoError(t, err)
	require.Equal(t, 5, c.Sync.Concurrency)
	require.Equal(t, 5, c.ProviderConcurrency, "PROVIDER_CONCURRENCY follows SYNC_CONCURRENCY when set")
	require.Equal(t, 7, c.Sync.ResyncDays)
	require.Equal(t, []string{"a", "b"}, c.Sync.KnownInstances)
	c, err = loadConfig(env("ENCRYPTION_KEY", goodKey, "DATABASE_URL", "postgres://127.0.0.1:1/none",
		"SYNC_CONCURRENCY", "5", "PROVIDER_CONCURRENCY", "2"), needKeysAndDB)
	require.NoError(t, err)
	require.Equal(t, 2, c.ProviderConcurrency)
}
