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
}

// UsageGroup is one group of a usage query's result: the grouping values (absent when not
// grouped by that dimension) and the sums.
type UsageGroup struct {
	Group               map[string]string `json:"-"`
	InputTokens         int64             `json:"input_tokens"`
	InputUncachedTokens int64             `json:"input_uncached_tokens"`
	CacheReadTokens     int64             `json:"cache_read_tokens"`
	CacheWrite5mTokens  int64             `json:"cache_write_5m_tokens"`
	CacheWrite1hTokens  int64             `json:"cache_write_1h_tokens"`
	OutputTokens        int64             `json:"output_tokens"`
	Requests            int64             `json:"requests"`
	CostUSD             decimal.Decimal   `json:"cost_usd"`
	Provisional         bool              `json:"provisional"`
}

// Add accumulates o into r (for totals).
func (r *UsageGroup) Add(o UsageGroup) {
	r.InputTokens += o.InputTokens
	r.InputUncachedTokens += o.InputUncachedTokens
	r.CacheReadTokens += o.CacheReadTokens
	r.CacheWrite5mTokens += o.CacheWrite5mTokens
	r.CacheWrite1hTokens += o.CacheWrite1hTokens
	r.OutputTokens += o.OutputTokens
	r.Requests += o.Requests
	r.CostUSD = r.CostUSD.Add(o.CostUSD)
	r.Provisional = r.Provisional || o.Provisional
}
