// Package budget decides when a monthly budget or a day's spend deserves an
// alert: month-to-date spend and its month-end forecast against each
// budget's thresholds, and robust per-day spend anomalies. The syncer calls
// Evaluator.AfterSync after every successful sync; the API uses StatusOf to
// show where a budget stands.
//
// Month-to-date (MTD) spend is the sum of cost_daily.amount_usd over the
// budget's scope for the current UTC month, up to and including today.
//
// The forecast of month-end spend is
//
//	forecast = max(MTD, spend before today + rate × days left including today)
//	rate     = average daily spend over the last 7 complete days (today
//	           excluded), counting only days on or after the scope's first
//	           day with any cost, so a newly connected account is not
//	           diluted by days before it existed.
//
// Today's spend is still arriving (providers report late), so the forecast
// counts today at the rate rather than at its partial figure, but never
// projects less than is already spent. The 7-day window reaches back into
// the previous month, so a quiet (or not yet reported) first few days of a
// month do not drag the projection to zero, and a single expensive day moves
// it by at most a seventh. With no complete day of history the rate is 0 and
// the forecast is MTD; forecast alerts additionally need at least
// MinForecastDays complete days. GET /v1/usage/summary projects the same way.
package budget

import (
	"time"

	"github.com/shopspring/decimal"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// RateDays is the length of the window the forecast's daily rate averages.
const RateDays = 7

var hundred = decimal.NewFromInt(100)

// Status is where a budget stands in the month containing now.
type Status struct {
	Month        string          // YYYY-MM, UTC
	SpendUSD     decimal.Decimal // month to date, exact
	ForecastUSD  decimal.Decimal // projected month-end spend, rounded to cents
	PercentUsed  decimal.Decimal // SpendUSD / amount × 100, rounded to 2 places
	DailyRateUSD decimal.Decimal // the daily rate the forecast uses, rounded to 6 places
	RateDays     int             // complete days that rate averages (0 to RateDays)
}

// Matches reports whether a spend row falls inside b's scope.
func Matches(b tokka.Budget, r tokka.SpendRow) bool {
	switch b.Scope {
	case tokka.ScopeAll:
		return true
	case tokka.ScopeProvider:
		return b.Provider != nil && *b.Provider == r.Provider
	case tokka.ScopeConnection:
		return b.ConnectionID != nil && *b.ConnectionID == r.ConnectionID
	}
	return false
}

func day(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// StatusRange is the span of days StatusOf needs rows for.
func StatusRange(now time.Time) (from, to time.Time) {
	today := day(now)
	from = monthStart(now)
	if w := today.AddDate(0, 0, -RateDays); w.Before(from) {
		from = w
	}
	return from, today
}

// StatusOf computes b's status at now from the user's spend rows, which must
// cover StatusRange(now) (rows outside b's scope are ignored).
func StatusOf(b tokka.Budget, rows []tokka.SpendRow, now time.Time) Status {
	daily := map[string]decimal.Decimal{}
	first := ""
	for _, r := range rows {
		if !Matches(b, r) {
			continue
		}
		daily[r.Day] = daily[r.Day].Add(r.USD)
		if first == "" || r.Day < first {
			first = r.Day
		}
	}
	s := project(daily, first, now)
	if b.AmountUSD.IsPositive() {
		s.PercentUsed = s.SpendUSD.Mul(hundred).Div(b.AmountUSD).Round(2)
	}
	return s
}

// project computes MTD and the forecast from one scope's daily totals
// (keyed YYYY-MM-DD) whose earliest day with data is first.
func project(daily map[string]decimal.Decimal, first string, now time.Time) Status {
	today := day(now)
	start := monthStart(now)
	s := Status{Month: start.Format("2006-01")}
	var beforeToday decimal.Decimal
	for d := start; d.Before(today); d = d.AddDate(0, 0, 1) {
		beforeToday = beforeToday.Add(daily[d.Format(time.DateOnly)])
	}
	s.SpendUSD = beforeToday.Add(daily[today.Format(time.DateOnly)])
	var sum decimal.Decimal
	for i := 1; i <= RateDays; i++ {
		d := today.AddDate(0, 0, -i).Format(time.DateOnly)
		if first == "" || d < first {
			continue
		}
		sum = sum.Add(daily[d])
		s.RateDays++
	}
	if s.RateDays > 0 {
		s.DailyRateUSD = sum.Div(decimal.NewFromInt(int64(s.RateDays))).Round(6)
	}
	daysInMonth := start.AddDate(0, 1, -1).Day()
	left := int64(daysInMonth - today.Day() + 1) // today included
	s.ForecastUSD = decimal.Max(s.SpendUSD, beforeToday.Add(s.DailyRateUSD.Mul(decimal.NewFromInt(left)))).Round(2)
	return s
}

// crossed reports whether spend has reached pct percent of amount.
func crossed(spend, amount decimal.Decimal, pct int64) bool {
	return spend.Mul(hundred).GreaterThanOrEqual(amount.Mul(decimal.NewFromInt(pct)))
}
