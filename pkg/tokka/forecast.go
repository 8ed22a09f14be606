package tokka

import (
	"time"

	"github.com/shopspring/decimal"
)

// ForecastRateDays is how many complete days before today the forecast's
// daily rate averages.
const ForecastRateDays = 7

// Forecast is a projection of one scope's spend to the end of the month.
//
//	month end = max(month to date, spend before today + rate × days left including today)
//	rate      = average daily spend over the last ForecastRateDays complete
//	            days (today excluded), counting only days on or after the
//	            scope's first day with any cost, so a newly connected
//	            account is not diluted by days before it existed.
//
// Today's spend is still arriving (providers report late), so the forecast
// counts today at the rate rather than at its partial figure, but never
// projects less than is already spent. The rate window reaches back into the
// previous month, so a quiet (or not yet reported) first few days of a month
// do not drag the projection to zero, and a single expensive day moves it by
// at most a seventh. With no complete day of history the rate is 0 and the
// projection is the month to date. Budgets and GET /v1/usage/summary both
// project with ForecastMonthEnd.
type Forecast struct {
	DailyRateUSD decimal.Decimal // rounded to 6 places
	RateDays     int             // complete days the rate averages (0 to ForecastRateDays)
	MonthEndUSD  decimal.Decimal // rounded to cents
}

// RateDays is how many of the ForecastRateDays complete days before today
// fall on or after first, the scope's first day with any cost (nil: none).
func RateDays(today time.Time, first *time.Time) int {
	if first == nil {
		return 0
	}
	f := startOfDay(*first)
	days := int(startOfDay(today).Sub(f).Hours() / 24)
	return max(0, min(ForecastRateDays, days))
}

// ForecastMonthEnd projects the month containing today from the spend before
// today (beforeToday), the month to date (today's partial figure included)
// and the spend of the rateDays complete days the rate averages. It never
// fails.
func ForecastMonthEnd(today time.Time, beforeToday, monthToDate, rateWindowSpend decimal.Decimal, rateDays int) Forecast {
	today = startOfDay(today)
	f := Forecast{RateDays: rateDays}
	if rateDays > 0 {
		f.DailyRateUSD = rateWindowSpend.Div(decimal.NewFromInt(int64(rateDays))).Round(6)
	}
	daysInMonth := time.Date(today.Year(), today.Month()+1, 0, 0, 0, 0, 0, time.UTC).Day()
	left := decimal.NewFromInt(int64(daysInMonth - today.Day() + 1)) // today included
	f.MonthEndUSD = decimal.Max(monthToDate, beforeToday.Add(f.DailyRateUSD.Mul(left))).Round(2)
	return f
}

// startOfDay is 00:00 UTC of the day containing t.
func startOfDay(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}
