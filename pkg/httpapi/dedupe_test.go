package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	openapi "github.com/tokka-dev/tokka"
	"github.com/tokka-dev/tokka/pkg/anthropic"
	"github.com/tokka-dev/tokka/pkg/auth"
	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/keyring"
	"github.com/tokka-dev/tokka/pkg/logtest"
	"github.com/tokka-dev/tokka/pkg/openai"
	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/spectest"
	"github.com/tokka-dev/tokka/pkg/syncer"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// syncBundle is the api with a real syncer and the fake provider behind it,
// on a database of its own (a syncer pass takes every due connection, so it
// must not see other tests' connections), all on one fixed clock.
type syncBundle struct {
	*testBundle
	syncer *syncer.Syncer
	now    time.Time
}

func setupSync(t *testing.T) *syncBundle {
	t.Helper()
	now := time.Now().UTC()
	clock := func() time.Time { return now }
	kr, err := keyring.New("test-encryption-key-0123456789-abcdef", nil)
	require.NoError(t, err)
	db, raw := pgtest.OpenURL(t, pgtest.Fresh(t))
	verifier, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(jwtSecret)})
	require.NoError(t, err)
	logs := &logtest.Buffer{}
	log := zerolog.New(logs).Level(zerolog.DebugLevel)
	e := httpapi.New(httpapi.Config{Metrics: httpapi.NewMetrics(prometheus.NewRegistry()), Now: clock,
		RateLimiter: allowAll{}, Fingerprints: fingerprints(t)}, db, kr.PublicKey(), verifier, log, openapi.Spec)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	fake := httptest.NewServer(fakeprovider.New(fakeprovider.Options{Now: clock}))
	t.Cleanup(fake.Close)
	fast := provider.HTTPClient{Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }}
	s := syncer.New(syncer.Config{Instance: "dedupe", BackfillDays: 35, Now: clock}, db, kr,
		map[tokka.Provider]provider.Client{tokka.OpenAI: openai.New(fake.URL, fast), tokka.Anthropic: anthropic.New(fake.URL, fast)},
		log, syncer.NewMetrics(prometheus.NewRegistry()))
	return &syncBundle{
		testBundle: &testBundle{url: srv.URL, client: spectest.Client(t), db: db, sql: raw, kr: kr, logs: logs},
		syncer:     s, now: now,
	}
}

// syncAll runs syncer passes until nothing is due.
func (b *syncBundle) syncAll(t *testing.T) {
	t.Helper()
	for i := 0; i < 5; i++ {
		sum, err := b.syncer.RunOnce(context.Background())
		require.NoError(t, err)
		if sum == (syncer.Summary{}) {
			return
		}
	}
	t.Fatal("connections stayed due after five passes")
}

// figures are every total a user can read: usage over the backfilled range
// (all and per provider), the month summary, and a budget's spend.
type figures struct {
	Cost, Tokens, OpenAICost, AnthropicCost string
	MonthToDate, Tokens30                   string
	BudgetSpend                             string
}

func (b *syncBundle) figures(t *testing.T, u user, budgetID string) figures {
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

func (b *syncBundle) post(t *testing.T, u user, p tokka.Provider, key string, hdr ...string) (int, map[string]any) {
	t.Helper()
	buf, err := json.Marshal(map[string]string{"provider": string(p), "api_key": key})
	require.NoError(t, err)
	status, _, body := b.doWith(t, u, http.MethodPost, "/v1/connections", string(buf), hdr...)
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
	b := setupSync(t)
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
