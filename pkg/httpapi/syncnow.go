package httpapi

import (
	"math"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// requestSync asks for a sync of one connection now: 202 with the
// connection, 429 with Retry-After when this connection was asked for too
// recently, 409 when its key was rejected.
func (s *Server) requestSync(c echo.Context) error {
	id, err := connectionID(c)
	if err != nil {
		return err
	}
	conn, wait, err := s.store.RequestSync(c.Request().Context(), userOf(c), id, s.cfg.SyncRequestInterval,
		s.auditEvent(c, tokka.ActionSyncRequested, "user asked for a sync now"))
	if tokka.ErrorCode(err) == tokka.CodeRateLimited {
		c.Response().Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, conn)
}
