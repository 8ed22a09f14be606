// Package budget decides when a monthly budget or a day's spend deserves an
// alert: month-to-date spend and its month-end forecast against each
// budget's thresholds, and robust per-day spend anomalies. The syncer calls
// Evaluator.AfterSync after every successful sync.
//
// Month-to-date spend and its month-end forecast are the domain's
// (tokka.Budget.Status, tokka.ForecastMonthEnd); GET /v1/usage/summary
// projects with the same function. Forecast alerts additionally need at least
// MinForecastDays complete days of history.
package budget

import (
	"time"

	"github.com/shopspring/decimal"
)

var hundred = decimal.NewFromInt(100)

// day is 00:00 UTC of the day containing t.
func day(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// crossed reports whether spend has reached pct percent of amount.
func crossed(spend, amount decimal.Decimal, pct int64) bool {
	return spend.Mul(hundred).GreaterThanOrEqual(amount.Mul(decimal.NewFromInt(pct)))
}
