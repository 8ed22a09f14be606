package tokka_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/tokka"
	"github.com/tokka-dev/tokka/pkg/tokka/tokkatest"
)

func allScope(amount string) tokka.Budget {
	return tokka.Budget{ID: "b", Scope: tokka.ScopeAll, AmountUSD: tokkatest.USD(amount)}
}

func TestStatusForecastsFromTheLastSevenCompleteDays(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	rows := tokkatest.DailySpend("2026-10-01", "2026-11-19", "10")
	rows = append(rows, tokka.SpendRow{Day: "2026-11-20", Provider: "openai", ConnectionID: "c1", USD: tokkatest.USD("3.5")})
	st := allScope("500").Status(rows, now)
	require.Equal(t, "2026-11", st.Month)
	require.Equal(t, "193.5", st.SpendUSD.String(), "19 days × $10 + today's $3.50 so far")
	require.Equal(t, 7, st.RateDays)
	require.Equal(t, "10", st.DailyRateUSD.String())
	require.Equal(t, "300.00", st.ForecastUSD.StringFixed(2), "$190 before today + $10 × 11 days (today at the rate)")
	require.Equal(t, "38.7", st.PercentUsed.String())
}

func TestForecastIsRobustToAQuietStartOfTheMonth(t *testing.T) {
	t.Parallel()
	// $100 a day through November; December's first two days are not
	// reported yet. A naive MTD ÷ elapsed-days projection says $0.
	now := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	rows := tokkatest.DailySpend("2026-11-01", "2026-11-30", "100")
	st := allScope("3000").Status(rows, now)
	require.True(t, st.SpendUSD.IsZero())
	require.Equal(t, 7, st.RateDays)
	require.Equal(t, "71.428571", st.DailyRateUSD.String(), "5 × $100 over the 7 days Nov 26 – Dec 2")
	require.Equal(t, "2071.43", st.ForecastUSD.StringFixed(2), "$71.43 × 29 days left, today included")
}

func TestForecastCountsOnlyDaysWithHistory(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	// A connection added two days ago: two complete days of $40.
	rows := tokkatest.DailySpend("2026-11-18", "2026-11-19", "40")
	st := allScope("1000").Status(rows, now)
	require.Equal(t, 2, st.RateDays)
	require.Equal(t, "40", st.DailyRateUSD.String(), "not diluted by the five days before it existed")
	require.Equal(t, "520.00", st.ForecastUSD.StringFixed(2))

	// Today's spend already above the rate: the forecast never projects
	// less than is spent.
	rows = append(rows, tokka.SpendRow{Day: "2026-11-20", Provider: "openai", ConnectionID: "c1", USD: tokkatest.USD("1000")})
	st = allScope("1000").Status(rows, now)
	require.Equal(t, "1080.00", st.ForecastUSD.StringFixed(2))

	st = allScope("1000").Status(nil, now)
	require.Zero(t, st.RateDays)
	require.True(t, st.ForecastUSD.IsZero())
	require.True(t, st.PercentUsed.IsZero())
}

func TestStatusFollowsTheScope(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	rows := []tokka.SpendRow{
		{Day: "2026-11-02", Provider: "openai", ConnectionID: "c1", USD: tokkatest.USD("1.25")},
		{Day: "2026-11-02", Provider: "anthropic", ConnectionID: "c2", USD: tokkatest.USD("2.5")},
		{Day: "2026-11-03", Provider: "anthropic", ConnectionID: "c3", USD: tokkatest.USD("4")},
		{Day: "2026-10-31", Provider: "anthropic", ConnectionID: "c3", USD: tokkatest.USD("1000")}, // last month
	}
	cases := []struct {
		b    tokka.Budget
		want string
	}{
		{tokka.Budget{Scope: tokka.ScopeAll}, "7.75"},
		{tokka.Budget{Scope: tokka.ScopeProvider, Provider: new(tokka.Anthropic)}, "6.5"},
		{tokka.Budget{Scope: tokka.ScopeProvider, Provider: new(tokka.OpenAI)}, "1.25"},
		{tokka.Budget{Scope: tokka.ScopeConnection, ConnectionID: new("c3")}, "4"},
		{tokka.Budget{Scope: tokka.ScopeConnection, ConnectionID: new("c9")}, "0"},
	}
	for _, tc := range cases {
		tc.b.AmountUSD = tokkatest.USD("100")
		require.Equal(t, tc.want, tc.b.Status(rows, now).SpendUSD.String(), tc.b.Scope)
	}
}
