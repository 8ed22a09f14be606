package budget_test

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/budget"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func usd(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func ptr[T any](v T) *T { return &v }

// daily returns one spend row per day from..to (inclusive) of amount.
func daily(from, to, amount string) []tokka.SpendRow {
	var rows []tokka.SpendRow
	f, _ := time.Parse(time.DateOnly, from)
	t, _ := time.Parse(time.DateOnly, to)
	for d := f; !d.After(t); d = d.AddDate(0, 0, 1) {
		rows = append(rows, tokka.SpendRow{Day: d.Format(time.DateOnly), Provider: "openai", ConnectionID: "c1", Model: "gpt-x", USD: usd(amount)})
	}
	return rows
}

func allScope(amount string) tokka.Budget {
	return tokka.Budget{ID: "b", Scope: tokka.ScopeAll, AmountUSD: usd(amount)}
}

func TestStatusForecastsFromTheLastSevenCompleteDays(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	rows := daily("2026-10-01", "2026-11-19", "10")
	rows = append(rows, tokka.SpendRow{Day: "2026-11-20", Provider: "openai", ConnectionID: "c1", USD: usd("3.5")})
	st := budget.StatusOf(allScope("500"), rows, now)
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
	rows := daily("2026-11-01", "2026-11-30", "100")
	st := budget.StatusOf(allScope("3000"), rows, now)
	require.True(t, st.SpendUSD.IsZero())
	require.Equal(t, 7, st.RateDays)
	require.Equal(t, "71.428571", st.DailyRateUSD.String(), "5 × $100 over the 7 days Nov 26 – Dec 2")
	require.Equal(t, "2071.43", st.ForecastUSD.StringFixed(2), "$71.43 × 29 days left, today included")
}

func TestForecastCountsOnlyDaysWithHistory(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	// A connection added two days ago: two complete days of $40.
	rows := daily("2026-11-18", "2026-11-19", "40")
	st := budget.StatusOf(allScope("1000"), rows, now)
	require.Equal(t, 2, st.RateDays)
	require.Equal(t, "40", st.DailyRateUSD.String(), "not diluted by the five days before it existed")
	require.Equal(t, "520.00", st.ForecastUSD.StringFixed(2))

	// Today's spend already above the rate: the forecast never projects
	// less than is spent.
	rows = append(rows, tokka.SpendRow{Day: "2026-11-20", Provider: "openai", ConnectionID: "c1", USD: usd("1000")})
	st = budget.StatusOf(allScope("1000"), rows, now)
	require.Equal(t, "1080.00", st.ForecastUSD.StringFixed(2))

	st = budget.StatusOf(allScope("1000"), nil, now)
	require.Zero(t, st.RateDays)
	require.True(t, st.ForecastUSD.IsZero())
	require.True(t, st.PercentUsed.IsZero())
}

func TestStatusFollowsTheScope(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	rows := []tokka.SpendRow{
		{Day: "2026-11-02", Provider: "openai", ConnectionID: "c1", USD: usd("1.25")},
		{Day: "2026-11-02", Provider: "anthropic", ConnectionID: "c2", USD: usd("2.5")},
		{Day: "2026-11-03", Provider: "anthropic", ConnectionID: "c3", USD: usd("4")},
		{Day: "2026-10-31", Provider: "anthropic", ConnectionID: "c3", USD: usd("1000")}, // last month
	}
	cases := []struct {
		b    tokka.Budget
		want string
	}{
		{tokka.Budget{Scope: tokka.ScopeAll}, "7.75"},
		{tokka.Budget{Scope: tokka.ScopeProvider, Provider: ptr("anthropic")}, "6.5"},
		{tokka.Budget{Scope: tokka.ScopeProvider, Provider: ptr("openai")}, "1.25"},
		{tokka.Budget{Scope: tokka.ScopeConnection, ConnectionID: ptr("c3")}, "4"},
		{tokka.Budget{Scope: tokka.ScopeConnection, ConnectionID: ptr("c9")}, "0"},
	}
	for _, tc := range cases {
		tc.b.AmountUSD = usd("100")
		require.Equal(t, tc.want, budget.StatusOf(tc.b, rows, now).SpendUSD.String(), tc.b.Scope)
	}
}

// normalRows is eight weeks of ordinary spend: weekdays around $100,
// weekends around $30, with day-to-day noise of up to ±15%.
func normalRows(end time.Time) []tokka.SpendRow {
	noise := []int64{0, 7, -12, 15, -5, 9, -14, 3, 11, -8, 13, -2, -15, 6}
	var rows []tokka.SpendRow
	for i := 0; i < 56; i++ {
		d := end.AddDate(0, 0, -i)
		base := int64(100)
		if d.Weekday() == time.Saturday || d.Weekday() == time.Sunday {
			base = 30
		}
		v := decimal.NewFromInt(base).Mul(decimal.NewFromInt(100 + noise[i%len(noise)])).Div(decimal.NewFromInt(100))
		// Two models share the spend.
		rows = append(rows,
			tokka.SpendRow{Day: d.Format(time.DateOnly), Provider: "anthropic", ConnectionID: "c1", Model: "claude-big", USD: v.Mul(usd("0.7"))},
			tokka.SpendRow{Day: d.Format(time.DateOnly), Provider: "anthropic", ConnectionID: "c1", Model: "claude-small", USD: v.Mul(usd("0.3"))},
		)
	}
	return rows
}

func TestNoAnomalyForNormalVariation(t *testing.T) {
	t.Parallel()
	end := time.Date(2026, 11, 20, 23, 0, 0, 0, time.UTC)
	rows := normalRows(end)
	// Judge every day of the last four weeks.
	for i := 0; i < 28; i++ {
		now := end.AddDate(0, 0, -i)
		require.Empty(t, budget.DetectAnomalies(rows, now, budget.AnomalyConfig{}), now.Format(time.DateOnly))
	}
}

func TestSpikeIsOneAnomalyNamingWhatDroveIt(t *testing.T) {
	t.Parallel()
	end := time.Date(2026, 11, 20, 23, 0, 0, 0, time.UTC) // a Friday
	rows := normalRows(end.AddDate(0, 0, -1))
	rows = append(rows,
		tokka.SpendRow{Day: "2026-11-20", Provider: "anthropic", ConnectionID: "c1", Model: "claude-big", USD: usd("880")},
		tokka.SpendRow{Day: "2026-11-20", Provider: "anthropic", ConnectionID: "c1", Model: "claude-small", USD: usd("31")},
	)
	as := budget.DetectAnomalies(rows, end, budget.AnomalyConfig{})
	require.Len(t, as, 1)
	a := as[0]
	require.Equal(t, budget.AnomalyAll, a.Kind)
	require.Equal(t, "2026-11-20", a.Day)
	require.Equal(t, "911", a.SpendUSD.String())
	require.True(t, a.SpendUSD.GreaterThan(a.ThresholdUSD))
	require.NotNil(t, a.WeekdayMedianUSD, "weekday-aware baseline used")
	require.Len(t, a.Drivers, 2, "the provider and the model")
	require.Equal(t, budget.AnomalyScope{Kind: budget.AnomalyModel, Provider: "anthropic", Model: "claude-big"}, a.Drivers[0].AnomalyScope)
	require.Equal(t, budget.AnomalyScope{Kind: budget.AnomalyProvider, Provider: "anthropic"}, a.Drivers[1].AnomalyScope)

	// The following days still see it (it is within the judged window) and
	// report the same day, which the alert's dedup key makes fire once.
	as = budget.DetectAnomalies(rows, end.AddDate(0, 0, 2), budget.AnomalyConfig{})
	require.Len(t, as, 1)
	require.Equal(t, "2026-11-20", as[0].Day)
	require.Empty(t, budget.DetectAnomalies(rows, end.AddDate(0, 0, 3), budget.AnomalyConfig{}), "out of the judged window")
}

func TestModelSpikeHiddenInTheTotalIsStillReported(t *testing.T) {
	t.Parallel()
	end := time.Date(2026, 11, 20, 23, 0, 0, 0, time.UTC)
	rows := normalRows(end.AddDate(0, 0, -1))
	// A tiny model normally at $0 jumps to $60: noise in a $100 day, but
	// far above its own baseline.
	rows = append(rows,
		tokka.SpendRow{Day: "2026-11-20", Provider: "anthropic", ConnectionID: "c1", Model: "claude-big", USD: usd("70")},
		tokka.SpendRow{Day: "2026-11-20", Provider: "anthropic", ConnectionID: "c1", Model: "claude-small", USD: usd("30")},
		tokka.SpendRow{Day: "2026-11-20", Provider: "openai", ConnectionID: "c2", Model: "o-tiny", USD: usd("12")},
	)
	as := budget.DetectAnomalies(rows, end, budget.AnomalyConfig{})
	require.Len(t, as, 1)
	require.Equal(t, budget.AnomalyProvider, as[0].Kind, "openai as a whole is new spend")
	require.Equal(t, "openai", as[0].Provider)
	require.Len(t, as[0].Drivers, 1)
	require.Equal(t, "o-tiny", as[0].Drivers[0].Model)
}

func TestAnomalyNeedsAMinimumAmountAndHistory(t *testing.T) {
	t.Parallel()
	end := time.Date(2026, 11, 20, 23, 0, 0, 0, time.UTC)
	// Pennies: $0.10 a day then $5 is 50× but only $4.90 more.
	rows := daily("2026-10-01", "2026-11-19", "0.10")
	rows = append(rows, tokka.SpendRow{Day: "2026-11-20", Provider: "openai", ConnectionID: "c1", Model: "gpt-x", USD: usd("5")})
	require.Empty(t, budget.DetectAnomalies(rows, end, budget.AnomalyConfig{}))
	require.Len(t, budget.DetectAnomalies(rows, end, budget.AnomalyConfig{MinUSD: usd("1")}), 1, "ANOMALY_MIN_USD lowers the floor")

	// A week-old account: no baseline to judge against yet.
	rows = daily("2026-11-13", "2026-11-19", "10")
	rows = append(rows, tokka.SpendRow{Day: "2026-11-20", Provider: "openai", ConnectionID: "c1", Model: "gpt-x", USD: usd("900")})
	require.Empty(t, budget.DetectAnomalies(rows, end, budget.AnomalyConfig{}))
}

func TestWeeklyJobIsNotAnAnomaly(t *testing.T) {
	t.Parallel()
	end := time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC) // a Saturday
	var rows []tokka.SpendRow
	for i := 0; i < 60; i++ {
		d := end.AddDate(0, 0, -i)
		v := "100"
		if d.Weekday() == time.Saturday {
			v = "500" // the weekly batch job
		}
		rows = append(rows, tokka.SpendRow{Day: d.Format(time.DateOnly), Provider: "openai", ConnectionID: "c1", Model: "gpt-x", USD: usd(v)})
	}
	require.Empty(t, budget.DetectAnomalies(rows, end, budget.AnomalyConfig{}))
	// A $400 Tuesday is an anomaly.
	rows = append(rows, tokka.SpendRow{Day: "2026-11-24", Provider: "openai", ConnectionID: "c1", Model: "gpt-x", USD: usd("400")})
	as := budget.DetectAnomalies(rows, end.AddDate(0, 0, 3), budget.AnomalyConfig{})
	require.Len(t, as, 1)
	require.Equal(t, "2026-11-24", as[0].Day)
}
