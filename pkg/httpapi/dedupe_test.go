package httpapi_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// figures are every total a user can read: usage over the backfilled range
// (all and per provider), the month summary, and a budget's spend.
type figures struct {
	Cost, Tokens, OpenAICost, AnthropicCost string
	MonthToDate, Tokens30                   string
	BudgetSpend                             string
}

func (b *testBundle) figures(t *testing.T, u user, budgetID string) figures {
	t.Helper()
	var f figures
	q := "from=" + b.now.AddDate(0, 0, -34).Format(time.DateOnly) + "&to=" + b.now.Format(time.DateOnly)
	all := b.usage(t, u, q)
	f.Cost, f.Tokens = all.Totals["cost_usd"].(string), jsonNumber(all.Totals["input_tokens"])
	byProvider := b.usage(t, u, q+"&group_by=provider")
	for _, r := range byProvider.Data {
		if r["provider"] == "openai" {
			f.OpenAICost = r["cost_usd"].(string)
		} else {
			f.AnthropicCost = r["cost_usd"].(string)
		}
	}
	status, _, body := b.do(t, u, http.MethodGet, "/v1/usage/summary", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var s struct {
		Overall struct {
			MTD    string `json:"month_to_date_usd"`
			Tokens int64  `json:"tokens_month_to_date"`
		}
	}
	require.NoError(t, json.Unmarshal(body, &s))
	f.MonthToDate, f.Tokens30 = s.Overall.MTD, jsonNumber(float64(s.Overall.Tokens))
	status, _, body = b.do(t, u, http.MethodGet, "/v1/budgets/"+budgetID, nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var bud struct {
		Status struct {
			SpendUSD string `json:"spend_usd"`
		} `json:"status"`
	}
	require.NoError(t, json.Unmarshal(body, &bud))
	f.BudgetSpend = bud.Status.SpendUSD
	return f
}

func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func (b *testBundle) post(t *testing.T, u user, p tokka.Provider, key string, hdr ...string) (int, map[string]any) {
	t.Helper()
	buf, err := json.Marshal(map[string]string{"provider": string(p), "api_key": key})
	require.NoError(t, err)
	status, _, body := b.do(t, u, http.MethodPost, "/v1/connections", string(buf), hdr...)
	var out map[string]any
	require.NoError(t, json.Unmarshal(body, &out), string(body))
	return status, out
}

// TestSameOrganisationTwiceNeverChangesATotal adds each provider's
// organisation a second time in every way a client can — the same key
// again, a retried POST with an Idempotency-Key, and another key of the same
// organisation — and checks that no total the user can read moves: usage,
// the month summary, and a budget's spend.
func TestSameOrganisationTwiceNeverChangesATotal(t *testing.T) {
	t.Parallel()
	b := setup(t, withSyncer())
	alice := b.newUser(t)
	status, _, body := b.do(t, alice, http.MethodPost, "/v1/budgets", map[string]any{"amount_usd": "100000"})
	require.Equal(t, http.StatusCreated, status, string(body))
	var budget struct{ ID string }
	require.NoError(t, json.Unmarshal(body, &budget))

	keys := map[tokka.Provider][2]string{
		// Two different keys of one organisation each (the fake provider's
		// -org_ marker names the organisation).
		tokka.OpenAI:    {"sk-admin-first-org_dedupeA-" + alice.id[:8], "sk-admin-second-org_dedupeA-" + alice.id[:8]},
		tokka.Anthropic: {"sk-ant-admin01-first-org_dedupeB-" + alice.id[:8], "sk-ant-admin01-second-org_dedupeB-" + alice.id[:8]},
	}
	first := map[tokka.Provider]string{}
	for p, k := range keys {
		status, c := b.post(t, alice, p, k[0])
		require.Equal(t, http.StatusCreated, status, c)
		first[p] = c["id"].(string)
	}
	b.syncAll(t)
	want := b.figures(t, alice, budget.ID)
	require.NotEqual(t, "0", want.OpenAICost)
	require.NotEqual(t, "0", want.AnthropicCost)

	for p, k := range keys {
		// The same key again: refused, pointing at the connection that has it.
		status, prob := b.post(t, alice, p, k[0])
		require.Equal(t, http.StatusConflict, status, prob)
		require.Equal(t, first[p], prob["connection_id"], prob)
		require.Contains(t, prob["detail"], first[p])
	}
	b.syncAll(t)
	require.Equal(t, want, b.figures(t, alice, budget.ID), "after the same keys again")

	// A new organisation, posted with an Idempotency-Key and retried: one
	// connection, counted once.
	third := "sk-admin-third-org_dedupeC-" + alice.id[:8]
	status, c1 := b.post(t, alice, tokka.OpenAI, third, "Idempotency-Key", "retry-"+alice.id)
	require.Equal(t, http.StatusCreated, status, c1)
	b.syncAll(t)
	want = b.figures(t, alice, budget.ID)
	status, c2 := b.post(t, alice, tokka.OpenAI, third, "Idempotency-Key", "retry-"+alice.id)
	require.Equal(t, http.StatusCreated, status, c2)
	require.Equal(t, c1["id"], c2["id"], "the retry is answered with the first response")
	b.syncAll(t)
	require.Equal(t, want, b.figures(t, alice, budget.ID), "after a retried POST")

	// Another key of an organisation already connected: accepted (Tokka
	// cannot know at paste time), then found at its first sync, marked
	// duplicate and never counted; the owner is told which connection
	// already covers it.
	dup := map[tokka.Provider]string{}
	for p, k := range keys {
		status, c := b.post(t, alice, p, k[1])
		require.Equal(t, http.StatusCreated, status, c)
		dup[p] = c["id"].(string)
	}
	b.syncAll(t)
	require.Equal(t, want, b.figures(t, alice, budget.ID), "after other keys of the same organisations")
	for p, id := range dup {
		status, _, body := b.do(t, alice, http.MethodGet, "/v1/connections/"+id, nil)
		require.Equal(t, http.StatusOK, status)
		var c struct {
			Status    string  `json:"status"`
			LastError *string `json:"last_error"`
		}
		require.NoError(t, json.Unmarshal(body, &c))
		require.Equal(t, "duplicate", c.Status, p)
		require.NotNil(t, c.LastError)
		require.Contains(t, *c.LastError, first[p])
		var rows int
		require.NoError(t, b.sql.Get(&rows, `SELECT (SELECT count(*) FROM tokka.usage_daily WHERE connection_id = $1)
			+ (SELECT count(*) FROM tokka.cost_daily WHERE connection_id = $1)`, id))
		require.Zero(t, rows, "a duplicate's rows are never written")
	}
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/alerts", nil)
	require.Equal(t, http.StatusOK, status)
	var alerts struct {
		Alerts []struct {
			Kind         string          `json:"kind"`
			ConnectionID *string         `json:"connection_id"`
			Detail       json.RawMessage `json:"detail"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &alerts))
	told := map[string]string{}
	for _, a := range alerts.Alerts {
		if a.Kind == "duplicate_connection" && a.ConnectionID != nil {
			var d struct {
				Existing string `json:"existing_connection_id"`
			}
			require.NoError(t, json.Unmarshal(a.Detail, &d))
			told[*a.ConnectionID] = d.Existing
		}
	}
	require.Equal(t, map[string]string{dup[tokka.OpenAI]: first[tokka.OpenAI],
		dup[tokka.Anthropic]: first[tokka.Anthropic]}, told)

	// A duplicate is not synced again, and "sync now" says why.
	status, _, _ = b.do(t, alice, http.MethodPost, "/v1/connections/"+dup[tokka.OpenAI]+"/sync", nil)
	require.Equal(t, http.StatusConflict, status)
}
