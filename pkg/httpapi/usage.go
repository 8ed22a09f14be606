package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// maxUsageDays caps one usage query's range (a year and a day).
const maxUsageDays = 366

type usageResponse struct {
	From    string              `json:"from"`
	To      string              `json:"to"`
	GroupBy []string            `json:"group_by"`
	Rows    []postgres.UsageRow `json:"rows"`
}

func parseDay(c echo.Context, name string, def time.Time) (time.Time, error) {
	v := c.QueryParam(name)
	if v == "" {
		return def, nil
	}
	d, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return time.Time{}, &tokka.Error{Code: tokka.CodeInvalid, Field: name, Message: name + " must be a date as YYYY-MM-DD"}
	}
	return d, nil
}

func (s *Server) usage(c echo.Context) error {
	today := s.cfg.Now().UTC().Truncate(24 * time.Hour)
	to, err := parseDay(c, "to", today)
	if err != nil {
		return err
	}
	from, err := parseDay(c, "from", to.AddDate(0, 0, -29))
	if err != nil {
		return err
	}
	if from.After(to) {
		return &tokka.Error{Code: tokka.CodeInvalid, Field: "from", Message: "from must not be after to"}
	}
	if days := int(to.Sub(from).Hours()/24) + 1; days > maxUsageDays {
		return &tokka.Error{Code: tokka.CodeInvalid, Field: "from",
			Message: "the range may span at most " + strconv.Itoa(maxUsageDays) + " days"}
	}
	groupBy := []string{}
	if v := c.QueryParam("group_by"); v != "" {
		seen := map[string]bool{}
		for _, g := range strings.Split(v, ",") {
			g = strings.TrimSpace(g)
			known := false
			for _, d := range postgres.UsageDimensions {
				known = known || d.Name == g
			}
			if !known {
				return &tokka.Error{Code: tokka.CodeInvalid, Field: "group_by",
					Message: "group_by takes a comma-separated list of day, provider, connection, model, project"}
			}
			if !seen[g] {
				seen[g] = true
				groupBy = append(groupBy, g)
			}
		}
	}
	p := c.QueryParam("provider")
	if p != "" && !provider.Name(p).Valid() {
		return &tokka.Error{Code: tokka.CodeInvalid, Field: "provider", Message: `provider must be "openai" or "anthropic"`}
	}
	rows, err := s.store.Usage(c.Request().Context(), userOf(c), postgres.UsageQuery{
		From: from, To: to, GroupBy: groupBy, Provider: p,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, usageResponse{
		From: from.Format(time.DateOnly), To: to.Format(time.DateOnly), GroupBy: groupBy, Rows: rows,
	})
}

type auditResponse struct {
	Events     []tokka.AuditEvent `json:"events"`
	NextCursor *string            `json:"next_cursor"`
}

func (s *Server) listAuditEvents(c echo.Context) error {
	limit, before, err := pageParams(c)
	if err != nil {
		return err
	}
	evs, err := s.store.ListAuditEvents(c.Request().Context(), userOf(c), before, limit+1)
	if err != nil {
		return err
	}
	resp := auditResponse{Events: evs}
	if len(evs) > limit {
		resp.Events = evs[:limit]
		next := strconv.FormatInt(evs[limit-1].ID, 10)
		resp.NextCursor = &next
	}
	return c.JSON(http.StatusOK, resp)
}
