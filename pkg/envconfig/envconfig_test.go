package envconfig_test

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/envconfig"
)

type sample struct {
	URL     string         `env:"SAMPLE_URL,required"`
	Secret  string         `env:"SAMPLE_SECRET"`
	Pool    int            `env:"SAMPLE_POOL" envDefault:"10" range:"1,1000"`
	Days    int            `env:"SAMPLE_DAYS" envDefault:"3" range:"1,"`
	Wait    time.Duration  `env:"SAMPLE_WAIT" envDefault:"5s" range:"100ms,10m"`
	Poll    time.Duration  `env:"SAMPLE_POLL" envDefault:"5s" range:"1ms,"`
	Stall   time.Duration  `env:"SAMPLE_STALL" range:"1ms,"`
	On      bool           `env:"SAMPLE_ON" envDefault:"false"`
	Level   zerolog.Level  `env:"SAMPLE_LEVEL" envDefault:"info"`
	Origins envconfig.List `env:"SAMPLE_LIST"`
	Nested  struct {
		Inner string `env:"SAMPLE_INNER" envDefault:"in"`
	}
	Derived string `env:"-"`
}

func getenv(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestParseTakesTheTagsDefaultsAndTheLibrarysTypes(t *testing.T) {
	t.Parallel()
	var c sample
	require.NoError(t, envconfig.Parse(getenv("SAMPLE_URL", "u", "SAMPLE_POOL", ""), &c))
	require.Equal(t, 10, c.Pool, "empty counts as unset")
	require.Equal(t, 5*time.Second, c.Wait)
	require.Equal(t, zerolog.InfoLevel, c.Level)
	require.Equal(t, "in", c.Nested.Inner)
	require.Empty(t, c.Origins)
	require.Zero(t, c.Stall, "unset without a default: zero, for the caller to derive, not out of range")

	require.NoError(t, envconfig.Parse(getenv("SAMPLE_URL", "u", "SAMPLE_LIST", " https://a.example , ,https://b.example,",
		"SAMPLE_ON", "true", "SAMPLE_LEVEL", "DEBUG", "SAMPLE_WAIT", "1500ms", "SAMPLE_POOL", "1000"), &c))
	require.Equal(t, envconfig.List{"https://a.example", "https://b.example"}, c.Origins, "items trimmed, empty ones dropped")
	require.True(t, c.On)
	require.Equal(t, zerolog.DebugLevel, c.Level, "levels in any case")
	require.Equal(t, 1500*time.Millisecond, c.Wait)
	require.Equal(t, 1000, c.Pool, "bounds are included")
}

func TestParseNamesTheVariableInOneLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "SAMPLE_URL is required"},
		{[]string{"SAMPLE_POOL", "ten"}, `SAMPLE_POOL must be a whole number from 1 to 1000, not "ten"`},
		{[]string{"SAMPLE_POOL", "0"}, `SAMPLE_POOL must be a whole number from 1 to 1000, not "0"`},
		{[]string{"SAMPLE_POOL", "1001"}, `SAMPLE_POOL must be a whole number from 1 to 1000, not "1001"`},
		{[]string{"SAMPLE_DAYS", "0"}, `SAMPLE_DAYS must be a whole number of at least 1, not "0"`},
		{[]string{"SAMPLE_WAIT", "5"}, `SAMPLE_WAIT: "5" is not a duration from 100ms to 10m`},
		{[]string{"SAMPLE_WAIT", "11m"}, `SAMPLE_WAIT: "11m" is not a duration from 100ms to 10m`},
		{[]string{"SAMPLE_POLL", "-1s"}, `SAMPLE_POLL: "-1s" is not a duration of at least 1ms`},
		{[]string{"SAMPLE_STALL", "0s"}, `SAMPLE_STALL: "0s" is not a duration of at least 1ms`},
		{[]string{"SAMPLE_ON", "yes"}, `SAMPLE_ON: "yes" must be true or false`},
		{[]string{"SAMPLE_LEVEL", "loud"}, `SAMPLE_LEVEL: "loud" is not a level`},
	} {
		env := tc.env
		if tc.want != "SAMPLE_URL is required" {
			env = append(env, "SAMPLE_URL", "u")
		}
		var c sample
		err := envconfig.Parse(getenv(append(env, "SAMPLE_SECRET", "hunter2-secret")...), &c)
		require.Error(t, err, tc.want)
		require.Contains(t, err.Error(), tc.want)
		require.NotContains(t, err.Error(), "\n")
		require.NotContains(t, err.Error(), "hunter2-secret", "string settings are never quoted")
	}
}

func TestSettingsListsTheTagsForTheReadme(t *testing.T) {
	t.Parallel()
	s := envconfig.Settings(&sample{})
	require.Equal(t, envconfig.Setting{Name: "SAMPLE_URL"}, s[0])
	require.Equal(t, envconfig.Setting{Name: "SAMPLE_POOL", Default: "10", HasDefault: true}, s[2])
	require.Equal(t, "SAMPLE_INNER", s[len(s)-1].Name, "nested structs count; env:\"-\" fields do not")
}

func TestSupabaseAuthURLIsDerivedOnceAndValidated(t *testing.T) {
	t.Parallel()
	u, err := envconfig.SupabaseAuthURL("https://ref.supabase.co/", "")
	require.NoError(t, err)
	require.Equal(t, "https://ref.supabase.co/auth/v1", u)
	u, err = envconfig.SupabaseAuthURL("https://ref.supabase.co", "http://127.0.0.1:9999/")
	require.NoError(t, err)
	require.Equal(t, "http://127.0.0.1:9999", u, "SUPABASE_AUTH_URL wins")
	u, err = envconfig.SupabaseAuthURL("", "")
	require.NoError(t, err)
	require.Empty(t, u)
	_, err = envconfig.SupabaseAuthURL("ref.supabase.co", "")
	require.ErrorContains(t, err, "SUPABASE_URL must be an absolute http(s) URL")
	_, err = envconfig.SupabaseAuthURL("", "https://user:pw@auth.example.com")
	require.ErrorContains(t, err, "SUPABASE_AUTH_URL must be an absolute http(s) URL")
}
