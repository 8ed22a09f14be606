package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// dimensionSQL is each dimension's grouping expression. Only the SQL in
// this table ever reaches a query; request values are always placeholders.
var dimensionSQL = map[string]string{
	"month":        "date_trunc('month', day)::date",
	"week":         "date_trunc('week', day)::date",
	"day":          "day",
	"provider":     "provider",
	"connection":   "connection_id",
	"model":        "model",
	"project":      "project_id",
	"api_key":      "api_key_id",
	"service_tier": "service_tier",
}

// sqlOf is d's grouping expression.
func sqlOf(d tokka.Dimension) string { return dimensionSQL[d.Name] }

// wholeMonths returns the span [m1, m2) of whole calendar months inside the
// days from..to (inclusive); m1 == m2 when there is none.
func wholeMonths(from, to time.Time) (time.Time, time.Time) {
	m1 := time.Date(from.Year(), from.Month(), 1, 0, 0, 0, 0, time.UTC)
	if !m1.Equal(from) {
		m1 = m1.AddDate(0, 1, 0)
	}
	m2 := time.Date(to.Year(), to.Month(), 1, 0, 0, 0, 0, time.UTC)
	if next := to.AddDate(0, 0, 1); next.Day() == 1 {
		m2 = next
	}
	if m2.Before(m1) {
		return m1, m1
	}
	return m1, m2
}

// usageSQL builds the grouped query. Tokens come from usage_daily and money
// from cost_daily (the providers' cost reports, which reconcile with the
// invoice). Both kinds of row are stacked (UNION ALL, each leaving the
// other's sums NULL) and aggregated once on the grouping values, so neither
// multiplies the other and no join of two aggregates is needed. When no
// grouping needs days or weeks, whole months are read from the monthly
// rollups and only the edge days from the daily tables.
//
// Placeholders: $1 the user, $2..$3 the days, $4 the first provisional day,
// then ($5, $6) the whole months when the rollups are read, then the
// filters and keyset bounds of each side.
func usageSQL(q tokka.UsageQuery, dims []tokka.Dimension) (string, []any) {
	args := []any{nil, q.From.Format(time.DateOnly), q.To.Format(time.DateOnly), q.ProvisionalFrom.Format(time.DateOnly)}
	daily := false
	for _, d := range dims {
		daily = daily || d.Name == "day" || d.Name == "week"
	}
	m1, m2 := wholeMonths(q.From, q.To)
	useMonthly := !daily && m1.Before(m2)
	if useMonthly {
		args = append(args, m1.Format(time.DateOnly), m2.Format(time.DateOnly))
	}
	var groups []string
	for i := range dims {
		groups = append(groups, fmt.Sprintf("g%d", i))
	}
	stacked := usageSide(q, dims, false, useMonthly, &args) + "\n\t\tUNION ALL\n\t\t" +
		usageSide(q, dims, true, useMonthly, &args)
	var outer []string
	for _, g := range groups {
		outer = append(outer, g+"::text")
	}
	// The token sums are numeric in SQL (a bigint sum may overflow) but
	// int64 here: cast back, they travel as 8 binary bytes instead of text
	// the driver parses, and PostgreSQL skips formatting them.
	outer = append(outer,
		"coalesce(sum(input_uncached_tokens), 0)::bigint", "coalesce(sum(cache_read_tokens), 0)::bigint",
		"coalesce(sum(cache_write_5m_tokens), 0)::bigint", "coalesce(sum(cache_write_1h_tokens), 0)::bigint",
		"coalesce(sum(output_tokens), 0)::bigint", "coalesce(sum(requests), 0)::bigint", "coalesce(sum(amount_usd), 0)",
		"coalesce(max(last_day) >= $4::date, false)")
	query := "SELECT " + strings.Join(outer, ", ") + " FROM (\n\t\t" + stacked + "\n\t) r"
	if len(groups) > 0 {
		query += " GROUP BY " + strings.Join(groups, ", ")
		if !q.IncludeZero {
			// A group whose every figure is zero (a provider's empty
			// result, a model "" with nothing in it) tells a reader
			// nothing; it is left out before paging, so pages stay full.
			query += " HAVING coalesce(sum(input_uncached_tokens), 0) <> 0 OR coalesce(sum(cache_read_tokens), 0) <> 0" +
				" OR coalesce(sum(cache_write_5m_tokens), 0) <> 0 OR coalesce(sum(cache_write_1h_tokens), 0) <> 0" +
				" OR coalesce(sum(output_tokens), 0) <> 0 OR coalesce(sum(requests), 0) <> 0 OR coalesce(sum(amount_usd), 0) <> 0"
		}
		query += " ORDER BY " + strings.Join(groups, ", ")
	}
	if q.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	return query, args
}

// usageSide is one arm of the stacked query: the usage rows (cost false) or
// the cost rows, as the grouping values g0, g1, …, the six token sums, the
// amount (each NULL on the side that has none) and the day the row's data
// ends on (for the provisional flag).
func usageSide(q tokka.UsageQuery, dims []tokka.Dimension, cost, useMonthly bool, args *[]any) string {
	var cols []string
	for i, d := range dims {
		cols = append(cols, fmt.Sprintf("%s AS g%d", sideExpr(d, cost), i))
	}
	// The stack takes its column names from the first (usage) side.
	if cost {
		cols = append(cols, "NULL::bigint", "NULL::bigint", "NULL::bigint", "NULL::bigint", "NULL::bigint", "NULL::bigint",
			"amount_usd", "last_day")
	} else {
		cols = append(cols, "input_uncached_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
			"output_tokens", "requests", "NULL::numeric AS amount_usd", "last_day")
	}
	return "SELECT " + strings.Join(cols, ", ") + " FROM " + usageSource(cost, useMonthly) + usageFilters(q, dims, cost, args)
}

// sideExpr is d's grouping expression on one side: cost rows carry no
// service tier, so their money lands under "" there.
func sideExpr(d tokka.Dimension, cost bool) string {
	if cost && !d.Cost {
		return "''"
	}
	return sqlOf(d)
}

// usageSource is the rows of one side within $2..$3: the daily table, or,
// when whole months ($5..$6) can come from the monthly rollup, the daily
// rows of the edge days beside the rollup's rows of those months.
func usageSource(cost, useMonthly bool) string {
	cols := "provider, connection_id, model, project_id, api_key_id, service_tier, day, " +
		"input_uncached_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, output_tokens, requests"
	dailyT, monthlyT := "tokka.usage_daily", "tokka.usage_monthly"
	if cost {
		cols = "provider, connection_id, model, project_id, api_key_id, day, amount_usd"
		dailyT, monthlyT = "tokka.cost_daily", "tokka.cost_monthly"
	}
	if !useMonthly {
		return "(SELECT " + cols + ", day AS last_day FROM " + dailyT +
			" WHERE team_id = $1 AND day >= $2 AND day <= $3) s"
	}
	return "(SELECT " + cols + ", day AS last_day FROM " + dailyT +
		" WHERE team_id = $1 AND day >= $2 AND day <= $3 AND (day < $5 OR day >= $6)" +
		" UNION ALL SELECT " + cols + ", last_day FROM " + monthlyT +
		" WHERE team_id = $1 AND day >= $5 AND day < $6) s"
}

// usageFilters is one side's WHERE clause: the dimension filters and, for a
// page after the first, the keyset bound, each value a new placeholder.
func usageFilters(q tokka.UsageQuery, dims []tokka.Dimension, cost bool, args *[]any) string {
	var conds []string
	for _, d := range tokka.UsageDimensions {
		v, ok := q.Filters[d.Name]
		if !ok || !d.Filters {
			continue
		}
		if cost && !d.Cost {
			// Costs are not reported per service tier: a tier filter
			// keeps only the tokens.
			conds = append(conds, "false")
			continue
		}
		*args = append(*args, v)
		conds = append(conds, fmt.Sprintf("%s::text = $%d", sqlOf(d), len(*args)))
	}
	if len(q.After) == len(dims) && len(dims) > 0 {
		// Only the groups after the last one read. A group's key is a
		// function of its rows, so filtering rows by it before grouping
		// (on both sides) is filtering groups.
		var exprs, vals []string
		for i, d := range dims {
			*args = append(*args, q.After[i])
			exprs = append(exprs, sideExpr(d, cost))
			vals = append(vals, fmt.Sprintf("$%d::%s", len(*args), d.Type))
		}
		conds = append(conds, "("+strings.Join(exprs, ", ")+") > ("+strings.Join(vals, ", ")+")")
		if dims[0].Type == "date" {
			// The leading key is a day, or the first day of a week or
			// month, so no later group has a day before it: a bound the
			// day indexes can use.
			conds = append(conds, fmt.Sprintf("day >= $%d::date", len(*args)-len(dims)+1))
		}
	}
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// GroupedDimensions returns the dimensions named in groupBy in the order
// results are sorted by (UsageDimensions' order), skipping unknown names.
func GroupedDimensions(groupBy []string) []tokka.Dimension {
	var dims []tokka.Dimension
	for _, d := range tokka.UsageDimensions {
		for _, g := range groupBy {
			if g == d.Name {
				dims = append(dims, d)
				break
			}
		}
	}
	return dims
}

func dimensionsOf(q tokka.UsageQuery) ([]tokka.Dimension, error) {
	dims := GroupedDimensions(q.GroupBy)
	if len(dims) != len(q.GroupBy) {
		return nil, &tokka.Error{Code: tokka.CodeInvalid, Field: "group_by", Message: "unknown or repeated group_by dimension"}
	}
	if len(q.After) != 0 && len(q.After) != len(dims) {
		return nil, &tokka.Error{Code: tokka.CodeInvalid, Field: "cursor", Message: "cursor is not one this API returned"}
	}
	return dims, nil
}

// exportChunk is how many rows EachUsageRow reads per transaction.
const exportChunk = 2000

// EachUsageRow runs the usage query for u and calls fn for every row in
// order (q.Limit and q.After are ignored: all rows). It reads the rows in
// chunks, each in its own short transaction under u's claims and keyset-
// paged on the grouping values, and calls fn only between transactions, so
// a caller that is slow to take the rows (an export to a slow client)
// holds no database connection meanwhile, and memory stays bounded by a
// chunk. Rows of different chunks may straddle a sync that ran between
// them; each row is consistent. An error from fn stops the iteration and
// is returned.
func (d *DB) EachUsageRow(ctx context.Context, u tokka.User, q tokka.UsageQuery, fn func(tokka.UsageGroup) error) error {
	return d.eachUsageRow(ctx, u, q, exportChunk, fn)
}

func (d *DB) eachUsageRow(ctx context.Context, u tokka.User, q tokka.UsageQuery, chunk int, fn func(tokka.UsageGroup) error) error {
	dims, err := dimensionsOf(q)
	if err != nil {
		return err
	}
	q.Limit, q.After = chunk, nil
	for {
		rows := make([]tokka.UsageGroup, 0, chunk)
		if _, err := d.usageRows(ctx, u, q, dims, false, func(r tokka.UsageGroup) error {
			rows = append(rows, r)
			return nil
		}); err != nil {
			return err
		}
		for _, r := range rows {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(rows) < chunk || len(dims) == 0 {
			return nil
		}
		last := rows[len(rows)-1]
		q.After = make([]string, len(dims))
		for i, dim := range dims {
			q.After[i] = last.Group[dim.Key]
		}
	}
}

// usageRows runs one usage query (q.Limit and q.After apply) in one
// transaction as u, then gives each row its directory names (read in the
// same transaction, so names and figures are of one moment) and calls fn.
// With version set it first reads u's data version in that transaction
// and returns it.
func (d *DB) usageRows(ctx context.Context, u tokka.User, q tokka.UsageQuery, dims []tokka.Dimension, version bool, fn func(tokka.UsageGroup) error) (string, error) {
	query, args := usageSQL(q, dims)
	args[0] = u.TeamID()
	var out []tokka.UsageGroup
	var v string
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		var err error
		if version {
			if v, err = dataVersion(ctx, tx, u); err != nil {
				return err
			}
		}
		out, err = readUsage(ctx, tx, u, query, args, dims)
		return err
	})
	if err != nil {
		return "", err
	}
	for _, r := range out {
		if err := fn(r); err != nil {
			return "", err
		}
	}
	return v, nil
}

// readUsage runs the usage query in tx and names its rows.
func readUsage(ctx context.Context, tx *sqlx.Tx, u tokka.User, query string, args []any, dims []tokka.Dimension) ([]tokka.UsageGroup, error) {
	var out []tokka.UsageGroup
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, domainError(err, "usage")
	}
	defer rows.Close()
	groups := make([]string, len(dims))
	dest := make([]any, 0, len(dims)+8)
	for i := range groups {
		dest = append(dest, &groups[i])
	}
	var r tokka.UsageGroup
	dest = append(dest, &r.InputUncachedTokens, &r.CacheReadTokens, &r.CacheWrite5mTokens,
		&r.CacheWrite1hTokens, &r.OutputTokens, &r.Requests, &r.CostUSD, &r.Provisional)
	projectIDs, keyIDs := map[string]bool{}, map[string]bool{}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, domainError(err, "usage row")
		}
		row := r
		row.Group = make(map[string]string, len(dims))
		for i, dim := range dims {
			row.Group[dim.Key] = groups[i]
		}
		if v := row.Group["project_id"]; v != "" {
			projectIDs[v] = true
		}
		if v := row.Group["api_key_id"]; v != "" {
			keyIDs[v] = true
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, domainError(err, "usage rows")
	}
	rows.Close()
	projects, keys, err := directoryNames(ctx, tx, u.TeamID(), setKeys(projectIDs), setKeys(keyIDs))
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Names = namesOf(projects, keys, out[i].Group["project_id"], out[i].Group["api_key_id"])
	}
	return out, nil
}

// setKeys returns a set's members in order.
func setKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Usage returns one page of the grouped usage rows (Limit, After), read in
// one transaction.
func (d *DB) Usage(ctx context.Context, u tokka.User, q tokka.UsageQuery) ([]tokka.UsageGroup, error) {
	rows, _, err := d.UsageAt(ctx, u, q)
	return rows, err
}

// UsageAt is Usage and u's data version, read first in the same
// transaction.
func (d *DB) UsageAt(ctx context.Context, u tokka.User, q tokka.UsageQuery) ([]tokka.UsageGroup, string, error) {
	dims, err := dimensionsOf(q)
	if err != nil {
		return nil, "", err
	}
	rows := []tokka.UsageGroup{}
	v, err := d.usageRows(ctx, u, q, dims, true, func(r tokka.UsageGroup) error {
		rows = append(rows, r)
		return nil
	})
	return rows, v, err
}

// ExplainUsage returns EXPLAIN (ANALYZE, BUFFERS) of the usage query for u,
// run as u under row-level security exactly as the API runs it. For
// benchmarks and operators; it executes the query.
func (d *DB) ExplainUsage(ctx context.Context, u tokka.User, q tokka.UsageQuery) (string, error) {
	dims, err := dimensionsOf(q)
	if err != nil {
		return "", err
	}
	query, args := usageSQL(q, dims)
	args[0] = u.TeamID()
	var lines []string
	err = d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &lines, `EXPLAIN (ANALYZE, BUFFERS) `+query, args...), "explain")
	})
	return strings.Join(lines, "\n"), err
}
