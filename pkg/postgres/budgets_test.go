package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

const budgetTestSecret = "whsec_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func (b *testBundle) create(t *testing.T, u tokka.User, nb tokka.NewBudget) tokka.Budget {
	t.Helper()
	nb.ID = uuid.NewString()
	if nb.Name == "" {
		nb.Name = "b"
	}
	if nb.Scope == "" {
		nb.Scope = tokka.ScopeAll
	}
	if nb.AmountUSD.IsZero() {
		nb.AmountUSD = decimal.RequireFromString("100.50")
	}
	nb.WebhookSecret = secret.FromString(budgetTestSecret)
	bud, err := b.db.CreateBudget(context.Background(), u, nb)
	require.NoError(t, err)
	return bud
}

func TestBudgetsBelongToTheirOwner(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	alice, bob := newUser(), newUser()
	bud := b.create(t, alice, tokka.NewBudget{Thresholds: []int64{50, 100}})
	require.Equal(t, "100.5", bud.AmountUSD.String())
	require.Equal(t, []int64{50, 100}, []int64(bud.Thresholds))
	require.Equal(t, []int64{}, []int64(bud.ForecastThresholds))

	_, err := b.db.GetBudget(ctx, bob, bud.ID)
	require.ErrorIs(t, err, tokka.ErrNotFound)
	_, err = b.db.UpdateBudget(ctx, bob, bud.ID, tokka.BudgetPatch{Name: new("mine now")})
	require.ErrorIs(t, err, tokka.ErrNotFound)
	require.ErrorIs(t, b.db.DeleteBudget(ctx, bob, bud.ID), tokka.ErrNotFound)
	list, err := b.db.ListBudgetsPage(ctx, bob, nil, 100)
	require.NoError(t, err)
	require.Empty(t, list)

	got, err := b.db.GetBudget(ctx, alice, bud.ID)
	require.NoError(t, err)
	require.Equal(t, bud.ID, got.ID)

	// Straight SQL as Bob: nothing visible, nothing changeable.
	n, err := b.exec(t, "authenticated", bob, `UPDATE tokka.budgets SET name = 'x' WHERE id = $1`, bud.ID)
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = b.exec(t, "authenticated", bob, `DELETE FROM tokka.budgets WHERE id = $1`, bud.ID)
	require.NoError(t, err)
	require.Zero(t, n)
	// Nor can Bob create a budget in Alice's name.
	_, err = b.exec(t, "authenticated", bob, `INSERT INTO tokka.budgets (id, team_id, name, amount_usd, scope, webhook_secret)
		VALUES ($1, $2, 'x', 1, 'all', $3)`, uuid.NewString(), alice.ID, budgetTestSecret)
	require.ErrorContains(t, err, "row-level security")
}

func TestWebhookSecretIsWriteOnlyForTheAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	alice := newUser()
	bud := b.create(t, alice, tokka.NewBudget{})
	_, err := b.exec(t, "authenticated", alice, `SELECT webhook_secret FROM tokka.budgets`)
	require.ErrorContains(t, err, "permission denied", "not even the owner can read it back")
	_, err = b.exec(t, "authenticated", alice, `SELECT * FROM tokka.budgets`)
	require.ErrorContains(t, err, "permission denied")

	// Rotation writes it without reading it.
	rotated := "whsec_" + "ff00000000000000000000000000000000000000000000000000000000000000"
	_, err = b.db.UpdateBudget(ctx, alice, bud.ID, tokka.BudgetPatch{WebhookSecret: secret.FromString(rotated)})
	require.NoError(t, err)
	var stored string
	require.NoError(t, b.sql.Get(&stored, `SELECT webhook_secret FROM tokka.budgets WHERE id = $1`, bud.ID))
	require.Equal(t, rotated, stored)
	// The syncer reads it to sign.
	n, err := b.exec(t, "tokka_syncer", alice, `SELECT webhook_secret FROM tokka.budgets`)
	require.NoError(t, err)
	require.NotZero(t, n)
}

func TestBudgetOnAConnectionNeedsYourOwnConnection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	alice, bob := newUser(), newUser()
	bobsConn := b.insertConnection(t, bob)
	_, err := b.db.CreateBudget(ctx, alice, tokka.NewBudget{ID: uuid.NewString(), Name: "x", AmountUSD: decimal.NewFromInt(5),
		Scope: tokka.ScopeConnection, ConnectionID: &bobsConn, WebhookSecret: secret.FromString(budgetTestSecret)})
	var te *tokka.Error
	require.ErrorAs(t, err, &te)
	require.Equal(t, tokka.CodeInvalid, te.Code)
	require.Equal(t, "connection_id", te.Field)
	// The policy holds even without the storage method's check.
	_, err = b.exec(t, "authenticated", alice, `INSERT INTO tokka.budgets (id, team_id, name, amount_usd, scope, connection_id, webhook_secret)
		VALUES ($1, $2, 'x', 1, 'connection', $3, $4)`, uuid.NewString(), alice.ID, bobsConn, budgetTestSecret)
	require.ErrorContains(t, err, "row-level security")

	own := b.insertConnection(t, alice)
	bud := b.create(t, alice, tokka.NewBudget{Scope: tokka.ScopeConnection, ConnectionID: &own})
	require.Equal(t, own, *bud.ConnectionID)
	// Deleting the connection deletes its budget.
	_, err = b.sql.Exec(`DELETE FROM tokka.connections WHERE id = $1`, own)
	require.NoError(t, err)
	_, err = b.db.GetBudget(ctx, alice, bud.ID)
	require.ErrorIs(t, err, tokka.ErrNotFound)
}

func TestBudgetConstraints(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := newUser()
	for name, q := range map[string]string{
		"provider scope without provider": `INSERT INTO tokka.budgets (id, team_id, name, amount_usd, scope, webhook_secret) VALUES ($1, $2, 'x', 1, 'provider', $3)`,
		"all scope with provider":         `INSERT INTO tokka.budgets (id, team_id, name, amount_usd, scope, provider, webhook_secret) VALUES ($1, $2, 'x', 1, 'all', 'openai', $3)`,
		"zero amount":                     `INSERT INTO tokka.budgets (id, team_id, name, amount_usd, scope, webhook_secret) VALUES ($1, $2, 'x', 0, 'all', $3)`,
		"threshold out of range":          `INSERT INTO tokka.budgets (id, team_id, name, amount_usd, scope, thresholds, webhook_secret) VALUES ($1, $2, 'x', 1, 'all', '{0}', $3)`,
		"malformed secret":                `INSERT INTO tokka.budgets (id, team_id, name, amount_usd, scope, webhook_secret) VALUES ($1, $2, 'x', 1, 'all', $3 || 'x')`,
	} {
		_, err := b.exec(t, "authenticated", alice, q, uuid.NewString(), alice.ID, budgetTestSecret)
		require.ErrorContains(t, err, "check constraint", name)
	}
}

func TestSyncerMayReadBudgetsAndRecordDeliveriesOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	alice := newUser()
	bud := b.create(t, alice, tokka.NewBudget{WebhookURL: new("https://hooks.example.com/x")})
	created, err := b.db.RaiseBudgetAlert(ctx, tokka.Alert{TeamID: alice.ID, Kind: tokka.AlertBudgetThreshold,
		DedupKey: "k", Title: "t"}, bud.ID, []string{"webhook"})
	require.NoError(t, err)
	require.True(t, created)
	created, err = b.db.RaiseBudgetAlert(ctx, tokka.Alert{TeamID: alice.ID, Kind: tokka.AlertBudgetThreshold,
		DedupKey: "k", Title: "t"}, bud.ID, []string{"webhook"})
	require.NoError(t, err)
	require.False(t, created, "the same dedup key fires once")

	var syncer tokka.User
	syncer.Claims = []byte(`{}`)
	for _, q := range []string{
		`UPDATE tokka.budgets SET amount_usd = 1`,
		`DELETE FROM tokka.budgets`,
		`INSERT INTO tokka.budgets (id, team_id, name, amount_usd, scope, webhook_secret) VALUES (gen_random_uuid(), gen_random_uuid(), 'x', 1, 'all', '` + budgetTestSecret + `')`,
		`DELETE FROM tokka.budget_deliveries`,
		`UPDATE tokka.budget_deliveries SET alert_id = alert_id`,
		`UPDATE tokka.alerts SET title = 'x'`,
	} {
		_, err := b.exec(t, "tokka_syncer", syncer, q)
		require.ErrorContains(t, err, "permission denied", q)
	}
	n, err := b.exec(t, "tokka_syncer", syncer, `UPDATE tokka.budget_deliveries SET status = 'failed' WHERE budget_id = $1`, bud.ID)
	require.NoError(t, err)
	require.Equal(t, int64(1), n)

	// The owner reads the deliveries; nobody else does, and the owner
	// cannot forge or edit them.
	ds, err := b.db.BudgetDeliveriesPage(ctx, alice, bud.ID, 0, 10)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	ds, err = b.db.BudgetDeliveriesPage(ctx, newUser(), bud.ID, 0, 10)
	require.ErrorIs(t, err, tokka.ErrNotFound, "another user's budget is not found")
	require.Empty(t, ds)
	for _, q := range []string{
		`UPDATE tokka.budget_deliveries SET status = 'delivered'`,
		`DELETE FROM tokka.budget_deliveries`,
	} {
		_, err := b.exec(t, "authenticated", alice, q)
		require.ErrorContains(t, err, "permission denied", q)
	}
}

func TestBudgetsPerUserAreCapped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := newUser()
	for range tokka.MaxBudgetsPerUser {
		b.create(t, alice, tokka.NewBudget{})
	}
	_, err := b.db.CreateBudget(context.Background(), alice, tokka.NewBudget{ID: uuid.NewString(), Name: "one more",
		AmountUSD: decimal.NewFromInt(1), Scope: tokka.ScopeAll, WebhookSecret: secret.FromString(budgetTestSecret)})
	require.Equal(t, tokka.CodeInvalid, tokka.ErrorCode(err))
	b.create(t, newUser(), tokka.NewBudget{}) // others are not affected
}

const (
	budgetSlackURL  = "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX"
	budgetSlackHint = "https://hooks.slack.com/services/…UVWX"
)

// TestSlackURLIsWriteOnlyForTheAPI: the Slack webhook URL is a credential.
// The api writes it and shows only its hint; the syncer reads it to send.
func TestSlackURLIsWriteOnlyForTheAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	alice := newUser()
	bud := b.create(t, alice, tokka.NewBudget{SlackURL: new(budgetSlackURL)})
	require.Equal(t, budgetSlackHint, *bud.SlackURLHint)
	_, err := b.exec(t, "authenticated", alice, `SELECT slack_url FROM tokka.budgets`)
	require.ErrorContains(t, err, "permission denied", "not even the owner can read it back")
	n, err := b.exec(t, "authenticated", alice, `SELECT slack_url_hint FROM tokka.budgets`)
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	stored := func() *string {
		var s *string
		require.NoError(t, b.sql.Get(&s, `SELECT slack_url FROM tokka.budgets WHERE id = $1`, bud.ID))
		return s
	}

	// Sending back the hint GET showed keeps the URL; channels change
	// together, so this is how email is turned on without re-pasting it.
	got, err := b.db.UpdateBudget(ctx, alice, bud.ID, tokka.BudgetPatch{SetChannels: true,
		SlackHint: new(budgetSlackHint), EmailTo: new(alice.Email)})
	require.NoError(t, err)
	require.Equal(t, budgetSlackHint, *got.SlackURLHint)
	require.Equal(t, budgetSlackURL, *stored())
	// A hint that is not this budget's is refused, not taken as "keep".
	_, err = b.db.UpdateBudget(ctx, alice, bud.ID, tokka.BudgetPatch{SetChannels: true,
		SlackHint: new("https://hooks.slack.com/services/…ZZZZ")})
	var te *tokka.Error
	require.ErrorAs(t, err, &te)
	require.Equal(t, tokka.CodeInvalid, te.Code)
	require.Equal(t, "channels.slack_url", te.Field)
	// Nor does a hint pass for another user's budget.
	_, err = b.db.UpdateBudget(ctx, newUser(), bud.ID, tokka.BudgetPatch{SetChannels: true, SlackHint: new(budgetSlackHint)})
	require.ErrorIs(t, err, tokka.ErrNotFound)

	other := "https://hooks.slack.com/services/T0123ABCD/B0999/zzzzzzzzzzzzzzzzzzzz0042"
	got, err = b.db.UpdateBudget(ctx, alice, bud.ID, tokka.BudgetPatch{SetChannels: true, SlackURL: &other})
	require.NoError(t, err)
	require.Equal(t, "https://hooks.slack.com/services/…0042", *got.SlackURLHint)
	require.Equal(t, other, *stored())
	got, err = b.db.UpdateBudget(ctx, alice, bud.ID, tokka.BudgetPatch{SetChannels: true})
	require.NoError(t, err)
	require.Nil(t, got.SlackURLHint)
	require.Nil(t, stored())

	// Only a Slack incoming-webhook URL can be stored at all.
	for _, bad := range []string{"https://hooks.slack.com.evil.com/services/T1/B1/abc", "http://hooks.slack.com/services/T1/B1/abc",
		"https://hooks.slack.com/services/T1/B1/abc?x=1", "https://hooks.slack.com/services/T1/B1/../x"} {
		_, err := b.exec(t, "authenticated", alice, `UPDATE tokka.budgets SET slack_url = $2 WHERE id = $1`, bud.ID, bad)
		require.ErrorContains(t, err, "check constraint", bad)
	}
	_, err = b.exec(t, "authenticated", alice, `UPDATE tokka.budgets SET slack_url_hint = 'x' WHERE id = $1`, bud.ID)
	require.Error(t, err, "the hint is derived, never written")
}

// TestSlackDeliveriesAreClaimedWithTheirURL: a slack delivery is queued like
// any other and the syncer's claim carries the URL, as a self-redacting
// secret.
func TestSlackDeliveriesAreClaimedWithTheirURL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	alice := newUser()
	bud := b.create(t, alice, tokka.NewBudget{SlackURL: new(budgetSlackURL)})
	created, err := b.db.RaiseBudgetAlert(ctx, tokka.Alert{TeamID: alice.ID, Kind: tokka.AlertBudgetThreshold,
		DedupKey: "slack", Title: "t"}, bud.ID, []string{tokka.ChannelSlack})
	require.NoError(t, err)
	require.True(t, created)
	ds, err := b.db.ClaimDeliveries(ctx, alice.ID, "test-owner", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.Equal(t, tokka.ChannelSlack, ds[0].Channel)
	require.Equal(t, budgetSlackURL, string(ds[0].SlackURL.Bytes()))
	require.NotContains(t, fmt.Sprintf("%v %+v", ds[0], ds[0]), "abcdEFGH", "it redacts itself when printed")
	require.NoError(t, b.db.FinishDelivery(ctx, tokka.DeliveryResult{ID: ds[0].ID, Owner: "test-owner",
		Status: tokka.DeliveryFailed, Attempts: 1, ResponseStatus: 410, Reason: "Slack answered HTTP 410 (channel_is_archived)"}))
	list, err := b.db.BudgetDeliveriesPage(ctx, alice, bud.ID, 0, 10)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, "slack", list[0].Channel)
	require.Equal(t, "Slack answered HTTP 410 (channel_is_archived)", *list[0].LastError)
}
