package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"strings"

	"github.com/shopspring/decimal"
)

// MaxCount is the largest count Tokka believes for one group on one day: a
// quadrillion tokens, bytes or requests is far beyond any organisation, so a
// bigger number is a provider bug, and storing it would swamp every total.
const MaxCount int64 = 1_000_000_000_000_000

// MaxAmountScale is the most digits after the decimal point an amount may
// carry. Providers send a handful; the bound keeps an exponent such as 1e-9999
// from reaching a numeric column (or a sum) as an absurd scale.
const MaxAmountScale = 30

// maxAmount bounds the magnitude of one cost line in its reported unit
// (dollars or cents): a trillion is implausible for a single day.
var maxAmount = decimal.New(1, maxAmountDigits-1)

const maxAmountDigits = 13

// CountProblem returns what is wrong with n as a reported count ("a negative
// count", "an implausibly large count"), or "" when it is acceptable.
func CountProblem(n int64) string {
	switch {
	case n < 0:
		return "a negative count"
	case n > MaxCount:
		return "an implausibly large count"
	}
	return ""
}

// CountsProblem is CountProblem for the first unacceptable count in ns.
func CountsProblem(ns ...int64) string {
	for _, n := range ns {
		if p := CountProblem(n); p != "" {
			return p
		}
	}
	return ""
}

// CheckAmount returns d without trailing zeros after the point, and what is
// wrong with it as a reported amount ("" when it is acceptable). Negative
// amounts are accepted: credits and refunds are money too. The checks look at
// digits and exponent only, so a hostile exponent (1e-999999999) is refused
// without the huge rescaling a plain comparison would do.
func CheckAmount(d decimal.Decimal) (decimal.Decimal, string) {
	coef := d.Coefficient()
	if coef.Sign() == 0 {
		return decimal.Zero, ""
	}
	digits := strings.TrimPrefix(coef.String(), "-")
	trimmed := strings.TrimRight(digits, "0")
	exp := int64(d.Exponent()) + int64(len(digits)-len(trimmed))
	switch {
	case exp < -MaxAmountScale:
		return d, "an amount with implausibly many decimals"
	case int64(len(trimmed))+exp > int64(maxAmountDigits):
		// |d| >= 10^(len+exp-1) >= 10^maxAmountDigits > maxAmount.
		return d, "an implausibly large amount"
	}
	if int64(len(trimmed)) != int64(len(digits)) {
		var ok bool
		coef, ok = new(big.Int).SetString(trimmed, 10)
		if !ok {
			return d, "an amount that is not a number"
		}
		if d.Sign() < 0 {
			coef.Neg(coef)
		}
	}
	n := decimal.NewFromBigInt(coef, int32(exp))
	if n.Abs().GreaterThan(maxAmount) {
		return d, "an implausibly large amount"
	}
	return n, ""
}

// Decimal is an exact decimal read from JSON. Providers send money both as a
// number (OpenAI's spec) and as a string holding one (OpenAI live responses,
// Anthropic's cents), so both are accepted; float64 is never involved, so
// "0.50" and 1e-7 arrive exactly. Anything else, including an empty string,
// is an error (JSON null leaves a pointer field nil without calling
// UnmarshalJSON).
type Decimal struct {
	decimal.Decimal
}

// errNotDecimal is deliberately fixed text: the raw value is not echoed.
var errNotDecimal = errors.New("value is not a decimal number")

// UnmarshalJSON implements json.Unmarshaler; see Decimal.
func (d *Decimal) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		// A JSON string without a backslash is the text between its quotes.
		if n := len(b); n >= 2 && b[n-1] == '"' && bytes.IndexByte(b[1:n-1], '\\') < 0 {
			b = bytes.TrimSpace(b[1 : n-1])
		} else {
			var s string
			if err := json.Unmarshal(b, &s); err != nil {
				return errNotDecimal
			}
			b = []byte(strings.TrimSpace(s))
		}
	}
	// Exactly JSON's number grammar: no hex, no "NaN", no "+1", no empty
	// string.
	if !isJSONNumber(b) {
		return errNotDecimal
	}
	v, err := decimal.NewFromString(string(b))
	if err != nil {
		return errNotDecimal
	}
	d.Decimal = v
	return nil
}

// isJSONNumber reports whether b is a number in JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(b []byte) bool {
	i := 0
	digits := func() int {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - start
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}
