package budget_test

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/budget"
	"github.com/tokka-dev/tokka/pkg/tokka"
	"github.com/tokka-dev/tokka/pkg/tokka/tokkatest"
)

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
		tokka.SpendRow{Day: "2026-11-20", Provider: "anthropic", ConnectionID: "c1", Model: "claude-big", USD: tokkatest.USD("880")},
		tokka.SpendRow{Day: "2026-11-20", Provider: "anthropic", ConnectionID: "c1", Model: "claude-small", USD: tokkatest.USD("31")},
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
		tokka.SpendRow{Day: "2026-11-20", Provider: "anthropic", ConnectionID: "c1", Model: "claude-big", USD: tokkatest.USD("70")},
		tokka.SpendRow{Day: "2026-11-20", Provider: "anthropic", ConnectionID: "c1", Model: "claude-small", USD: tokkatest.USD("30")},
		tokka.SpendRow{Day: "2026-11-20", Provider: "openai", ConnectionID: "c2", Model: "o-tiny", USD: tokkatest.USD("12")},
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
	rows := tokkatest.DailySpend("2026-10-01", "2026-11-19", "0.10")
	rows = append(rows, tokka.SpendRow{Day: "2026-11-20", Provider: "openai", ConnectionID: "c1", Model: "gpt-x", USD: tokkatest.USD("5")})
	require.Empty(t, budget.DetectAnomalies(rows, end, budget.AnomalyConfig{}))
	require.Len(t, budget.DetectAnomalies(rows, end, budget.AnomalyConfig{MinUSD: tokkatest.USD("1")}), 1, "ANOMALY_MIN_USD lowers the floor")

	// A week-old account: no baseline to judge against yet.
	rows = tokkatest.DailySpend("2026-11-13", "2026-11-19", "10")
	rows = append(rows, tokka.SpendRow{Day: "2026-11-20", Provider: "openai", ConnectionID: "c1", Model: "gpt-x", USD: tokkatest.USD("900")})
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
		rows = append(rows, tokka.SpendRow{Day: d.Format(time.DateOnly), Provider: "openai", ConnectionID: "c1", Model: "gpt-x", USD: tokkatest.USD(v)})
	}
	require.Empty(t, budget.DetectAnomalies(rows, end, budget.AnomalyConfig{}))
	// A $400 Tuesday is an anomaly.
	rows = append(rows, tokka.SpendRow{Day: "2026-11-24", Provider: "openai", ConnectionID: "c1", Model: "gpt-x", USD: tokkatest.USD("400")})
	as := budget.DetectAnomalies(rows, end.AddDate(0, 0, 3), budget.AnomalyConfig{})
	require.Len(t, as, 1)
	require.Equal(t, "2026-11-24", as[0].Day)
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
			tokka.SpendRow{Day: d.Format(time.DateOnly), Provider: "anthropic", ConnectionID: "c1", Model: "claude-big", USD: v.Mul(tokkatest.USD("0.7"))},
			tokka.SpendRow{Day: d.Format(time.DateOnly), Provider: "anthropic", ConnectionID: "c1", Model: "claude-small", USD: v.Mul(tokkatest.USD("0.3"))},
		)
	}
	return rows
}
