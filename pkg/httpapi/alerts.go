package httpapi

import (
	"net/http"
	"regexp"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

type alertsResponse struct {
	Alerts     []tokka.Alert `json:"alerts"`
	NextCursor *string       `json:"next_cursor"`
}

// idCursor is what an id cursor looks like: a positive id in plain decimal
// digits, as this API writes it (no sign, no leading zeros, no spaces).
var idCursor = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)

// pageParams reads limit (1–200, default 50) and cursor (an id this API
// returned) from the query string. A cursor that is not a positive 64-bit
// id is a CodeInvalid error.
func pageParams(c echo.Context) (limit int, before int64, err error) {
	limit = 50
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			return 0, 0, &tokka.Error{Code: tokka.CodeInvalid, Field: "limit", Message: "limit must be between 1 and 200"}
		}
		limit = n
	}
	if v := c.QueryParam("cursor"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if !idCursor.MatchString(v) || err != nil {
			return 0, 0, &tokka.Error{Code: tokka.CodeInvalid, Field: "cursor", Message: "cursor is not one this API returned"}
		}
		before = n
	}
	return limit, before, nil
}

func (s *Server) listAlerts(c echo.Context) error {
	limit, before, err := pageParams(c)
	if err != nil {
		return err
	}
	open := false
	switch c.QueryParam("open") {
	case "", "false":
	case "true":
		open = true
	default:
		return &tokka.Error{Code: tokka.CodeInvalid, Field: "open", Message: "open must be true or false"}
	}
	as, err := s.store.ListAlerts(c.Request().Context(), userOf(c), before, limit+1, open)
	if err != nil {
		return err
	}
	resp := alertsResponse{Alerts: as}
	if len(as) > limit {
		resp.Alerts = as[:limit]
		next := strconv.FormatInt(as[limit-1].ID, 10)
		resp.NextCursor = &next
	}
	return c.JSON(http.StatusOK, resp)
}

// parseAlertID reads an alert id from the path; anything but a positive
// id is a 404 like any id the caller cannot see.
func parseAlertID(c echo.Context) (int64, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, tokka.ErrNotFound
	}
	return id, nil
}

func (s *Server) acknowledgeAlert(c echo.Context) error {
	a, err := s.store.AcknowledgeAlert(c.Request().Context(), userOf(c), *prepared[int64](c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, a)
}
