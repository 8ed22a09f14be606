package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/shopspring/decimal"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// UsageDimensions maps each group_by value the API accepts to its column,
// in the order results are sorted by. Only these strings ever reach SQL.
var UsageDimensions = []struct{ Name, Column string }{
	{"day", "day"},
	{"provider", "provider"},
	{"connection", "connection_id"},
	{"model", "model"},
	{"project", "project_id"},
}

// UsageQuery selects usage for the days From..To (both inclusive, UTC).
type UsageQuery struct {
	From, To time.Time
	GroupBy  []string // names from UsageDimensions; unknown names are ignored
	Provider string   // optional filter
}

// UsageRow is one group of the result: the grouping values (nil when not
// grouped by that dimension) and the sums.
type UsageRow struct {
	Day                 *string         `db:"day" json:"day,omitempty"`
	Provider            *string         `db:"provider" json:"provider,omitempty"`
	ConnectionID        *string         `db:"connection_id" json:"connection_id,omitempty"`
	Model               *string         `db:"model" json:"model,omitempty"`
	ProjectID           *string         `db:"project_id" json:"project_id,omitempty"`
	InputTokens         int64           `db:"input_tokens" json:"input_tokens"`
	InputUncachedTokens int64           `db:"input_uncached_tokens" json:"input_uncached_tokens"`
	CacheReadTokens     int64           `db:"cache_read_tokens" json:"cache_read_tokens"`
	CacheWriteTokens    int64           `db:"cache_write_tokens" json:"cache_write_tokens"`
	OutputTokens        int64           `db:"output_tokens" json:"output_tokens"`
	Requests            int64           `db:"requests" json:"requests"`
	CostUSD             decimal.Decimal `db:"cost_usd" json:"cost_usd"`
}

// Usage sums u's usage and cost rows over the query's days and groups.
// Tokens come from the usage tables, money from the providers' cost reports
// (which are what reconcile with the invoice); the two are joined on the
// grouping values.
func (d *DB) Usage(ctx context.Context, u tokka.User, q UsageQuery) ([]UsageRow, error) {
	var dims []string
	for _, dim := range UsageDimensions {
		for _, g := range q.GroupBy {
			if g == dim.Name {
				dims = append(dims, dim.Column)
				break
			}
		}
	}
	sel := func(prefix string) string {
		var b strings.Builder
		for _, c := range dims {
			if c == "day" {
				b.WriteString("to_char(day, 'YYYY-MM-DD') AS day, ")
			} else {
				b.WriteString(c + "::text AS " + c + ", ")
			}
		}
		return b.String()
	}
	groupBy := ""
	if len(dims) > 0 {
		groupBy = " GROUP BY " + strings.Join(dims, ", ")
	}
	where := ` WHERE user_id = $1 AND day >= $2 AND day <= $3 AND ($4 = '' OR provider = $4)`
	join := " CROSS JOIN "
	if len(dims) > 0 {
		join = " FULL JOIN "
	}
	using := ""
	if len(dims) > 0 {
		using = " USING (" + strings.Join(dims, ", ") + ")"
	}
	var outer strings.Builder
	for _, c := range []string{"day", "provider", "connection_id", "model", "project_id"} {
		found := false
		for _, dc := range dims {
			if dc == c {
				found = true
			}
		}
		if found {
			outer.WriteString(c + ", ")
		} else {
			outer.WriteString("NULL::text AS " + c + ", ")
		}
	}
	query := `
		WITH u AS (
			SELECT ` + sel("") + `
				sum(input_uncached_tokens + cache_read_tokens + cache_write_5m_tokens + cache_write_1h_tokens) AS input_tokens,
				sum(input_uncached_tokens) AS input_uncached_tokens,
				sum(cache_read_tokens) AS cache_read_tokens,
				sum(cache_write_5m_tokens + cache_write_1h_tokens) AS cache_write_tokens,
				sum(output_tokens) AS output_tokens,
				sum(requests) AS requests
			FROM tokka.usage_daily` + where + groupBy + `
		), c AS (
			SELECT ` + sel("") + ` sum(amount_usd) AS cost_usd
			FROM tokka.cost_daily` + where + groupBy + `
		)
		SELECT ` + outer.String() + `
			coalesce(input_tokens, 0) AS input_tokens,
			coalesce(input_uncached_tokens, 0) AS input_uncached_tokens,
			coalesce(cache_read_tokens, 0) AS cache_read_tokens,
			coalesce(cache_write_tokens, 0) AS cache_write_tokens,
			coalesce(output_tokens, 0) AS output_tokens,
			coalesce(requests, 0) AS requests,
			coalesce(cost_usd, 0) AS cost_usd
		FROM u` + join + `c` + using
	if len(dims) > 0 {
		query += " ORDER BY " + strings.Join(dims, ", ")
	}
	rows := []UsageRow{}
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &rows, query,
			u.ID, q.From.Format(time.DateOnly), q.To.Format(time.DateOnly), q.Provider), "usage")
	})
	return rows, err
}
