// Package tokkatest builds domain values for the tests of more than one
// package (tokka's own, budget's), so each fixture is written once.
package tokkatest

import (
	"time"

	"github.com/shopspring/decimal"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// USD is the amount s; it panics when s is not a decimal, which in a test
// is a typo in the test.
func USD(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// DailySpend is one spend row per day from..to (inclusive, YYYY-MM-DD) of
// amount each, all of one openai connection "c1" and model "gpt-x". It
// panics when a date does not parse.
func DailySpend(from, to, amount string) []tokka.SpendRow {
	f, err := time.Parse(time.DateOnly, from)
	if err != nil {
		panic(err)
	}
	t, err := time.Parse(time.DateOnly, to)
	if err != nil {
		panic(err)
	}
	var rows []tokka.SpendRow
	for d := f; !d.After(t); d = d.AddDate(0, 0, 1) {
		rows = append(rows, tokka.SpendRow{Day: d.Format(time.DateOnly), Provider: "openai", ConnectionID: "c1",
			Model: "gpt-x", USD: USD(amount)})
	}
	return rows
}
