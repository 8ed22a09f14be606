package httpapi

import (
	"net/http"
	"regexp"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// keyIDCursor is what a provider's key id looks like; a cursor holding
// anything else was not issued here.
var keyIDCursor = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,200}$`)

// listConnectionKeys serves GET /v1/connections/{id}/keys: the keys of the
// connection's organisation as the last sync read them, by id, paged. Only
// the owner sees them (another user's connection is a 404), and a key is
// never shown beyond the provider's own redacted value.
func (s *Server) listConnectionKeys(c echo.Context) error {
	id, err := connectionID(c)
	if err != nil {
		return err
	}
	list := "connection_keys:" + id
	limit, err := limitParam(c, defaultPageLimit, maxPageLimit)
	if err != nil {
		return err
	}
	after := ""
	if v := c.QueryParam("cursor"); v != "" {
		keys, err := decodeCursor(v, list, 1, "")
		if err != nil {
			return err
		}
		if !keyIDCursor.MatchString(keys[0]) {
			return errBadCursor
		}
		after = keys[0]
	}
	ks, err := s.connections.ConnectionKeys(c.Request().Context(), userOf(c), id, after, limit+1, s.cfg.Now())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, pageOf(ks, limit, list, func(k tokka.OrgKey) []string { return []string{k.ID} }))
}
