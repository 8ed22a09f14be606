package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/shopspring/decimal"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// UsageStore is the storage the usage handlers need: grouped usage, the
// export's row stream and the month summary.
type UsageStore interface {
	Usage(ctx context.Context, u tokka.User, q tokka.UsageQuery) ([]tokka.UsageGroup, error)
	EachUsageRow(ctx context.Context, u tokka.User, q tokka.UsageQuery, fn func(tokka.UsageGroup) error) error
	// UsageAt and SummaryAt also return the user's data version, read
	// before the figures in the same transaction; DataVersion reads it
	// alone. Kept answers are filed under it.
	UsageAt(ctx context.Context, u tokka.User, q tokka.UsageQuery) ([]tokka.UsageGroup, string, error)
	SummaryAt(ctx context.Context, u tokka.User, today time.Time, top int) (tokka.SummaryData, string, error)
	DataVersion(ctx context.Context, u tokka.User) (string, error)
}

const (
	// maxUsageDays caps one usage query's range, from and to both counted:
	// a leap year, so to is at most 365 days after from.
	maxUsageDays      = 366
	defaultUsageLimit = 1000
	maxUsageLimit     = 5000
)

// groupValue is a grouping value as the API shows it: as stored, except a
// month, which storage gives as its first day and the API writes as
// YYYY-MM like every month it shows (the summary, budget status).
func groupValue(key, v string) string {
	if key == "month" && len(v) == len(time.DateOnly) {
		return v[:len("2006-01")]
	}
	return v
}

// usageRowJSON writes a row's grouping values as top-level fields beside
// its sums.
type usageRowJSON tokka.UsageGroup

// usageRowField is one field of a usage row's JSON: a figure, or a
// grouping value (group, the dimension's key).
type usageRowField struct {
	key   string
	kind  int // one of the fieldX constants
	token tokka.TokenField
}

const (
	fieldInputTokens = iota
	fieldCost
	fieldProvisional
	fieldToken
	fieldGroup
	fieldName
)

// usageRowFields is every field a usage row can have, in the order
// encoding/json writes a map's keys (sorted), which is the order the rows
// have always had: the grouping keys, input_tokens, the token figures under
// the names tokka.TokenFields declares, cost_usd and provisional.
var usageRowFields = func() []usageRowField {
	fields := []usageRowField{{key: "input_tokens", kind: fieldInputTokens}, {key: "cost_usd", kind: fieldCost},
		{key: "provisional", kind: fieldProvisional}}
	for _, f := range tokka.TokenFields {
		fields = append(fields, usageRowField{key: f.Name, kind: fieldToken, token: f})
	}
	for _, d := range tokka.UsageDimensions {
		fields = append(fields, usageRowField{key: d.Key, kind: fieldGroup})
	}
	for _, k := range nameKeys {
		fields = append(fields, usageRowField{key: k, kind: fieldName})
	}
	sort.Slice(fields, func(i, j int) bool { return fields[i].key < fields[j].key })
	return fields
}()

// The name fields a row carries beside its ids: project_name and
// workspace_name with project_id (an OpenAI project or an Anthropic
// workspace), api_key_name with api_key_id; null when the directory does
// not know the id.
const (
	keyProjectName   = "project_name"
	keyWorkspaceName = "workspace_name"
	keyAPIKeyName    = "api_key_name"
)

var nameKeys = []string{keyProjectName, keyWorkspaceName, keyAPIKeyName}

// nameField returns the name field k of r and whether r carries it (it is
// grouped by the id the name is of).
func nameField(r *tokka.UsageGroup, k string) (*string, bool) {
	switch k {
	case keyProjectName:
		_, ok := r.Group["project_id"]
		return r.ProjectName, ok
	case keyWorkspaceName:
		_, ok := r.Group["project_id"]
		return r.WorkspaceName, ok
	case keyAPIKeyName:
		_, ok := r.Group["api_key_id"]
		return r.APIKeyName, ok
	}
	return nil, false
}

// MarshalJSON writes the row as appendJSON does.
func (r usageRowJSON) MarshalJSON() ([]byte, error) {
	return r.appendJSON(make([]byte, 0, 320)), nil
}

// appendJSON appends the row's fields straight to b: a dashboard answer is
// hundreds of rows, and building a map per row for encoding/json to reflect
// on and sort was most of the handler's time.
func (r *usageRowJSON) appendJSON(b []byte) []byte {
	b = append(b, '{')
	for _, f := range usageRowFields {
		switch f.kind {
		case fieldInputTokens:
			b = strconv.AppendInt(appendKey(b, f.key), (*tokka.UsageGroup)(r).InputTokens(), 10)
		case fieldCost:
			// As decimal.Decimal's MarshalJSON writes it: its String, quoted.
			b = append(appendKey(b, f.key), '"')
			b = append(b, r.CostUSD.String()...)
			b = append(b, '"')
		case fieldProvisional:
			b = strconv.AppendBool(appendKey(b, f.key), r.Provisional)
		case fieldToken:
			b = strconv.AppendInt(appendKey(b, f.key), *f.token.Of(&r.Tokens), 10)
		case fieldName:
			if name, ok := nameField((*tokka.UsageGroup)(r), f.key); ok {
				if name == nil {
					b = append(appendKey(b, f.key), "null"...)
				} else {
					b = appendJSONString(appendKey(b, f.key), *name)
				}
			}
		case fieldGroup:
			if g, ok := r.Group[f.key]; ok {
				b = appendJSONString(appendKey(b, f.key), groupValue(f.key, g))
			}
		}
	}
	return append(b, '}')
}

// appendKey appends a field name (one of ours: plain ASCII) and its colon,
// after a comma unless it is the object's first.
func appendKey(b []byte, k string) []byte {
	if b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, k...)
	return append(b, '"', ':')
}

// appendJSONString appends s as encoding/json (HTML-escaping, as the api's
// encoder does) would. Ids, days and most names are printable ASCII with
// nothing to escape and are copied; anything else goes through
// encoding/json so the bytes stay exactly its.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// usageResponse is a list like every other (page) with the query it
// answers and its totals beside it.
type usageResponse struct {
	page[usageRowJSON]
	From    string            `json:"from"`
	To      string            `json:"to"`
	GroupBy []string          `json:"group_by"`
	Filters map[string]string `json:"filters"`
	Totals  usageRowJSON      `json:"totals"`
}

// appendJSON appends the response, and the newline that ends it, as
// encoding/json's Encoder (which c.JSON uses) writes it, HTML escaping
// included: the bytes are pinned by TestUsageResponsesAreByteStable. It
// is written by hand because encoding/json would check and compact every
// row's MarshalJSON output again, which cost as much as writing it.
func (r *usageResponse) appendJSON(b []byte) []byte {
	b = append(b, `{"data":[`...)
	for i := range r.Data {
		if i > 0 {
			b = append(b, ',')
		}
		b = r.Data[i].appendJSON(b)
	}
	b = append(b, `],"has_more":`...)
	b = strconv.AppendBool(b, r.HasMore)
	b = append(b, `,"next_cursor":`...)
	if r.NextCursor == nil {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, *r.NextCursor)
	}
	b = appendJSONString(append(b, `,"from":`...), r.From)
	b = appendJSONString(append(b, `,"to":`...), r.To)
	b = append(b, `,"group_by":`...)
	if r.GroupBy == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, g := range r.GroupBy {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, g)
		}
		b = append(b, ']')
	}
	b = append(b, `,"filters":`...)
	if r.Filters == nil {
		b = append(b, "null"...)
	} else {
		keys := make([]string, 0, len(r.Filters))
		for k := range r.Filters {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(appendJSONString(b, k), ':')
			b = appendJSONString(b, r.Filters[k])
		}
		b = append(b, '}')
	}
	b = r.Totals.appendJSON(append(b, `,"totals":`...))
	return append(b, '}', '\n')
}

// usageBuffers holds the buffers usage answers are written into, so a busy
// dashboard does not allocate (and collect) a large body per request.
var usageBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// writeUsage writes resp as c.JSON would, with its length: one write, not
// a chunked body. sent is given the body (to keep) before it is written.
func writeUsage(c echo.Context, resp *usageResponse, sent func([]byte)) error {
	buf := usageBuffers.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= 4<<20 { // a rare huge answer is not kept
			usageBuffers.Put(buf)
		}
	}()
	*buf = resp.appendJSON((*buf)[:0])
	sent(*buf)
	return writeJSONBody(c, *buf)
}

// writeJSONBody writes body (JSON, newline included) as a 200 with its
// length.
func writeJSONBody(c echo.Context, body []byte) error {
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(len(body)))
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, body)
}

// The days a usage query may name. Go parses years 0000 to 9999, Postgres
// has no year 0 and nothing before 2000 or after 2100 is usage anyway.
var (
	firstUsageDay = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	lastUsageDay  = time.Date(2100, 12, 31, 0, 0, 0, 0, time.UTC)
)

func parseDay(c echo.Context, name string, def time.Time) (time.Time, error) {
	v := c.QueryParam(name)
	if v == "" {
		return def, nil
	}
	d, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return time.Time{}, &tokka.Error{Code: tokka.CodeInvalid, Field: name, Message: name + " must be a date as YYYY-MM-DD"}
	}
	if d.Before(firstUsageDay) || d.After(lastUsageDay) {
		return time.Time{}, &tokka.Error{Code: tokka.CodeInvalid, Field: name,
			Message: name + " must be a date from 2000-01-01 to 2100-12-31"}
	}
	return d, nil
}

// usageDays is the number of days q spans, both ends included.
func usageDays(q tokka.UsageQuery) int {
	return int(q.To.Sub(q.From).Hours()/24) + 1
}

// usageQuery reads from, to, group_by and the dimension filters shared by
// /v1/usage and /v1/usage/export.csv.
func (s *Server) usageQuery(c echo.Context) (tokka.UsageQuery, error) {
	today := s.cfg.Now().UTC().Truncate(24 * time.Hour)
	to, err := parseDay(c, "to", today)
	if err != nil {
		return tokka.UsageQuery{}, err
	}
	from, err := parseDay(c, "from", maxTime(to.AddDate(0, 0, -29), firstUsageDay))
	if err != nil {
		return tokka.UsageQuery{}, err
	}
	if from.After(to) {
		return tokka.UsageQuery{}, &tokka.Error{Code: tokka.CodeInvalid, Field: "from", Message: "from must not be after to"}
	}
	if days := usageDays(tokka.UsageQuery{From: from, To: to}); days > maxUsageDays {
		return tokka.UsageQuery{}, &tokka.Error{Code: tokka.CodeInvalid, Field: "from",
			Message: "from..to, both included, may span at most " + strconv.Itoa(maxUsageDays) + " days (to at most " +
				strconv.Itoa(maxUsageDays-1) + " days after from)"}
	}
	q := tokka.UsageQuery{From: from, To: to, GroupBy: []string{}, Filters: map[string]string{},
		ProvisionalFrom: today.AddDate(0, 0, -(s.cfg.ProvisionalDays - 1))}
	switch v := c.QueryParam("include_zero"); v {
	case "", "false":
	case "true":
		q.IncludeZero = true
	default:
		return q, &tokka.Error{Code: tokka.CodeInvalid, Field: "include_zero", Message: "include_zero must be true or false"}
	}
	groups, ok := listParam(c, "group_by")
	if !ok {
		return q, &tokka.Error{Code: tokka.CodeInvalid, Field: "group_by", Message: "group_by has an empty element"}
	}
	seen := map[string]bool{}
	for _, g := range groups {
		if _, known := tokka.DimensionByName(g); !known {
			return q, &tokka.Error{Code: tokka.CodeInvalid, Field: "group_by",
				Message: "group_by takes a list of month, week, day, provider, connection, model, project, api_key, service_tier (comma-separated, repeated, or both)"}
		}
		if !seen[g] {
			seen[g] = true
			q.GroupBy = append(q.GroupBy, g)
		}
	}
	for _, d := range tokka.UsageDimensions {
		if !d.Filters {
			continue
		}
		v := c.QueryParam(d.Name)
		if v == "" {
			continue
		}
		if len(v) > 200 || !utf8.ValidString(v) {
			return q, &tokka.Error{Code: tokka.CodeInvalid, Field: d.Name, Message: d.Name + " is not a valid filter value"}
		}
		switch d.Name {
		case "provider":
			if !tokka.Provider(v).Valid() {
				return q, &tokka.Error{Code: tokka.CodeInvalid, Field: "provider", Message: `provider must be "openai" or "anthropic"`}
			}
		case "connection":
			// Ids are stored in canonical (lower-case) form: an upper-case
			// id must find the same rows, not none.
			id, err := parseUUID(v)
			if err != nil {
				return q, &tokka.Error{Code: tokka.CodeInvalid, Field: "connection", Message: "connection must be a connection id"}
			}
			v = id
		}
		q.Filters[d.Name] = v
	}
	return q, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// usagePage is usageQuery plus /v1/usage's limit and cursor.
func (s *Server) usagePage(c echo.Context) (tokka.UsageQuery, error) {
	q, err := s.usageQuery(c)
	if err != nil {
		return q, err
	}
	q.Limit = defaultUsageLimit
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxUsageLimit {
			return q, &tokka.Error{Code: tokka.CodeInvalid, Field: "limit", Message: "limit must be between 1 and " + strconv.Itoa(maxUsageLimit)}
		}
		q.Limit = n
	}
	if v := c.QueryParam("cursor"); v != "" {
		if q.After, err = decodeUsageCursor(v, q); err != nil {
			return q, err
		}
	}
	return q, nil
}

func (s *Server) usage(c echo.Context) error {
	q, err := s.usagePage(c)
	if err != nil {
		return err
	}
	if kept, err := s.sendKept(c); kept || err != nil {
		return err
	}
	ctx := c.Request().Context()
	u := userOf(c)
	// One extra row tells whether another page exists.
	page := q
	page.Limit++
	rows, version, err := s.usageRows.UsageAt(ctx, u, page)
	if err != nil {
		return err
	}
	resp := usageResponse{From: q.From.Format(time.DateOnly), To: q.To.Format(time.DateOnly),
		GroupBy: q.GroupBy, Filters: q.Filters}
	data := make([]usageRowJSON, len(rows))
	for i, r := range rows {
		data[i] = usageRowJSON(r)
	}
	dims := tokka.GroupedDimensions(q.GroupBy)
	resp.page = pageOf(data, q.Limit, queryDigest(q), func(last usageRowJSON) []string {
		after := make([]string, len(dims))
		for i, d := range dims {
			after[i] = last.Group[d.Key]
		}
		return after
	})
	rows = rows[:len(resp.Data)]
	// Totals cover the whole query, not just this page: when the page is
	// the whole result they are its sum, otherwise one more query.
	if !resp.HasMore && q.After == nil {
		var t tokka.UsageGroup
		for _, r := range rows {
			t.Add(r)
		}
		resp.Totals = usageRowJSON(t)
	} else {
		total := q
		total.GroupBy, total.Limit, total.After = []string{}, 0, nil
		totals, err := s.usageRows.Usage(ctx, u, total)
		if err != nil {
			return err
		}
		if len(totals) == 1 {
			resp.Totals = usageRowJSON(totals[0])
		}
	}
	return writeUsage(c, &resp, func(body []byte) { s.keep(c, version, body) })
}

// A usage cursor (see cursor) belongs to its query's digest and holds the
// grouping values of the last row served, so replacing the rows of recent
// days between two pages neither repeats nor skips a group that was there,
// and it cannot be reused with other parameters.

// queryDigest identifies everything that decides a usage result's rows
// except the page size: the range, the grouping (in the order given) and the
// filters (values in canonical form).
func queryDigest(q tokka.UsageQuery) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d", q.From.Format(time.DateOnly), q.To.Format(time.DateOnly), len(q.GroupBy))
	if q.IncludeZero {
		// Only when set, so cursors issued before the parameter existed
		// stay valid.
		fmt.Fprint(h, "\x00include_zero")
	}
	for _, g := range q.GroupBy {
		fmt.Fprintf(h, "\x00%s", g)
	}
	for _, d := range tokka.UsageDimensions {
		if v, ok := q.Filters[d.Name]; ok {
			fmt.Fprintf(h, "\x00%s=%d:%s", d.Name, len(v), v)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// decodeUsageCursor returns the grouping values a page of q starts after, or
// a CodeInvalid error for a cursor this API did not issue for q.
func decodeUsageCursor(v string, q tokka.UsageQuery) ([]string, error) {
	dims := tokka.GroupedDimensions(q.GroupBy)
	after, err := decodeCursor(v, queryDigest(q), len(dims),
		"cursor belongs to another query: page with the same from, to, group_by and filters it came from")
	if err != nil {
		return nil, err
	}
	if len(dims) == 0 {
		return nil, errBadCursor // one row: there is never a second page
	}
	for i, d := range dims {
		if !validValue(d.Type, after[i]) {
			return nil, errBadCursor
		}
	}
	return after, nil
}

// validValue reports whether v can be cast to the dimension's SQL type, so
// a forged cursor is a 400, never a database error.
func validValue(typ, v string) bool {
	switch typ {
	case "date":
		_, err := time.Parse(time.DateOnly, v)
		return err == nil
	case "uuid":
		_, err := parseUUID(v)
		return err == nil
	}
	return utf8.ValidString(v) && !strings.ContainsRune(v, 0)
}

type providerSummary struct {
	Provider             string          `json:"provider"`
	MonthToDateUSD       decimal.Decimal `json:"month_to_date_usd"`
	PreviousMonthUSD     decimal.Decimal `json:"previous_month_usd"`
	SamePeriodLastMonth  decimal.Decimal `json:"same_period_last_month_usd"`
	ProjectedMonthEndUSD decimal.Decimal `json:"projected_month_end_usd"`
	DailyRunRateUSD      decimal.Decimal `json:"daily_run_rate_usd"`
	TokensMonthToDate    int64           `json:"tokens_month_to_date"`
}

type summaryResponse struct {
	Month       string            `json:"month"`
	Today       string            `json:"today"`
	AsOf        *time.Time        `json:"as_of"`
	Overall     providerSummary   `json:"overall"`
	ByProvider  []providerSummary `json:"by_provider"`
	TopModels   []tokka.TopItem   `json:"top_models"`
	TopProjects []topProject      `json:"top_projects"`
	TopAPIKeys  []topAPIKey       `json:"top_api_keys"`
}

// topProject is a top project (or Anthropic workspace): name is its id,
// as filters take it; the names beside it are for people.
type topProject struct {
	tokka.TopItem
	ProjectName   *string `json:"project_name"`
	WorkspaceName *string `json:"workspace_name"`
}

// topAPIKey is a top API key: name is its id; api_key_name is for people.
type topAPIKey struct {
	tokka.TopItem
	APIKeyName *string `json:"api_key_name"`
}

// project is one provider's (or all providers') summary, forecast with the
// function budgets use (tokka.ForecastMonthEnd).
func project(p tokka.SpendPeriods, today time.Time) providerSummary {
	f := tokka.ForecastMonthEnd(today, p.MonthToYesterday, p.MonthToDate, p.LastSevenComplete, tokka.RateDays(today, p.FirstDay))
	return providerSummary{
		Provider: p.Provider, MonthToDateUSD: p.MonthToDate, PreviousMonthUSD: p.PreviousMonth,
		SamePeriodLastMonth: p.SamePeriodLast, ProjectedMonthEndUSD: f.MonthEndUSD, DailyRunRateUSD: f.DailyRateUSD,
		TokensMonthToDate: p.TokensMonthToDate,
	}
}

func (s *Server) usageSummary(c echo.Context) error {
	if kept, err := s.sendKept(c); kept || err != nil {
		return err
	}
	today := s.cfg.Now().UTC().Truncate(24 * time.Hour)
	data, version, err := s.usageRows.SummaryAt(c.Request().Context(), userOf(c), today, 5)
	if err != nil {
		return err
	}
	resp := summaryResponse{Month: today.Format("2006-01"), Today: today.Format(time.DateOnly), AsOf: data.AsOf,
		ByProvider: []providerSummary{}, TopModels: data.TopModels, TopProjects: []topProject{}, TopAPIKeys: []topAPIKey{}}
	for _, t := range data.TopProjects {
		resp.TopProjects = append(resp.TopProjects, topProject{TopItem: t, ProjectName: t.ProjectName, WorkspaceName: t.WorkspaceName})
	}
	for _, t := range data.TopAPIKeys {
		resp.TopAPIKeys = append(resp.TopAPIKeys, topAPIKey{TopItem: t, APIKeyName: t.APIKeyName})
	}
	var all tokka.SpendPeriods
	for _, p := range data.ByProvider {
		resp.ByProvider = append(resp.ByProvider, project(p, today))
		all.MonthToDate = all.MonthToDate.Add(p.MonthToDate)
		all.MonthToYesterday = all.MonthToYesterday.Add(p.MonthToYesterday)
		all.PreviousMonth = all.PreviousMonth.Add(p.PreviousMonth)
		all.SamePeriodLast = all.SamePeriodLast.Add(p.SamePeriodLast)
		all.LastSevenComplete = all.LastSevenComplete.Add(p.LastSevenComplete)
		all.TokensMonthToDate += p.TokensMonthToDate
		if p.FirstDay != nil && (all.FirstDay == nil || p.FirstDay.Before(*all.FirstDay)) {
			all.FirstDay = p.FirstDay
		}
	}
	all.Provider = "all"
	resp.Overall = project(all, today)
	if !s.keeps(c) {
		return c.JSON(http.StatusOK, resp)
	}
	// As c.JSON writes it (an Encoder: the same escaping, and a newline).
	var body bytes.Buffer
	if err := json.NewEncoder(&body).Encode(resp); err != nil {
		return err
	}
	s.keep(c, version, body.Bytes())
	return writeJSONBody(c, body.Bytes())
}
