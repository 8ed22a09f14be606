package httpapi_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// focusMandatory is every column FOCUS 1.2 marks Mandatory.
var focusMandatory = []string{
	"BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodEnd", "BillingPeriodStart",
	"ChargeCategory", "ChargeClass", "ChargeDescription", "ChargePeriodEnd", "ChargePeriodStart", "ContractedCost",
	"EffectiveCost", "InvoiceIssuerName", "ListCost", "PricingQuantity", "PricingUnit", "ProviderName",
	"PublisherName", "ServiceCategory", "ServiceName",
}

// focusServiceCategories is FOCUS 1.2's allowed ServiceCategory values.
var focusServiceCategories = []string{
	"AI and Machine Learning", "Analytics", "Business Applications", "Compute", "Databases", "Developer Tools",
	"Multicloud", "Identity", "Integration", "Internet of Things", "Management and Governance", "Media",
	"Migration", "Mobile", "Networking", "Security", "Storage", "Web", "Other",
}

var focusDecimal = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)

// The FOCUS export has every mandatory FOCUS 1.2 column, with values of the
// right form on every row; its BilledCost adds up to /v1/usage's cost for
// the same range; sub accounts carry their names, a formula-looking one
// neutralised.
func TestFocusExport(t *testing.T) {
	t.Parallel()
	b := setup(t, at(nov5))
	alice := b.newUser(t)
	_, anthropicID := spendFixture(t, b, alice)
	namedID := namedFixture(t, b, alice, "=cmd|' /C calc'!A0")
	day := time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC)
	syncResult(t, b, anthropicID, tokka.SyncResult{Window: tokka.Window{From: day, To: day.AddDate(0, 0, 1)},
		Usage:     []tokka.UsageRow{{Day: day, Family: "messages", Model: "claude-b", ProjectID: "wrkspc_1", Tokens: tokka.Tokens{InputUncachedTokens: 1500000, OutputTokens: 20}}},
		Costs:     []tokka.CostRow{{Day: day, Model: "claude-b", LineItem: "Claude B Usage", ProjectID: "wrkspc_1", AmountUSD: dec("3.333333"), Amount: dec("333.3333"), Currency: "USD"}},
		Directory: &tokka.Directory{Projects: []tokka.DirectoryProject{{ID: "wrkspc_1", Kind: tokka.KindWorkspace, Name: "Team ✓"}}}})

	const rng = "from=2026-10-01&to=2026-11-05"
	status, h, body := b.do(t, alice, http.MethodGet, "/v1/usage/export.focus.csv?"+rng, nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Equal(t, "text/csv; charset=utf-8", h.Get("Content-Type"))
	records, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	require.NoError(t, err)
	header := records[0]
	col := map[string]int{}
	for i, c := range header {
		col[c] = i
	}
	for _, c := range focusMandatory {
		require.Contains(t, col, c, "mandatory FOCUS column missing")
	}
	rows := records[1:]
	// 36 days of OpenAI spend, 4 of Anthropic's without a workspace, one
	// day of the named OpenAI connection's two projects, Anthropic's
	// workspace on Nov 4.
	require.Len(t, rows, 36+4+2+1)

	total := decimal.Zero
	bySub := map[string][]string{}
	for _, r := range rows {
		v := func(c string) string { return r[col[c]] }
		for _, c := range []string{"BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "ConsumedQuantity", "PricingQuantity"} {
			require.Regexp(t, focusDecimal, v(c), c)
		}
		total = total.Add(dec(v("BilledCost")))
		require.Equal(t, "USD", v("BillingCurrency"))
		require.Equal(t, "Usage", v("ChargeCategory"))
		require.Contains(t, []string{"", "Correction"}, v("ChargeClass"))
		require.Contains(t, focusServiceCategories, v("ServiceCategory"))
		require.Equal(t, "AI and Machine Learning", v("ServiceCategory"))
		require.Contains(t, []string{"OpenAI", "Anthropic"}, v("ProviderName"))
		require.Equal(t, v("ProviderName"), v("PublisherName"))
		require.Equal(t, v("ProviderName"), v("InvoiceIssuerName"))
		for _, c := range []string{"BillingAccountId", "BillingAccountName", "ChargeDescription", "ServiceName", "PricingUnit", "ConsumedUnit"} {
			require.NotEmpty(t, v(c), c)
		}
		times := map[string]time.Time{}
		for _, c := range []string{"ChargePeriodStart", "ChargePeriodEnd", "BillingPeriodStart", "BillingPeriodEnd"} {
			ts, err := time.Parse(time.RFC3339, v(c))
			require.NoError(t, err, c)
			require.Equal(t, time.UTC, ts.Location(), c)
			times[c] = ts
		}
		require.Equal(t, times["ChargePeriodStart"].AddDate(0, 0, 1), times["ChargePeriodEnd"])
		require.Equal(t, times["ChargePeriodStart"].Truncate(24*time.Hour), times["ChargePeriodStart"])
		require.Equal(t, 1, times["BillingPeriodStart"].Day())
		require.Equal(t, times["BillingPeriodStart"].AddDate(0, 1, 0), times["BillingPeriodEnd"])
		require.False(t, times["ChargePeriodStart"].Before(times["BillingPeriodStart"]))
		require.True(t, times["ChargePeriodEnd"].Compare(times["BillingPeriodEnd"]) <= 0)
		// Pricing is per million tokens of what was consumed.
		require.True(t, dec(v("ConsumedQuantity")).Shift(-6).Equal(dec(v("PricingQuantity"))), v("PricingQuantity"))
		if v("SubAccountId") != "" {
			bySub[v("SubAccountId")] = r
		}
	}

	status, _, body = b.do(t, alice, http.MethodGet, "/v1/usage?"+rng+"&group_by=provider", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var p struct{ Totals map[string]any }
	require.NoError(t, json.Unmarshal(body, &p))
	require.True(t, dec(p.Totals["cost_usd"].(string)).Equal(total), "FOCUS BilledCost %s, /v1/usage %s", total, p.Totals["cost_usd"])
	// $1 a day on OpenAI for 36 days, $2 on the named connection, $0.25 a
	// day on Anthropic for 5 days but Nov 4, which the workspace sync
	// restated as $3.333333.
	require.True(t, dec("42.333333").Equal(total), total.String())

	named := bySub["proj_named"]
	require.Equal(t, "'=cmd|' /C calc'!A0", named[col["SubAccountName"]])
	require.Equal(t, "Project", named[col["SubAccountType"]])
	require.Equal(t, namedID, named[col["BillingAccountId"]])
	require.Equal(t, "gpt-a", named[col["SkuId"]])
	require.Equal(t, "2026-11-03T00:00:00Z", named[col["ChargePeriodStart"]])
	require.Equal(t, "2026-11-04T00:00:00Z", named[col["ChargePeriodEnd"]])
	require.Equal(t, "2026-11-01T00:00:00Z", named[col["BillingPeriodStart"]])
	require.Equal(t, "2026-12-01T00:00:00Z", named[col["BillingPeriodEnd"]])
	require.Equal(t, "2", named[col["BilledCost"]])
	require.Equal(t, "", bySub["proj_unknown"][col["SubAccountName"]])
	ws := bySub["wrkspc_1"]
	require.Equal(t, "Team ✓", ws[col["SubAccountName"]])
	require.Equal(t, "Workspace", ws[col["SubAccountType"]])
	require.Equal(t, "Anthropic", ws[col["ProviderName"]])
	require.Equal(t, "1500020", ws[col["ConsumedQuantity"]])
	require.Equal(t, "1.50002", ws[col["PricingQuantity"]])
	require.Equal(t, "3.333333", ws[col["BilledCost"]])

	// Another user's export has only the header.
	status, _, body = b.do(t, b.newUser(t), http.MethodGet, "/v1/usage/export.focus.csv?"+rng, nil)
	require.Equal(t, http.StatusOK, status)
	records, err = csv.NewReader(bytes.NewReader(body)).ReadAll()
	require.NoError(t, err)
	require.Equal(t, [][]string{header}, records)
	require.True(t, slices.Contains(header, "x_Provisional"))
}

// The FOCUS export keeps the usage range limits and refuses parameters it
// does not take, with problem+json.
func TestFocusExportRefusesBadRanges(t *testing.T) {
	t.Parallel()
	b := setup(t, at(nov5))
	alice := b.newUser(t)
	for _, q := range []string{
		"from=2026-11-05&to=2026-11-01",  // from after to
		"from=2025-01-01&to=2026-11-01",  // more than 366 days
		"from=2026-11-31&to=2026-12-01",  // not a day
		"from=2026-11-01&group_by=model", // a fixed grain
		"from=2026-11-01&include_zero=true",
		"from=2026-11-01&service_tier=default",
	} {
		status, h, body := b.do(t, alice, http.MethodGet, "/v1/usage/export.focus.csv?"+q, nil)
		require.Equal(t, http.StatusBadRequest, status, q+": "+string(body))
		require.Equal(t, "application/problem+json", h.Get("Content-Type"), q)
	}
}

// The FOCUS export is an expensive read: it spends the same per-user budget
// as the CSV export, and a request refused as invalid spends nothing.
func TestFocusExportSpendsTheExpensiveReadBudget(t *testing.T) {
	t.Parallel()
	b := setup(t, fromIP(uniqueLoopback()), configured(httpapi.Config{RateLimits: httpapi.RateLimits{ExpensiveReadsPerMinute: 1}}))
	alice := b.newUser(t)
	for i := 0; i < 3; i++ {
		status, h, body := b.do(t, alice, http.MethodGet, "/v1/usage/export.focus.csv?from=someday", nil)
		requireProblem(t, status, h, body, http.StatusBadRequest, "invalid")
	}
	status, h, body := b.do(t, alice, http.MethodGet, "/v1/usage/export.focus.csv", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Equal(t, "0", h.Get("RateLimit-Remaining"))
	status, h, body = b.do(t, alice, http.MethodGet, "/v1/usage/export.csv", nil)
	requireProblem(t, status, h, body, http.StatusTooManyRequests, "the CSV export after the FOCUS one")
}
