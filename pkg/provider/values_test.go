package provider_test

import (
	"encoding/json"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/provider"
)

func TestCountProblem(t *testing.T) {
	t.Parallel()
	require.Empty(t, provider.CountProblem(0))
	require.Empty(t, provider.CountProblem(provider.MaxCount))
	require.Equal(t, "a negative count", provider.CountProblem(-1))
	require.Equal(t, "an implausibly large count", provider.CountProblem(provider.MaxCount+1))
	require.Empty(t, provider.CountsProblem(1, 2, 3))
	require.Equal(t, "a negative count", provider.CountsProblem(1, -2, provider.MaxCount+1))
}

func TestDecimalReadsNumbersAndNumericStringsExactly(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		`0.50`:                   "0.5",
		`"0.50"`:                 "0.5",
		`" 12.50 "`:              "12.5",
		`1e-7`:                   "0.0000001",
		`"123.78912"`:            "123.78912",
		`-0.25`:                  "-0.25",
		`0.1000000000000000055`:  "0.1000000000000000055", // float64 would say 0.1
		`9007199254740993.01`:    "9007199254740993.01",   // beyond float64's integers
		`"1E+3"`:                 "1000",
		`0`:                      "0",
		`"-0"`:                   "0",
		`123456789012.123456789`: "123456789012.123456789",
		`"\u0031.5"`:             "1.5", // an escaped digit is still a digit
		`"-0.5e-1"`:              "-0.05",
		`"7E2"`:                  "700",
	} {
		var d provider.Decimal
		require.NoError(t, json.Unmarshal([]byte(raw), &d), raw)
		require.Equal(t, want, d.String(), raw)
	}
	for _, raw := range []string{`""`, `"twelve"`, `"0x10"`, `"NaN"`, `"+1"`, `true`, `[1]`, `{"v":1}`, `"1,5"`, `"1 2"`,
		`"01"`, `"1."`, `".5"`, `"-"`, `"1e"`, `"1e+"`, `"--1"`, `"1.2.3"`, `"1_000"`, `"\u0031x"`, `" "`} {
		var d provider.Decimal
		require.Error(t, json.Unmarshal([]byte(raw), &d), raw)
	}
	// JSON null leaves a pointer nil, which callers report as "no amount".
	var p struct{ V *provider.Decimal }
	require.NoError(t, json.Unmarshal([]byte(`{"V":null}`), &p))
	require.Nil(t, p.V)
}

func TestCheckAmount(t *testing.T) {
	t.Parallel()
	ok := map[string]string{
		"0":                                "0",
		"0.50":                             "0.5",
		"-12.5":                            "-12.5",
		"1000000000000":                    "1000000000000",
		"-1000000000000":                   "-1000000000000",
		"0.000000000000000000000000000001": "0.000000000000000000000000000001",
		"1.000000000000000000000000000000000000000000000": "1",
		"123.78912": "123.78912",
	}
	for in, want := range ok {
		got, problem := provider.CheckAmount(decimal.RequireFromString(in))
		require.Empty(t, problem, in)
		require.Equal(t, want, got.String(), in)
	}
	for in, want := range map[string]string{
		"1000000000000.01":                  "an implausibly large amount",
		"-99999999999999":                   "an implausibly large amount",
		"0.0000000000000000000000000000001": "an amount with implausibly many decimals",
	} {
		_, problem := provider.CheckAmount(decimal.RequireFromString(in))
		require.Equal(t, want, problem, in)
	}
	// Hostile exponents are judged from digits and exponent, without the
	// rescaling a comparison would need (which would not finish).
	_, problem := provider.CheckAmount(decimal.New(1, 999_999_999))
	require.Equal(t, "an implausibly large amount", problem)
	_, problem = provider.CheckAmount(decimal.New(-7, -999_999_999))
	require.Equal(t, "an amount with implausibly many decimals", problem)
	var d provider.Decimal
	require.Error(t, json.Unmarshal([]byte(`"1e999999999"`), &d), "the decimal library refuses such exponents itself")
}
