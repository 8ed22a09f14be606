package tokka

import (
	"time"

	"github.com/shopspring/decimal"
)

// UsageQuery selects usage for the days From..To (both inclusive, UTC).
type UsageQuery struct {
	From, To time.Time
	GroupBy  []string          // dimension names
	Filters  map[string]string // dimension name → exact value
	// ProvisionalFrom is the first day whose figures may still change (the
	// providers restate recent days; the syncer re-reads them).
	ProvisionalFrom time.Time
	Limit           int // rows per page; 0 = no limit (export)
	// After, when set, starts the result after the row whose grouping
	// values (as text, in the order of GroupedDimensions) it holds: keyset
	// paging, which keeps its place when rows before it come and go. The
	// API's cursors and EachUsageRow's chunks both page this way.
	After []string
	// IncludeZero keeps groups whose every figure (tokens, requests and
	// cost) is zero; by default they are left out, since they tell a
	// reader nothing.
	IncludeZero bool
}

// UsageGroup is one group of a usage query's result: the grouping values
// (keyed by Dimension.Key; absent when not grouped by that dimension), the
// token figures (the same Tokens a provider's daily row carries) and the
// cost. Its JSON form is written by package httpapi from TokenFields.
type UsageGroup struct {
	Group map[string]string
	Tokens
	CostUSD     decimal.Decimal
	Provisional bool // some of its days may still be restated by the provider
	// Names are the directory names of the group's project_id and
	// api_key_id, filled when the group has them.
	Names
}

// Add accumulates o into r (for totals).
func (r *UsageGroup) Add(o UsageGroup) {
	r.Tokens.Add(o.Tokens)
	r.CostUSD = r.CostUSD.Add(o.CostUSD)
	r.Provisional = r.Provisional || o.Provisional
}

// Dimension is one way usage can be grouped or filtered.
type Dimension struct {
	Name    string // the group_by / filter name in the API
	Key     string // the JSON field of a grouped row
	Cost    bool   // whether cost rows carry this dimension (otherwise their cost lands under "")
	Filters bool   // whether it can be a filter (day/week/month are ranges, not filters)
	Type    string // the SQL type of its values: "date" (YYYY-MM-DD), "uuid" or "text"
}

// UsageDimensions lists every dimension in the order results are sorted.
var UsageDimensions = []Dimension{
	{Name: "month", Key: "month", Cost: true, Type: "date"},
	{Name: "week", Key: "week", Cost: true, Type: "date"},
	{Name: "day", Key: "day", Cost: true, Type: "date"},
	{Name: "provider", Key: "provider", Cost: true, Filters: true, Type: "text"},
	{Name: "connection", Key: "connection_id", Cost: true, Filters: true, Type: "uuid"},
	{Name: "model", Key: "model", Cost: true, Filters: true, Type: "text"},
	{Name: "project", Key: "project_id", Cost: true, Filters: true, Type: "text"},
	{Name: "api_key", Key: "api_key_id", Cost: true, Filters: true, Type: "text"},
	{Name: "service_tier", Key: "service_tier", Cost: false, Filters: true, Type: "text"},
}

// DimensionByName returns the dimension called name.
func DimensionByName(name string) (Dimension, bool) {
	for _, d := range UsageDimensions {
		if d.Name == name {
			return d, true
		}
	}
	return Dimension{}, false
}

// GroupedDimensions returns the dimensions named in groupBy in the order
// results are sorted by (UsageDimensions' order), skipping unknown names.
func GroupedDimensions(groupBy []string) []Dimension {
	var dims []Dimension
	for _, d := range UsageDimensions {
		for _, g := range groupBy {
			if g == d.Name {
				dims = append(dims, d)
				break
			}
		}
	}
	return dims
}
