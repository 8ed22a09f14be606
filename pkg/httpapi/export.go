package httpapi

import (
	"encoding/csv"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

const (
	// defaultExportsPerUser is how many CSV exports one user may run at
	// once in one api process.
	defaultExportsPerUser = 2
	// exportRetryAfter is the Retry-After, in seconds, of a refused export.
	exportRetryAfter = "10"
)

// exportSlots counts the exports each user has running in this process.
// An export streams at the client's pace (its rows are read from the
// database in short chunks, between which no connection is held), so the
// limit bounds what one user's slow or stalled downloads can tie up:
// request goroutines and sockets, not the database pool.
type exportSlots struct {
	limit int
	mu    sync.Mutex
	busy  map[string]int
}

func newExportSlots(limit int) *exportSlots {
	if limit <= 0 {
		limit = defaultExportsPerUser
	}
	return &exportSlots{limit: limit, busy: map[string]int{}}
}

// take reserves a slot for user, reporting false when all are in use.
func (e *exportSlots) take(user string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.busy[user] >= e.limit {
		return false
	}
	e.busy[user]++
	return true
}

// give returns a slot taken by take.
func (e *exportSlots) give(user string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.busy[user]--; e.busy[user] <= 0 {
		delete(e.busy, user)
	}
}

// errClientGone marks a failure to write to the client (it went away), as
// opposed to a failure to read the rows.
type errClientGone struct{ err error }

func (e errClientGone) Error() string { return "writing to the client: " + e.err.Error() }
func (e errClientGone) Unwrap() error { return e.err }

// csvSafe neutralises text that a spreadsheet would run as a formula
// (cells starting with =, +, -, @, tab or carriage return) by prefixing a
// single quote. Only text dimensions go through it: the numbers are ours.
func csvSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

// deref is *p, or "" for nil.
func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// usageExport streams the usage rows as CSV. Rows come from the database in
// chunks (postgres.EachUsageRow) and go to the client between them, so a
// slow reader holds no database connection; each user may run only a few
// exports at once. A download the client cuts off is logged as aborted, and
// one the database cuts off after the headers went out is aborted on the
// wire too, so the client cannot take a truncated file for a whole one.
func (s *Server) usageExport(c echo.Context) error {
	q, err := s.usageQuery(c)
	if err != nil {
		return err
	}
	dims, header := exportColumns(q.GroupBy)
	return s.streamCSV(c, "tokka-usage.csv", header, q, func(r tokka.UsageGroup) []string { return exportRecord(dims, r) })
}

// streamCSV writes the header and one record per row of q (record turns a
// row into its cells, already neutralised) as a CSV attachment called
// filename. A HEAD request gets the headers only. Nothing is sent until the
// first chunk of rows is read, so a failure to read them is still a
// problem+json; after that a failure aborts the connection (see
// usageExport).
func (s *Server) streamCSV(c echo.Context, filename string, header []string, q tokka.UsageQuery, record func(tokka.UsageGroup) []string) error {
	u := userOf(c)
	if !s.exports.take(u.ID) {
		c.Response().Header().Set("Retry-After", exportRetryAfter)
		return &tokka.Error{Code: tokka.CodeRateLimited, Message: "you already have " + strconv.Itoa(s.exports.limit) +
			" exports running; retry after " + exportRetryAfter + " seconds or when one has finished"}
	}
	defer s.exports.give(u.ID)

	res := c.Response()
	disposition := `attachment; filename="` + filename + `"`
	if c.Request().Method == http.MethodHead {
		// The headers a GET would send; the rows would only be dropped.
		res.Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
		res.Header().Set(echo.HeaderContentDisposition, disposition)
		res.WriteHeader(http.StatusOK)
		return nil
	}
	// csv.Writer buffers a few KiB and hands them to the client as they
	// fill, at the client's pace.
	w := csv.NewWriter(res)
	started := false
	start := func() error {
		started = true
		res.Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
		res.Header().Set(echo.HeaderContentDisposition, disposition)
		res.WriteHeader(http.StatusOK)
		if err := w.Write(header); err != nil {
			return errClientGone{err}
		}
		return nil
	}
	err := s.usageRows.EachUsageRow(c.Request().Context(), u, q, func(r tokka.UsageGroup) error {
		if !started {
			if err := start(); err != nil {
				return err
			}
		}
		if err := w.Write(record(r)); err != nil {
			return errClientGone{err}
		}
		return nil
	})
	if err != nil && !started {
		return err
	}
	if err == nil && !started {
		err = start()
	}
	if err == nil {
		w.Flush()
		if ferr := w.Error(); ferr != nil {
			err = errClientGone{ferr}
		}
	}
	if err != nil {
		// The headers are gone: all that is left is to say how it ended.
		c.Set(ctxAborted, true)
		var gone errClientGone
		if !errors.As(err, &gone) {
			s.failures.Warn("usage export cut short").Str("request_id", requestID(c)).Err(err).
				Msg("usage export cut short by a failure to read the rows; connection aborted")
			c.Set(ctxAbortConnection, true)
		}
	}
	return nil
}

// exportColumns are the export's group columns (in the API's dimension
// order, whatever order group_by named them in) and its header row.
func exportColumns(groupBy []string) ([]tokka.Dimension, []string) {
	dims := tokka.GroupedDimensions(groupBy)
	header := []string{}
	for _, d := range dims {
		header = append(header, d.Key)
		// Names follow the id they are of; an unknown name is an empty cell.
		switch d.Key {
		case "project_id":
			header = append(header, keyProjectName, keyWorkspaceName)
		case "api_key_id":
			header = append(header, keyAPIKeyName)
		}
	}
	header = append(header, "input_tokens")
	for _, f := range tokka.TokenFields {
		header = append(header, f.Name)
	}
	return dims, append(header, "cost_usd", "provisional")
}

// exportRecord is one CSV row for r, in exportColumns' order; group values
// are defused for spreadsheets (csvSafe).
func exportRecord(dims []tokka.Dimension, r tokka.UsageGroup) []string {
	rec := make([]string, 0, len(dims)+len(tokka.TokenFields)+6)
	for _, d := range dims {
		rec = append(rec, csvSafe(groupValue(d.Key, r.Group[d.Key])))
		switch d.Key {
		case "project_id":
			rec = append(rec, csvSafe(deref(r.ProjectName)), csvSafe(deref(r.WorkspaceName)))
		case "api_key_id":
			rec = append(rec, csvSafe(deref(r.APIKeyName)))
		}
	}
	rec = append(rec, strconv.FormatInt(r.InputTokens(), 10))
	for _, f := range tokka.TokenFields {
		rec = append(rec, strconv.FormatInt(*f.Of(&r.Tokens), 10))
	}
	return append(rec, r.CostUSD.String(), strconv.FormatBool(r.Provisional))
}
