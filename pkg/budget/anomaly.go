package budget

import (
	"sort"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// AnomalyConfig says what "far above normal" means. A day's spend S in a
// scope (everything, one provider, one provider's model) is an anomaly when,
// against the scope's daily spend over the previous BaselineDays days
// (days with no cost count as 0; days before the user's first cost are not
// counted):
//
//	S > median + K × MAD      (MAD = median absolute deviation)
//	S ≥ MinRatio × median
//	S − median ≥ MinUSD
//
// and, when at least 3 of the same weekdays in that window are history
// (weekday-aware: Mondays against Mondays), the same three tests hold
// against those days too — so a job that always runs big on Saturdays is
// not an anomaly every Saturday. Median and MAD are robust: one earlier
// spike in the baseline barely moves them. A day is only judged once the
// user has MinHistoryDays days of history before it.
type AnomalyConfig struct {
	BaselineDays   int             // default 28 (4 weeks)
	K              decimal.Decimal // default 6
	MinRatio       decimal.Decimal // default 1.5
	MinUSD         decimal.Decimal // default 10 (ANOMALY_MIN_USD)
	MinHistoryDays int             // default 14
	// Days is how many of the most recent days (today included) each
	// evaluation judges; default 3, the syncer's re-read window, so a day
	// restated late is judged again.
	Days int
}

func (c *AnomalyConfig) defaults() {
	if c.BaselineDays <= 0 {
		c.BaselineDays = 28
	}
	if !c.K.IsPositive() {
		c.K = decimal.NewFromInt(6)
	}
	if !c.MinRatio.IsPositive() {
		c.MinRatio = decimal.RequireFromString("1.5")
	}
	if !c.MinUSD.IsPositive() {
		c.MinUSD = decimal.NewFromInt(10)
	}
	if c.MinHistoryDays <= 0 {
		c.MinHistoryDays = 14
	}
	if c.Days <= 0 {
		c.Days = 3
	}
}

// Anomaly scope kinds.
const (
	AnomalyAll      = "all"
	AnomalyProvider = "provider"
	AnomalyModel    = "model"
)

// AnomalyScope is what an anomaly is about.
type AnomalyScope struct {
	Kind     string `json:"scope"`
	Provider string `json:"provider,omitempty"`
	Model    string `json:"model,omitempty"`
}

func (s AnomalyScope) key() string {
	switch s.Kind {
	case AnomalyProvider:
		return "provider:" + s.Provider
	case AnomalyModel:
		return "model:" + s.Provider + ":" + s.Model
	}
	return "all"
}

// Anomaly is one day's spend in one scope far above its baseline. Drivers
// are the narrower scopes that were anomalous the same day (a spike in one
// model is reported once, on the broadest anomalous scope, naming the model).
type Anomaly struct {
	AnomalyScope
	Day                 string           `json:"day"`
	SpendUSD            decimal.Decimal  `json:"spend_usd"`
	MedianUSD           decimal.Decimal  `json:"baseline_median_usd"`
	MADUSD              decimal.Decimal  `json:"baseline_mad_usd"`
	ThresholdUSD        decimal.Decimal  `json:"threshold_usd"`
	WeekdayMedianUSD    *decimal.Decimal `json:"weekday_median_usd,omitempty"`
	WeekdayThresholdUSD *decimal.Decimal `json:"weekday_threshold_usd,omitempty"`
	BaselineDays        int              `json:"baseline_days"`
	Drivers             []Anomaly        `json:"drivers,omitempty"`
}

// AnomalyRange is the span of days DetectAnomalies needs rows for.
func AnomalyRange(now time.Time, cfg AnomalyConfig) (from, to time.Time) {
	cfg.defaults()
	today := day(now)
	return today.AddDate(0, 0, -(cfg.Days - 1 + cfg.BaselineDays)), today
}

// DetectAnomalies judges the last cfg.Days days up to now against their
// baselines and returns the anomalies, broadest scope first per day.
func DetectAnomalies(rows []tokka.SpendRow, now time.Time, cfg AnomalyConfig) []Anomaly {
	cfg.defaults()
	series := map[string]map[string]decimal.Decimal{}
	scopes := map[string]AnomalyScope{}
	first := ""
	add := func(s AnomalyScope, d string, v decimal.Decimal) {
		k := s.key()
		if series[k] == nil {
			series[k] = map[string]decimal.Decimal{}
			scopes[k] = s
		}
		series[k][d] = series[k][d].Add(v)
	}
	for _, r := range rows {
		if first == "" || r.Day < first {
			first = r.Day
		}
		add(AnomalyScope{Kind: AnomalyAll}, r.Day, r.USD)
		add(AnomalyScope{Kind: AnomalyProvider, Provider: string(r.Provider)}, r.Day, r.USD)
		if r.Model != "" {
			add(AnomalyScope{Kind: AnomalyModel, Provider: string(r.Provider), Model: r.Model}, r.Day, r.USD)
		}
	}
	if first == "" {
		return nil
	}
	keys := make([]string, 0, len(scopes))
	for k := range scopes {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var out []Anomaly
	today := day(now)
	for i := cfg.Days - 1; i >= 0; i-- {
		x := today.AddDate(0, 0, -i)
		xs := x.Format(time.DateOnly)
		var baseline, weekday []string
		for j := 1; j <= cfg.BaselineDays; j++ {
			d := x.AddDate(0, 0, -j).Format(time.DateOnly)
			if d < first {
				continue
			}
			baseline = append(baseline, d)
			if j%7 == 0 {
				weekday = append(weekday, d)
			}
		}
		if len(baseline) < cfg.MinHistoryDays {
			continue
		}
		var found []Anomaly
		for _, k := range keys {
			if a, ok := judge(series[k], xs, baseline, weekday, cfg); ok {
				a.AnomalyScope = scopes[k]
				found = append(found, a)
			}
		}
		out = append(out, nest(found)...)
	}
	return out
}

// judge tests one scope's day against its baselines.
func judge(s map[string]decimal.Decimal, x string, baseline, weekday []string, cfg AnomalyConfig) (Anomaly, bool) {
	spend := s[x]
	if !spend.IsPositive() {
		return Anomaly{}, false
	}
	values := func(days []string) []decimal.Decimal {
		v := make([]decimal.Decimal, len(days))
		for i, d := range days {
			v[i] = s[d]
		}
		return v
	}
	test := func(v []decimal.Decimal) (med, mad, thr decimal.Decimal, far bool) {
		med, mad = medianMAD(v)
		thr = med.Add(cfg.K.Mul(mad))
		far = spend.GreaterThan(thr) &&
			spend.GreaterThanOrEqual(cfg.MinRatio.Mul(med)) &&
			spend.Sub(med).GreaterThanOrEqual(cfg.MinUSD)
		return med, mad, thr, far
	}
	med, mad, thr, far := test(values(baseline))
	if !far {
		return Anomaly{}, false
	}
	a := Anomaly{Day: x, SpendUSD: spend, MedianUSD: med, MADUSD: mad, ThresholdUSD: thr, BaselineDays: len(baseline)}
	if len(weekday) >= 3 {
		wmed, _, wthr, wfar := test(values(weekday))
		if !wfar {
			return Anomaly{}, false
		}
		a.WeekdayMedianUSD, a.WeekdayThresholdUSD = &wmed, &wthr
	}
	return a, true
}

// nest reports each day's spike once, on its broadest anomalous scope: model
// anomalies become drivers of their provider's anomaly, provider (and
// remaining model) anomalies drivers of the overall one.
func nest(found []Anomaly) []Anomaly {
	var all *Anomaly
	providers := map[string]*Anomaly{}
	var order []*Anomaly
	for i := range found {
		a := &found[i]
		switch a.Kind {
		case AnomalyAll:
			all = a
		case AnomalyProvider:
			providers[a.Provider] = a
		}
	}
	for i := range found {
		a := &found[i]
		switch {
		case a.Kind == AnomalyAll:
			order = append(order, a)
		case all != nil:
			all.Drivers = append(all.Drivers, *a)
		case a.Kind == AnomalyModel && providers[a.Provider] != nil:
			p := providers[a.Provider]
			p.Drivers = append(p.Drivers, *a)
		default:
			order = append(order, a)
		}
	}
	out := make([]Anomaly, 0, len(order))
	for _, a := range order {
		out = append(out, *a)
	}
	return out
}

// medianMAD returns the median of v and the median absolute deviation from
// it, exactly (decimal arithmetic, halves of an even count averaged).
func medianMAD(v []decimal.Decimal) (med, mad decimal.Decimal) {
	med = median(v)
	dev := make([]decimal.Decimal, len(v))
	for i, x := range v {
		dev[i] = x.Sub(med).Abs()
	}
	return med, median(dev)
}

func median(v []decimal.Decimal) decimal.Decimal {
	if len(v) == 0 {
		return decimal.Zero
	}
	s := append([]decimal.Decimal(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i].LessThan(s[j]) })
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return s[n/2-1].Add(s[n/2]).Div(decimal.NewFromInt(2))
}
