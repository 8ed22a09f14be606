package httpapi

import (
	"math"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// requestSync asks for a sync of one connection now: 202 with the
// connection, 429 (problem type sync-cooldown) with Retry-After when this
// connection was asked for too recently, 409 when its key was rejected.
func (s *Server) requestSync(c echo.Context) error {
	id := *prepared[string](c)
	conn, wait, err := s.connections.RequestSync(c.Request().Context(), userOf(c), id, s.cfg.SyncRequestInterval,
		s.auditEvent(c, tokka.ActionSyncRequested, "user asked for a sync now"))
	if tokka.ErrorCode(err) == tokka.CodeRateLimited {
		// The connection's cool-down, not the caller's budget: the budget's
		// RateLimit-* headers (set when the request was counted) would say
		// requests remain, inviting a retry before Retry-After.
		h := c.Response().Header()
		h.Del("RateLimit-Limit")
		h.Del("RateLimit-Remaining")
		h.Del("RateLimit-Reset")
		retry := strconv.Itoa(max(1, int(math.Ceil(wait.Seconds()))))
		h.Set("Retry-After", retry)
		return &tokka.Error{Code: tokka.CodeSyncCooldown,
			Message: "a sync of this connection was requested recently; try again in " + retry + " seconds"}
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, conn)
}
