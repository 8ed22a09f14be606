package tokka

import (
	"time"

	"github.com/shopspring/decimal"
)

// SpendPeriods are the cost sums the summary is built from, per provider.
type SpendPeriods struct {
	Provider          string          `db:"provider"`
	MonthToDate       decimal.Decimal `db:"mtd"`
	MonthToYesterday  decimal.Decimal `db:"mtd_complete"`
	PreviousMonth     decimal.Decimal `db:"prev"`
	SamePeriodLast    decimal.Decimal `db:"same_period"`
	LastSevenComplete decimal.Decimal `db:"last7"`
	TokensMonthToDate int64           `db:"tokens_mtd"`
	// FirstDay is the earliest day with a cost row since the start of the
	// previous month (nil without any), so a new account's run rate is not
	// diluted by days before it existed.
	FirstDay *time.Time `db:"first_day"`
}

// TopItem is a model, project or API key ranked by month-to-date cost.
// Name is the model, or the project or key id (the identity filters take);
// Names carries the directory names of a project or key.
type TopItem struct {
	Provider string          `db:"provider" json:"provider"`
	Name     string          `db:"name" json:"name"`
	CostUSD  decimal.Decimal `db:"cost_usd" json:"cost_usd"`
	Names    `db:"-" json:"-"`
}

// SummaryData is what GET /v1/usage/summary is computed from.
type SummaryData struct {
	ByProvider  []SpendPeriods
	TopModels   []TopItem
	TopProjects []TopItem
	TopAPIKeys  []TopItem
	AsOf        *time.Time
}
