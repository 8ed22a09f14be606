package postgres

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/shopspring/decimal"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Summary gathers u's spend for the month containing today (UTC), the
// previous month, and the seven complete days before today, per provider,
// plus the top models, projects and API keys this month (with their
// directory names) and the last successful sync.
func (d *DB) Summary(ctx context.Context, u tokka.User, today time.Time, top int) (tokka.SummaryData, error) {
	s, _, err := d.SummaryAt(ctx, u, today, top)
	return s, err
}

// SummaryAt is Summary and u's data version, read first in the same
// transaction.
func (d *DB) SummaryAt(ctx context.Context, u tokka.User, today time.Time, top int) (tokka.SummaryData, string, error) {
	today = today.UTC().Truncate(24 * time.Hour)
	monthStart := time.Date(today.Year(), today.Month(), 1, 0, 0, 0, 0, time.UTC)
	prevStart := monthStart.AddDate(0, -1, 0)
	sameEnd := prevStart.AddDate(0, 0, today.Day()-1)
	if !sameEnd.Before(monthStart) {
		sameEnd = monthStart.AddDate(0, 0, -1)
	}
	day := func(t time.Time) string { return t.Format(time.DateOnly) }
	var out tokka.SummaryData
	var v string
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		var err error
		out, v, err = d.readSummary(ctx, tx, u, day(monthStart), day(today), day(prevStart), day(sameEnd), top)
		return err
	})
	return out, v, err
}

// readSummary reads the summary in tx, with u's data version: the top
// lists and the version first (one statement), then the periods, so the
// periods are never older than the version. Periods come from the
// per-connection daily totals (a few dozen rows per user), tokens and the
// top lists from this month's rollups.
func (d *DB) readSummary(ctx context.Context, tx *sqlx.Tx, u tokka.User, monthStart, today, prevStart, sameEnd string, top int) (tokka.SummaryData, string, error) {
	var out tokka.SummaryData
	v, err := d.summaryTop(ctx, tx, u, monthStart, top, &out)
	if err != nil {
		return out, "", err
	}
	err = tx.SelectContext(ctx, &out.ByProvider, `
		WITH c AS (
			SELECT provider,
				sum(amount_usd) FILTER (WHERE day >= $2) AS mtd,
				sum(amount_usd) FILTER (WHERE day >= $2 AND day < $3) AS mtd_complete,
				sum(amount_usd) FILTER (WHERE day >= $4 AND day < $2) AS prev,
				sum(amount_usd) FILTER (WHERE day >= $4 AND day <= $5) AS same_period,
				sum(amount_usd) FILTER (WHERE day >= $3::date - 7 AND day < $3) AS last7,
				min(day) AS first_day
			FROM tokka.spend_daily
			WHERE team_id = $1 AND day >= $4 AND day <= $3
			GROUP BY provider
		), t AS (
			SELECT provider, sum(input_uncached_tokens + cache_read_tokens + cache_write_5m_tokens
				+ cache_write_1h_tokens + output_tokens) AS tokens_mtd
			FROM tokka.usage_monthly
			WHERE team_id = $1 AND day = $2
			GROUP BY provider
		)
		SELECT provider, coalesce(mtd, 0) AS mtd, coalesce(mtd_complete, 0) AS mtd_complete,
			coalesce(prev, 0) AS prev, coalesce(same_period, 0) AS same_period,
			coalesce(last7, 0) AS last7, coalesce(tokens_mtd, 0) AS tokens_mtd, first_day
		FROM c FULL JOIN t USING (provider)
		ORDER BY provider`,
		u.TeamID(), monthStart, today, prevStart, sameEnd)
	if err != nil {
		return out, "", domainError(err, "summary")
	}
	return out, v, nil
}

// summaryTop reads this month's top models, projects and API keys with
// their directory names, the last successful sync and u's data version in
// one statement: the ranked rows each carry their name (the latest one the
// directory saw), the sync time and the version, and one row without an
// item stands in when nothing ranks, so those always arrive.
func (d *DB) summaryTop(ctx context.Context, tx *sqlx.Tx, u tokka.User, month string, top int, out *tokka.SummaryData) (string, error) {
	var rows []struct {
		What     *string             `db:"what"`
		Rank     *int64              `db:"rank"`
		Provider *string             `db:"item_provider"`
		Name     *string             `db:"item_name"`
		Cost     decimal.NullDecimal `db:"item_cost"`
		Kind     *string             `db:"dir_kind"`
		DirName  *string             `db:"dir_name"`
		AsOf     *time.Time          `db:"as_of"`
		Version  string              `db:"version"`
	}
	// Costs without a key (Anthropic's cost report has none) are no key's:
	// they are left out of the top keys.
	err := tx.SelectContext(ctx, &rows, `
		WITH g AS (
			SELECT provider, coalesce(model, project_id, api_key_id) AS name,
				CASE WHEN GROUPING(model) = 0 THEN 'model' WHEN GROUPING(project_id) = 0 THEN 'project' ELSE 'api_key' END AS what,
				sum(amount_usd) AS cost_usd
			FROM tokka.cost_monthly
			WHERE team_id = $1 AND day = $2
			GROUP BY GROUPING SETS ((provider, model), (provider, project_id), (provider, api_key_id))
		), ranked AS (
			SELECT * FROM (
				SELECT *, row_number() OVER (PARTITION BY what ORDER BY cost_usd DESC, provider, name) AS rank
				FROM g WHERE NOT (what = 'api_key' AND name = '')
			) r WHERE rank <= $3
		)
		SELECT r.what, r.rank, r.provider AS item_provider, r.name AS item_name, r.cost_usd AS item_cost,
			p.kind AS dir_kind, coalesce(p.name, k.name) AS dir_name, s.as_of, s.version
		FROM (SELECT max(last_synced_at) AS as_of, `+versionExpr+` AS version
			FROM tokka.connections WHERE team_id = $1) s
		LEFT JOIN ranked r ON true
		LEFT JOIN LATERAL (
			SELECT kind, name FROM tokka.directory_projects dp
			WHERE r.what = 'project' AND r.name <> '' AND dp.team_id = $1 AND dp.id = r.name
			ORDER BY seen_at DESC LIMIT 1
		) p ON true
		LEFT JOIN LATERAL (
			SELECT name FROM tokka.directory_keys dk
			WHERE r.what = 'api_key' AND r.name <> '' AND dk.team_id = $1 AND dk.id = r.name
			ORDER BY seen_at DESC LIMIT 1
		) k ON true
		ORDER BY r.what, r.rank`, u.TeamID(), month, top)
	if err != nil {
		return "", domainError(err, "summary top")
	}
	out.TopModels, out.TopProjects, out.TopAPIKeys = []tokka.TopItem{}, []tokka.TopItem{}, []tokka.TopItem{}
	var v string
	for _, r := range rows {
		out.AsOf, v = r.AsOf, r.Version
		if r.What == nil {
			continue
		}
		item := tokka.TopItem{Provider: *r.Provider, Name: *r.Name, CostUSD: r.Cost.Decimal}
		switch *r.What {
		case "model":
			out.TopModels = append(out.TopModels, item)
		case "project":
			if r.DirName != nil {
				item.Names = namesOf(map[string]dirName{item.Name: {kind: *r.Kind, name: *r.DirName}}, nil, item.Name, "")
			}
			out.TopProjects = append(out.TopProjects, item)
		default:
			if r.DirName != nil {
				item.Names = namesOf(nil, map[string]string{item.Name: *r.DirName}, "", item.Name)
			}
			out.TopAPIKeys = append(out.TopAPIKeys, item)
		}
	}
	return v, nil
}
