package postgres

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Summary gathers u's spend for the month containing today (UTC), the
// previous month, and the seven complete days before today, per provider,
// plus the top models, projects and API keys this month (with their
// directory names) and the last successful sync.
func (d *DB) Summary(ctx context.Context, u tokka.User, today time.Time, top int) (tokka.SummaryData, error) {
	today = today.UTC().Truncate(24 * time.Hour)
	monthStart := time.Date(today.Year(), today.Month(), 1, 0, 0, 0, 0, time.UTC)
	prevStart := monthStart.AddDate(0, -1, 0)
	sameEnd := prevStart.AddDate(0, 0, today.Day()-1)
	if !sameEnd.Before(monthStart) {
		sameEnd = monthStart.AddDate(0, 0, -1)
	}
	day := func(t time.Time) string { return t.Format(time.DateOnly) }
	var out tokka.SummaryData
	// Periods come from the per-connection daily totals (a few dozen rows
	// per user), tokens and the top lists from this month's rollups.
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		err := tx.SelectContext(ctx, &out.ByProvider, `
			WITH c AS (
				SELECT provider,
					sum(amount_usd) FILTER (WHERE day >= $2) AS mtd,
					sum(amount_usd) FILTER (WHERE day >= $2 AND day < $3) AS mtd_complete,
					sum(amount_usd) FILTER (WHERE day >= $4 AND day < $2) AS prev,
					sum(amount_usd) FILTER (WHERE day >= $4 AND day <= $5) AS same_period,
					sum(amount_usd) FILTER (WHERE day >= $3::date - 7 AND day < $3) AS last7,
					min(day) AS first_day
				FROM tokka.spend_daily
				WHERE user_id = $1 AND day >= $4 AND day <= $3
				GROUP BY provider
			), t AS (
				SELECT provider, sum(input_uncached_tokens + cache_read_tokens + cache_write_5m_tokens
					+ cache_write_1h_tokens + output_tokens) AS tokens_mtd
				FROM tokka.usage_monthly
				WHERE user_id = $1 AND day = $2
				GROUP BY provider
			)
			SELECT provider, coalesce(mtd, 0) AS mtd, coalesce(mtd_complete, 0) AS mtd_complete,
				coalesce(prev, 0) AS prev, coalesce(same_period, 0) AS same_period,
				coalesce(last7, 0) AS last7, coalesce(tokens_mtd, 0) AS tokens_mtd, first_day
			FROM c FULL JOIN t USING (provider)
			ORDER BY provider`,
			u.ID, day(monthStart), day(today), day(prevStart), day(sameEnd))
		if err != nil {
			return domainError(err, "summary")
		}
		var ranked []struct {
			tokka.TopItem
			What string `db:"what"`
			Rank int64  `db:"rank"`
		}
		// Costs without a key (Anthropic's cost report has none) are no
		// key's: they are left out of the top keys.
		if err := tx.SelectContext(ctx, &ranked, `
			WITH g AS (
				SELECT provider, coalesce(model, project_id, api_key_id) AS name,
					CASE WHEN GROUPING(model) = 0 THEN 'model' WHEN GROUPING(project_id) = 0 THEN 'project' ELSE 'api_key' END AS what,
					sum(amount_usd) AS cost_usd
				FROM tokka.cost_monthly
				WHERE user_id = $1 AND day = $2
				GROUP BY GROUPING SETS ((provider, model), (provider, project_id), (provider, api_key_id))
			)
			SELECT provider, name, what, cost_usd, rank FROM (
				SELECT *, row_number() OVER (PARTITION BY what ORDER BY cost_usd DESC, provider, name) AS rank
				FROM g WHERE NOT (what = 'api_key' AND name = '')
			) r WHERE rank <= $3 ORDER BY what, rank`, u.ID, day(monthStart), top); err != nil {
			return domainError(err, "summary top")
		}
		out.TopModels, out.TopProjects, out.TopAPIKeys = []tokka.TopItem{}, []tokka.TopItem{}, []tokka.TopItem{}
		var projectIDs, keyIDs []string
		for _, t := range ranked {
			switch t.What {
			case "model":
				out.TopModels = append(out.TopModels, t.TopItem)
			case "project":
				out.TopProjects = append(out.TopProjects, t.TopItem)
				projectIDs = append(projectIDs, t.Name)
			default:
				out.TopAPIKeys = append(out.TopAPIKeys, t.TopItem)
				keyIDs = append(keyIDs, t.Name)
			}
		}
		projects, keys, err := directoryNames(ctx, tx, u.ID, projectIDs, keyIDs)
		if err != nil {
			return err
		}
		for i, t := range out.TopProjects {
			out.TopProjects[i].Names = namesOf(projects, nil, t.Name, "")
		}
		for i, t := range out.TopAPIKeys {
			out.TopAPIKeys[i].Names = namesOf(nil, keys, "", t.Name)
		}
		return domainError(tx.GetContext(ctx, &out.AsOf,
			`SELECT max(last_synced_at) FROM tokka.connections WHERE user_id = $1`, u.ID), "summary freshness")
	})
	return out, err
}
