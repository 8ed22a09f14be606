package httpapi_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"

	openapi "github.com/tokka-dev/tokka"
)

// TestTheSpecSaysWhatTheServerDoes holds openapi.yaml to what the server
// does where a schema check cannot: the longest usage range as the server
// counts it (both ends included), one format for months in the summary,
// budgets and usage (JSON and CSV), the summary's provider as an enum, and
// nullable enums written without a null member (which generators turn
// into a "<nil>" constant).
func TestTheSpecSaysWhatTheServerDoes(t *testing.T) {
	t.Parallel()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Spec)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(context.Background()))
	b := setup(t, at(nov5))
	alice := b.newUser(t)
	spendFixture(t, b, alice)

	// 366 days, both ends counted: 2024 (a leap year) whole, not a day more.
	b.usage(t, alice, "from=2024-01-01&to=2024-12-31")
	status, p := b.problem(t, alice, http.MethodGet, "/v1/usage?from=2024-01-01&to=2025-01-01", nil)
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, p.Detail, "366 days")
	to := doc.Components.Parameters["To"].Value.Description
	from := doc.Components.Parameters["From"].Value.Description
	for _, d := range []string{to, from} {
		require.Contains(t, d, "at most 365 days after `from`")
	}
	require.Contains(t, from, "spans at most 366 days")

	// Months: YYYY-MM everywhere.
	month := regexp.MustCompile(`^[0-9]{4}-[0-9]{2}$`)
	for _, row := range b.usage(t, alice, "from=2026-10-01&to=2026-11-05&group_by=month").Data {
		require.Regexp(t, month, row["month"])
	}
	status, _, body := b.do(t, alice, http.MethodGet, "/v1/usage/export.csv?from=2026-10-01&to=2026-11-05&group_by=month", nil)
	require.Equal(t, http.StatusOK, status)
	records, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	require.NoError(t, err)
	require.Equal(t, "month", records[0][0])
	for _, r := range records[1:] {
		require.Regexp(t, month, r[0])
	}
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/usage/summary", nil)
	require.Equal(t, http.StatusOK, status)
	var summary struct {
		Month      string
		ByProvider []struct{ Provider string } `json:"by_provider"`
	}
	require.NoError(t, json.Unmarshal(body, &summary))
	require.Equal(t, "2026-11", summary.Month)
	status, _, body = b.do(t, alice, http.MethodPost, "/v1/budgets", map[string]string{"amount_usd": "5"})
	require.Equal(t, http.StatusCreated, status)
	require.Contains(t, string(body), `"month":"2026-11"`)
	schemas := doc.Components.Schemas
	for _, name := range []string{"UsageRow", "UsageSummary", "BudgetStatus"} {
		require.Equal(t, "#/components/schemas/Month", schemas[name].Value.Properties["month"].Ref, name)
	}

	// The summary's provider is an enum of what it can be.
	var enum []string
	for _, v := range schemas["ProviderSummary"].Value.Properties["provider"].Value.Enum {
		enum = append(enum, v.(string))
	}
	require.ElementsMatch(t, []string{"openai", "anthropic", "all"}, enum)
	for _, p := range summary.ByProvider {
		require.Contains(t, enum, p.Provider)
	}

	// No enum lists null: a nullable one says nullable: true instead.
	var walk func(name string, s *openapi3.SchemaRef)
	walk = func(name string, s *openapi3.SchemaRef) {
		if s == nil || s.Value == nil {
			return
		}
		for _, v := range s.Value.Enum {
			require.NotNil(t, v, "%s: an enum with null becomes a \"<nil>\" constant in generated clients; use nullable: true", name)
		}
		for prop, p := range s.Value.Properties {
			walk(name+"."+prop, p)
		}
		walk(name+"[]", s.Value.Items)
		for _, all := range s.Value.AllOf {
			walk(name, all)
		}
	}
	for name, s := range schemas {
		walk(name, s)
	}
}
