package httpapi

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// AuditStore is the storage the audit handlers need: the user's events and
// the check of their hash chain.
type AuditStore interface {
	ListAuditEvents(ctx context.Context, u tokka.User, before int64, limit int) ([]tokka.AuditEvent, error)
	VerifyAuditChain(ctx context.Context, u tokka.User, full bool) (tokka.AuditVerification, error)
}

// updateConnectionRequest is PATCH /v1/connections/{id}. Absent fields are
// left as they are; null is refused (decodeStrict), as is anything else in
// the body.
type updateConnectionRequest struct {
	Label     *string      `json:"label"`
	APIKey    *apiKeyField `json:"api_key"`
	SealedKey *string      `json:"sealed_key"`
}

// connectionUpdate is a checked PATCH /v1/connections/{id}. The new key's
// provider prefix can be checked only against the stored connection.
type connectionUpdate struct {
	id     string
	label  *string
	key    *secret.Key
	sealed string // a key the client sealed for this connection
}

func (r *connectionUpdate) wipe() { r.key.Wipe() }

func (s *Server) parseConnectionUpdate(c echo.Context) (connectionUpdate, error) {
	var req updateConnectionRequest
	id, err := connectionID(c)
	if err != nil {
		return connectionUpdate{}, err
	}
	err = decodeStrict(c, &req)
	up := connectionUpdate{id: id}
	if req.APIKey != nil {
		up.key = req.APIKey.key // wiped however this ends
	}
	if err != nil {
		return up, err
	}
	if req.Label == nil && req.APIKey == nil && req.SealedKey == nil {
		return up, tokka.Errorf(tokka.CodeInvalid, "nothing to change: send label, a key (api_key or sealed_key) or both")
	}
	if req.APIKey != nil && req.SealedKey != nil {
		return up, &tokka.Error{Code: tokka.CodeInvalid, Field: "sealed_key", Message: "send api_key or sealed_key, not both"}
	}
	if req.Label != nil {
		label, err := cleanName("label", *req.Label)
		if err != nil {
			return up, err
		}
		up.label = &label
	}
	if req.APIKey != nil {
		if err := validateKeyShape(up.key); err != nil {
			return up, err
		}
	}
	if req.SealedKey != nil {
		// The provider, for the length bound, is the stored connection's;
		// the prefix itself the syncer checks.
		up.sealed = *req.SealedKey
		if err := s.checkSealedKey(up.sealed, ""); err != nil {
			return up, err
		}
	}
	return up, nil
}

// updateConnection renames a connection and/or replaces its key. A new key is
// sealed with the same binding as the old one (user, connection, provider):
// the provider cannot change, since the blob, the usage rows and the key's
// prefix all belong to it.
func (s *Server) updateConnection(c echo.Context) error {
	req := prepared[connectionUpdate](c)
	id := req.id
	ctx := c.Request().Context()
	u := userOf(c)
	conn, err := s.connections.GetConnection(ctx, u, id)
	if err != nil {
		return err
	}
	p := tokka.Provider(conn.Provider)
	up := tokka.ConnectionUpdate{Label: req.label}
	action, purpose := tokka.ActionConnectionRenamed, "user renamed the connection"
	if key := req.key; key != nil {
		if err := validateKey(p, key); err != nil {
			return err
		}
		fp, err := s.keyFingerprint(u, p, key)
		if err != nil {
			return err
		}
		blob, err := s.sealer.Seal(key, seal.Binding{TeamID: u.TeamID(), ConnectionID: id, Provider: conn.Provider})
		if err != nil {
			return err
		}
		up.SealedKey, up.KeyHint, up.KeyFingerprint = blob, key.Hint(p.KeyPrefix()), fp
		action, purpose = tokka.ActionKeyReplaced, "user replaced the key"
		if up.Label != nil {
			purpose = "user replaced the key and renamed the connection"
		}
	}
	if req.sealed != "" {
		// Sealed by the client for this connection's binding; no hint and
		// no fingerprint until the syncer opens it.
		up.SealedKey = req.sealed
		action, purpose = tokka.ActionKeyReplaced, "user replaced the key (sealed by the client)"
		if up.Label != nil {
			purpose = "user replaced the key (sealed by the client) and renamed the connection"
		}
	}
	updated, err := s.connections.UpdateConnection(ctx, u, id, up, s.auditEvent(c, action, purpose))
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
	v, err := s.audit.VerifyAuditChain(c.Request().Context(), userOf(c), full)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func (s *Server) listAuditEvents(c echo.Context) error {
	limit, before, err := idPage(c, "audit-events")
	if err != nil {
		return err
	}
	evs, err := s.audit.ListAuditEvents(c.Request().Context(), userOf(c), before, limit+1)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, pageOf(evs, limit, "audit-events", func(e tokka.AuditEvent) []string { return idKey(e.ID) }))
}
