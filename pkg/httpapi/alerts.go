package httpapi

import (
	"context"
	"net/http"
	"regexp"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// AlertStore is the storage the alert handlers need.
type AlertStore interface {
	ListAlerts(ctx context.Context, u tokka.User, before int64, limit int, open bool) ([]tokka.Alert, error)
	AcknowledgeAlert(ctx context.Context, u tokka.User, id int64) (tokka.Alert, error)
}

// idCursor is what an id in a cursor looks like: a positive id in plain
// decimal digits, as this API writes it (no sign, no leading zeros, no
// spaces).
var idCursor = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)

func (s *Server) listAlerts(c echo.Context) error {
	limit, before, err := idPage(c, "alerts")
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
	as, err := s.alerts.ListAlerts(c.Request().Context(), userOf(c), before, limit+1, open)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, pageOf(as, limit, "alerts", func(a tokka.Alert) []string { return idKey(a.ID) }))
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
	a, err := s.alerts.AcknowledgeAlert(c.Request().Context(), userOf(c), *prepared[int64](c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, a)
}
