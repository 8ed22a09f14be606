package httpapi

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// updateConnectionRequest is PATCH /v1/connections/{id}. Absent (or null)
// fields are left as they are; anything else in the body is rejected.
type updateConnectionRequest struct {
	Label  *string      `json:"label"`
	APIKey *apiKeyField `json:"api_key"`
}

// updateConnection renames a connection and/or replaces its key. A new key is
// sealed with the same binding as the old one (user, connection, provider):
// the provider cannot change, since the blob, the usage rows and the key's
// prefix all belong to it.
func (s *Server) updateConnection(c echo.Context) error {
	var req updateConnectionRequest
	defer func() {
		if req.APIKey != nil {
			req.APIKey.key.Wipe()
		}
	}()
	id, err := connectionID(c)
	if err != nil {
		return err
	}
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	if req.Label == nil && req.APIKey == nil {
		return tokka.Errorf(tokka.CodeInvalid, "nothing to change: send label, api_key or both")
	}
	ctx := c.Request().Context()
	u := userOf(c)
	conn, err := s.store.GetConnection(ctx, u, id)
	if err != nil {
		return err
	}
	p := provider.Name(conn.Provider)
	var up postgres.ConnectionUpdate
	if req.Label != nil {
		if strings.TrimSpace(*req.Label) == "" {
			return &tokka.Error{Code: tokka.CodeInvalid, Message: "label must be 1 to 100 characters", Field: "label"}
		}
		label, err := validateLabel(*req.Label, p)
		if err != nil {
			return err
		}
		up.Label = &label
	}
	action, purpose := tokka.ActionConnectionRenamed, "user renamed the connection"
	if req.APIKey != nil {
		key := req.APIKey.key
		if err := validateKey(p, key); err != nil {
			return err
		}
		fp, err := s.keyFingerprint(u, p, key)
		if err != nil {
			return err
		}
		blob, err := s.sealer.Seal(key, seal.Binding{UserID: u.ID, ConnectionID: id, Provider: conn.Provider})
		if err != nil {
			return err
		}
		up.SealedKey, up.KeyHint, up.KeyFingerprint = blob, key.Hint(p.KeyPrefix()), fp
		action, purpose = tokka.ActionKeyReplaced, "user replaced the key"
		if up.Label != nil {
			purpose = "user replaced the key and renamed the connection"
		}
	}
	updated, err := s.store.UpdateConnection(ctx, u, id, up, s.auditEvent(c, action, purpose))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, updated)
}

// verifyAuditEvents checks the caller's audit hash chain: the events after
// the last verified one, or with full=true all of them.
func (s *Server) verifyAuditEvents(c echo.Context) error {
	full, err := fullRecheck(c)
	if err != nil {
		return err
	}
	v, err := s.store.VerifyAuditChain(c.Request().Context(), userOf(c), full)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}
