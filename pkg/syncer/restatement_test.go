package syncer_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/anthropic"
	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/keyring"
	"github.com/tokka-dev/tokka/pkg/logtest"
	"github.com/tokka-dev/tokka/pkg/openai"
	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/syncer"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// dayModelKey is the grain users compare with their provider console.
type dayModelKey struct{ day, model string }

// dayTotals are everything Tokka stores for one day and model, added up. Cost
// is a decimal string, so maps of dayTotals compare exactly.
type dayTotals struct {
	uncached, read, write5m, write1h, output, requests                   int64
	images, characters, seconds, bytes, sessions, fileSearches, searches int64
	cost                                                                 string
}

// servedTotals computes, from the fake's pure data functions and not
// through HTTP or the clients, what the provider serves for key over w, by
// day and model. epoch says which restatement epoch each day is served at.
// Cost lines are attributed to the model their line item or record names.
func servedTotals(p tokka.Provider, key string, w tokka.Window, epoch func(day time.Time) int) map[dayModelKey]dayTotals {
	out := map[dayModelKey]dayTotals{}
	cost := map[dayModelKey]decimal.Decimal{}
	add := func(k dayModelKey, f func(t *dayTotals)) {
		t := out[k]
		f(&t)
		out[k] = t
	}
	for d := w.From; d.Before(w.To); d = d.AddDate(0, 0, 1) {
		day := d.Format(time.DateOnly)
		if p == tokka.OpenAI {
			for _, r := range fakeprovider.OpenAIDayAt(key, d, epoch(d)) {
				add(dayModelKey{day, r.Model}, func(t *dayTotals) {
					switch r.Family {
					case "completions":
						t.uncached += r.InputTokens - r.InputCachedTokens - r.InputCacheWriteTokens
						t.read += r.InputCachedTokens
						t.write5m += r.InputCacheWriteTokens
						t.output += r.OutputTokens
					case "embeddings", "moderations":
						t.uncached += r.InputTokens
					case "file_search_calls":
						t.fileSearches += r.ToolCalls
					case "web_search_calls":
						// Its model requests are completions' requests too.
						t.searches += r.ToolCalls
						return
					}
					t.requests += r.Requests
					t.images += r.Images
					t.characters += r.Characters
					t.seconds += r.Seconds
					t.bytes += r.UsageBytes
					t.sessions += r.Sessions
				})
				for _, c := range r.Costs {
					k := dayModelKey{day, strings.SplitN(c.LineItem, ", ", 2)[0]}
					cost[k] = cost[k].Add(c.Amount)
				}
			}
			continue
		}
		for _, r := range fakeprovider.AnthropicDayAt(key, d, epoch(d)) {
			add(dayModelKey{day, r.Model}, func(t *dayTotals) {
				t.uncached += r.UncachedInputTokens
				t.read += r.CacheReadInputTokens
				t.write5m += r.CacheCreation5mTokens
				t.write1h += r.CacheCreation1hTokens
				t.output += r.OutputTokens
				t.searches += r.WebSearchRequests
			})
			for _, c := range r.Costs {
				k := dayModelKey{day, c.Model}
				cost[k] = cost[k].Add(c.AmountCents.Shift(-2))
			}
		}
	}
	for k, c := range cost {
		add(k, func(t *dayTotals) { t.cost = c.String() })
	}
	for k, t := range out {
		if t.cost == "" {
			t.cost = "0"
			out[k] = t
		}
	}
	return out
}

// storedTotals reads what the database holds for connection id, by day and
// model, added up in SQL (numeric sums, so the cents are Postgres's).
func (b *testBundle) storedTotals(t *testing.T, id string) map[dayModelKey]dayTotals {
	t.Helper()
	out := map[dayModelKey]dayTotals{}
	rows, err := b.sql.Query(`
		SELECT to_char(day, 'YYYY-MM-DD'), model,
			sum(input_uncached_tokens), sum(cache_read_tokens), sum(cache_write_5m_tokens), sum(cache_write_1h_tokens),
			sum(output_tokens), sum(requests), sum(images), sum(characters), sum(seconds), sum(bytes), sum(sessions),
			sum(file_searches), sum(web_searches)
		FROM tokka.usage_daily WHERE connection_id = $1 GROUP BY 1, 2`, id)
	require.NoError(t, err)
	for rows.Next() {
		var k dayModelKey
		var v dayTotals
		require.NoError(t, rows.Scan(&k.day, &k.model, &v.uncached, &v.read, &v.write5m, &v.write1h, &v.output, &v.requests,
			&v.images, &v.characters, &v.seconds, &v.bytes, &v.sessions, &v.fileSearches, &v.searches))
		v.cost = "0"
		out[k] = v
	}
	require.NoError(t, rows.Err())
	rows, err = b.sql.Query(`SELECT to_char(day, 'YYYY-MM-DD'), model, sum(amount_usd) FROM tokka.cost_daily WHERE connection_id = $1 GROUP BY 1, 2`, id)
	require.NoError(t, err)
	for rows.Next() {
		var k dayModelKey
		var c decimal.Decimal
		require.NoError(t, rows.Scan(&k.day, &k.model, &c))
		v := out[k]
		v.cost = c.String()
		out[k] = v
	}
	require.NoError(t, rows.Err())
	return out
}

// requireStoredEqualsServed compares per day and model, then per model and
// overall, so a failure says at which grain the numbers part.
// unrevised is the epoch of a provider that has revised no day.
func unrevised(time.Time) int { return 0 }

// requireStoresWhatIsServed fails unless what is stored for connection id
// equals, to the token and the cent, what the fake serves for key of
// provider p over w with no day revised.
func (b *testBundle) requireStoresWhatIsServed(t *testing.T, id string, p tokka.Provider, key string, w tokka.Window) {
	t.Helper()
	requireStoredEqualsServed(t, servedTotals(p, key, w, unrevised), b.storedTotals(t, id), key)
}

func requireStoredEqualsServed(t *testing.T, want, got map[dayModelKey]dayTotals, msg string) {
	t.Helper()
	require.NotEmpty(t, want, msg)
	for k, w := range want {
		require.Equal(t, w, got[k], "%s: %v", msg, k)
	}
	require.Len(t, got, len(want), msg)
	perModel := func(m map[dayModelKey]dayTotals) (map[string]dayTotals, dayTotals) {
		by, all := map[string]dayTotals{}, dayTotals{}
		for k, v := range m {
			by[k.model] = sumTotals(by[k.model], v)
			all = sumTotals(all, v)
		}
		return by, all
	}
	wm, wa := perModel(want)
	gm, ga := perModel(got)
	require.Equal(t, wm, gm, msg)
	require.Equal(t, wa, ga, msg)
}

func sumTotals(a, b dayTotals) dayTotals {
	dec := func(s string) decimal.Decimal {
		if s == "" {
			return decimal.Zero
		}
		return decimal.RequireFromString(s)
	}
	return dayTotals{
		a.uncached + b.uncached, a.read + b.read, a.write5m + b.write5m, a.write1h + b.write1h, a.output + b.output,
		a.requests + b.requests, a.images + b.images, a.characters + b.characters, a.seconds + b.seconds, a.bytes + b.bytes,
		a.sessions + b.sessions, a.fileSearches + b.fileSearches, a.searches + b.searches,
		dec(a.cost).Add(dec(b.cost)).String(),
	}
}

// testClock is a settable time shared by the syncer and the fake, so both agree
// on "today" whatever the wall clock does during the test.
type testClock struct{ unix atomic.Int64 }

func newTestClock(t time.Time) *testClock {
	c := &testClock{}
	c.unix.Store(t.Unix())
	return c
}

func (c *testClock) now() time.Time          { return time.Unix(c.unix.Load(), 0).UTC() }
func (c *testClock) advance(d time.Duration) { c.unix.Add(int64(d / time.Second)) }

// restart sets the clock to the real time again: the database judges what
// is due by its own clock, so a test whose set-up ran long (a loaded
// machine) restarts the test clock before a pass, or retries the pass
// schedules from the stale start would already be due during it.
func (c *testClock) restart() { c.unix.Store(time.Now().Unix()) }

// clockedSyncer is a syncer on store with the bundle's clock (clockedBy)
// and default windows (90-day backfill, 3-day re-sync); cfg's zero fields
// take those defaults, Concurrency 8.
func (b *testBundle) clockedSyncer(cfg syncer.Config, store syncer.Store) *syncer.Syncer {
	log := zerolog.New(b.logs).Level(zerolog.DebugLevel)
	// Config.Now is also what next_sync_at is computed from: the clock
	// stays near the wall clock, so nothing is due again by accident.
	cfg.Now = b.clock.now
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 8
	}
	return syncer.New(cfg, store, b.kr, b.clients, log, syncer.NewMetrics(prometheus.NewRegistry()))
}

// syncDueNow asks for a sync of ids now, as the scheduler would after SYNC_INTERVAL.
func (b *testBundle) syncDueNow(t *testing.T, ids ...string) {
	t.Helper()
	_, err := b.sql.Exec(`UPDATE tokka.connections SET next_sync_at = now() WHERE id = ANY($1)`, pqArray(ids...))
	require.NoError(t, err)
}

func (b *testBundle) usageRowCount(t *testing.T, id string) (n int) {
	t.Helper()
	require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.usage_daily WHERE connection_id = $1`, id))
	return n
}

// TestRestatedDaysAreReplacedAndNothingDoubles is issue 4's "done when" for
// windows: a first sync backfills 90 days; the provider revises recent past
// days; the next sync (3-day window) stores the revision; re-syncs change
// nothing; a day later the revised days stay revised and the new day
// appears. At every step the stored dayTotals per day, per model and overall
// equal what the provider serves, to the token and to the cent, for an
// OpenAI and an Anthropic key side by side with a key that never changes.
func TestRestatedDaysAreReplacedAndNothingDoubles(t *testing.T) {
	t.Parallel()
	c := newTestClock(time.Now())
	b := setup(t, clockedBy(c))
	user := uuid.NewString()
	keys := map[tokka.Provider]string{
		tokka.OpenAI:    "sk-admin-" + user[:8] + "-restated-rst",
		tokka.Anthropic: "sk-ant-admin01-" + user[:8] + "-restated-rst",
	}
	const steady = tokka.Provider("steady")
	steadyKey := "sk-admin-" + user[:8] + "-steady"
	ids := map[tokka.Provider]string{}
	for p, k := range keys {
		ids[p] = b.addConnection(t, user, p, k)
	}
	ids[steady] = b.addConnection(t, user, tokka.OpenAI, steadyKey)
	keys[steady] = steadyKey
	realProvider := func(p tokka.Provider) tokka.Provider {
		if p == steady {
			return tokka.OpenAI
		}
		return p
	}

	// Which epoch the fake serves each day at, tracked independently of it:
	// a restatement revises today and the DefaultRestateDays days before.
	epochs := map[string]int{}
	restate := func() {
		today := c.now().Truncate(24 * time.Hour)
		var e int
		for p, k := range keys {
			if p != steady {
				e = b.fake.Restate(k)
			}
		}
		for d := today.AddDate(0, 0, -fakeprovider.DefaultRestateDays); !d.After(today); d = d.AddDate(0, 0, 1) {
			epochs[d.Format(time.DateOnly)] = e
		}
	}
	epochOf := func(p tokka.Provider) func(time.Time) int {
		return func(d time.Time) int {
			if p == steady {
				return 0
			}
			return epochs[d.Format(time.DateOnly)]
		}
	}
	backfill := tokka.DayWindow(c.now(), 90)
	check := func(step string, w tokka.Window) {
		t.Helper()
		for p, id := range ids {
			st, reason := b.status(t, id)
			require.Equal(t, "active", st, "%s %s: %s", step, p, reason)
			requireStoredEqualsServed(t, servedTotals(realProvider(p), keys[p], w, epochOf(p)), b.storedTotals(t, id), step+" "+string(p))
		}
	}
	sync := func(step string) {
		t.Helper()
		sum, err := b.clockedSyncer(syncer.Config{Instance: step}, b.db).RunOnce(context.Background())
		require.NoError(t, err)
		require.Equal(t, syncer.Summary{Synced: len(ids)}, sum, step)
	}

	sync("backfill")
	check("after the backfill", backfill)
	rowsBefore := map[tokka.Provider]int{}
	for p, id := range ids {
		rowsBefore[p] = b.usageRowCount(t, id)
	}

	// The provider revises the last three days; the stored numbers are the
	// old ones until the next sync, which replaces exactly those days.
	before := map[tokka.Provider]map[dayModelKey]dayTotals{}
	for p, id := range ids {
		before[p] = b.storedTotals(t, id)
	}
	restate()
	for _, p := range []tokka.Provider{tokka.OpenAI, tokka.Anthropic} {
		require.NotEqual(t, servedTotals(p, keys[p], backfill, epochOf(p)), before[p], "the restatement must change what %s serves", p)
	}
	b.syncDueNow(t, ids[tokka.OpenAI], ids[tokka.Anthropic], ids[steady])
	sync("after the restatement")
	check("after the restatement", backfill)
	require.Equal(t, before[steady], b.storedTotals(t, ids[steady]), "an unrevised key's numbers do not move")
	for _, p := range []tokka.Provider{tokka.OpenAI, tokka.Anthropic} {
		after := b.storedTotals(t, ids[p])
		oldest := c.now().Truncate(24*time.Hour).AddDate(0, 0, -fakeprovider.DefaultRestateDays).Format(time.DateOnly)
		for k, v := range before[p] {
			if k.day < oldest {
				require.Equal(t, v, after[k], "%s %v is outside the re-sync window and untouched", p, k)
			}
		}
	}

	// Re-syncing without a revision changes nothing and doubles nothing.
	for i := 0; i < 2; i++ {
		b.syncDueNow(t, ids[tokka.OpenAI], ids[tokka.Anthropic], ids[steady])
		sync(fmt.Sprintf("re-sync %d", i))
		check(fmt.Sprintf("after re-sync %d", i), backfill)
	}
	require.Equal(t, rowsBefore[steady], b.usageRowCount(t, ids[steady]))

	// A day later (and a little more, so next_sync_at stays ahead of the
	// database's clock) a new day exists; yesterday's revision stands even
	// though the fake's restatement reach has moved on, and a second
	// revision of the new recent days is picked up too.
	c.advance(24*time.Hour + time.Minute)
	restate()
	b.syncDueNow(t, ids[tokka.OpenAI], ids[tokka.Anthropic], ids[steady])
	sync("a day later")
	check("a day later", tokka.Window{From: backfill.From, To: backfill.To.AddDate(0, 0, 1)})
	for p, id := range ids {
		require.Len(t, b.actions(t, id), 1+2*5, "%s: one decryption and one success per sync", p)
	}
	for _, k := range keys {
		require.NotContains(t, b.logs.String(), k)
	}
}

// TestAwkwardAmountsAddUpExactlyOverAYear stores a year of awkward money
// (a string "0.50", a float-hostile 0.1, 1e-7 dollars, "123.78912" cents,
// 1e-7 cents) and checks the database's sums are exact: numeric in
// Postgres, shopspring decimals in Go, no float anywhere in between.
func TestAwkwardAmountsAddUpExactlyOverAYear(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC()
	const days = 366
	w := tokka.DayWindow(now, days)
	oaiDay := `[{"object":"organization.costs.result","amount":{"value":"0.50","currency":"usd"},"line_item":"gpt-4.1, input","project_id":"proj_1"},
		{"object":"organization.costs.result","amount":{"value":1e-7,"currency":"usd"},"line_item":"gpt-4.1, output","project_id":"proj_1"},
		{"object":"organization.costs.result","amount":{"value":0.1,"currency":"usd"},"line_item":"Text tokens","project_id":null},
		{"object":"organization.costs.result","amount":{"value":"123.456789012345","currency":"usd"},"line_item":"o3, input","project_id":"proj_2"}]`
	antDay := `[{"amount":"123.78912","currency":"USD","cost_type":"tokens","description":"Claude Sonnet 4.5 Usage - Input Tokens","model":"claude-sonnet-4-5","token_type":"uncached_input_tokens","workspace_id":null},
		{"amount":"0.50","currency":"USD","cost_type":"tokens","description":"Claude Sonnet 4.5 Usage - Output Tokens","model":"claude-sonnet-4-5","token_type":"output_tokens","workspace_id":"wrkspc_1"},
		{"amount":"1e-7","currency":"USD","cost_type":"web_search","description":"Web Search Usage","model":null,"token_type":null,"workspace_id":null}]`
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var buckets []string
		switch r.URL.Path {
		case "/v1/organization/projects":
			_, _ = fmt.Fprint(rw, `{"object":"list","data":[{"id":"proj_1","object":"organization.project","name":"p","created_at":1,"archived_at":null,"status":"active"}],"first_id":"proj_1","last_id":"proj_1","has_more":false}`)
			return
		case "/v1/organizations/me":
			_, _ = fmt.Fprint(rw, `{"id":"5b7e2f1c-0d6a-4c1e-9f3b-2a8d7c6e5f40","name":"o","type":"organization"}`)
			return
		case "/v1/organization/costs":
			for d := w.From; d.Before(w.To); d = d.AddDate(0, 0, 1) {
				buckets = append(buckets, fmt.Sprintf(`{"object":"bucket","start_time":%d,"end_time":%d,"results":%s}`, d.Unix(), d.AddDate(0, 0, 1).Unix(), oaiDay))
			}
		case "/v1/organizations/cost_report":
			for d := w.From; d.Before(w.To); d = d.AddDate(0, 0, 1) {
				buckets = append(buckets, fmt.Sprintf(`{"starting_at":%q,"ending_at":%q,"results":%s}`, d.Format(time.RFC3339), d.AddDate(0, 0, 1).Format(time.RFC3339), antDay))
			}
		}
		// Everything in one page: the clients do not depend on page sizes.
		_, _ = fmt.Fprintf(rw, `{"object":"page","data":[%s],"has_more":false,"next_page":null}`, strings.Join(buckets, ","))
	}))
	t.Cleanup(srv.Close)
	kr, err := keyring.New("syncer-test-encryption-key-0123456789abcdef", nil)
	require.NoError(t, err)
	db, raw := pgtest.OpenURL(t, pgtest.Fresh(t))
	b := &testBundle{db: db, sql: raw, kr: kr, logs: &logtest.Buffer{}}
	user := uuid.NewString()
	oaiID := b.addConnection(t, user, tokka.OpenAI, "sk-admin-money-"+user[:8])
	antID := b.addConnection(t, user, tokka.Anthropic, "sk-ant-admin01-money-"+user[:8])
	clients := map[tokka.Provider]provider.Client{tokka.OpenAI: openai.New(srv.URL, provider.HTTPClient{}), tokka.Anthropic: anthropic.New(srv.URL, provider.HTTPClient{})}
	s := syncer.New(syncer.Config{Instance: "money", BackfillDays: days, Now: func() time.Time { return now }},
		b.db, b.kr, clients, zerolog.Nop(), syncer.NewMetrics(prometheus.NewRegistry()))
	sum, err := s.RunOnce(context.Background())
	require.NoError(t, err)
	require.Equal(t, 2, sum.Synced)

	total := func(id, col string) string {
		var d decimal.Decimal
		require.NoError(t, b.sql.Get(&d, `SELECT sum(`+col+`) FROM tokka.cost_daily WHERE connection_id = $1`, id))
		return d.String()
	}
	// Per day $0.5 + $0.0000001 + $0.1 + $123.456789012345 = $124.056789112345.
	require.Equal(t, "45404.78481511827", total(oaiID, "amount_usd"), "366 × 124.056789112345")
	require.Equal(t, "45404.78481511827", total(oaiID, "amount"))
	// Per day 123.78912 + 0.5 + 0.0000001 cents = 124.2891201 cents.
	require.Equal(t, "45489.8179566", total(antID, "amount"), "366 × 124.2891201 cents")
	require.Equal(t, "454.898179566", total(antID, "amount_usd"), "the same in dollars")
	var float float64
	for i := 0; i < days; i++ {
		float += 0.5 + 1e-7 + 0.1 + 123.456789012345
	}
	require.NotEqual(t, "45404.78481511827", decimal.NewFromFloat(float).String(), "float64 would have been wrong here")

	// Per model, too: the string "0.50" and the 1e-7 are gpt-4.1's.
	var perModel decimal.Decimal
	require.NoError(t, b.sql.Get(&perModel, `SELECT sum(amount_usd) FROM tokka.cost_daily WHERE connection_id = $1 AND model = 'gpt-4.1'`, oaiID))
	require.Equal(t, "183.0000366", perModel.String())
}

// TestUnitColumnsFollowTheTableGrants checks what migration 00004 relies
// on: usage_daily is granted table-wide, so the syncer role could insert the
// new unit columns (every sync above did) and a user reads them for their
// own rows only, through RLS, with no column grant added.
func TestUnitColumnsFollowTheTableGrants(t *testing.T) {
	t.Parallel()
	c := newTestClock(time.Now())
	b := setup(t, clockedBy(c))
	alice, bob := uuid.NewString(), uuid.NewString()
	b.addConnection(t, alice, tokka.OpenAI, "sk-admin-grants-"+alice[:8])
	b.addConnection(t, bob, tokka.Anthropic, "sk-ant-admin01-grants-"+bob[:8])
	_, err := b.clockedSyncer(syncer.Config{Instance: "grants"}, b.db).RunOnce(context.Background())
	require.NoError(t, err)

	read := func(user string) (rows, units int64) {
		tx, err := b.sql.Beginx()
		require.NoError(t, err)
		defer func() { _ = tx.Rollback() }()
		_, err = tx.Exec(`SELECT set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true)`,
			`{"sub":"`+user+`","role":"authenticated"}`)
		require.NoError(t, err)
		require.NoError(t, tx.QueryRow(`SELECT count(*), coalesce(sum(images + characters + seconds + bytes + sessions + file_searches + web_searches), 0)
			FROM tokka.usage_daily`).Scan(&rows, &units))
		return rows, units
	}
	aRows, aUnits := read(alice)
	bRows, bUnits := read(bob)
	require.Positive(t, aRows)
	require.Positive(t, aUnits, "alice reads her images, bytes, sessions, …")
	require.Positive(t, bRows)
	require.Positive(t, bUnits, "bob reads his web searches")
	var all int64
	require.NoError(t, b.sql.Get(&all, `SELECT count(*) FROM tokka.usage_daily`))
	require.Equal(t, all, aRows+bRows, "each sees exactly their own rows")

	var grants []string
	require.NoError(t, b.sql.Select(&grants, `SELECT grantee || ':' || privilege_type || ':' || column_name
		FROM information_schema.column_privileges
		WHERE table_schema = 'tokka' AND table_name = 'usage_daily' AND column_name IN ('images', 'web_searches')
		  AND grantee IN ('authenticated', 'tokka_syncer') ORDER BY 1`))
	require.Contains(t, grants, "authenticated:SELECT:images", "covered by the table-level SELECT")
	require.Contains(t, grants, "tokka_syncer:INSERT:web_searches", "covered by the table-level INSERT")
	require.NotContains(t, grants, "authenticated:INSERT:images")
}
