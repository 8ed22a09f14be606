package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// ConnectionStore is the storage the connection handlers need (list, add,
// read, rename or re-key, delete, "sync now").
type ConnectionStore interface {
	CreateConnection(ctx context.Context, u tokka.User, nc tokka.NewConnection, ev tokka.AuditEvent) (tokka.Connection, error)
	ListConnectionsPage(ctx context.Context, u tokka.User, after *tokka.CreatedKey, limit int) ([]tokka.Connection, error)
	GetConnection(ctx context.Context, u tokka.User, id string) (tokka.Connection, error)
	UpdateConnection(ctx context.Context, u tokka.User, id string, up tokka.ConnectionUpdate, ev tokka.AuditEvent) (tokka.Connection, error)
	DeleteConnection(ctx context.Context, u tokka.User, id string, ev tokka.AuditEvent) error
	RequestSync(ctx context.Context, u tokka.User, id string, minInterval time.Duration, ev tokka.AuditEvent) (tokka.Connection, time.Duration, error)
	// ConnectionKeys lists the organisation's keys of one of u's
	// connections, as GET /v1/connections/{id}/keys shows them.
	ConnectionKeys(ctx context.Context, u tokka.User, id, after string, limit int, today time.Time) ([]tokka.OrgKey, error)
}

// apiKeyField decodes a pasted key straight into a *secret.Key, so the
// request struct never holds it as a string that could be printed.
type apiKeyField struct{ key *secret.Key }

func (f *apiKeyField) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &fieldError{field: "api_key", msg: "api_key must be a string"}
	}
	f.key = secret.FromString(s)
	return nil
}

type createConnectionRequest struct {
	Provider string      `json:"provider"`
	Label    *string     `json:"label"`
	APIKey   apiKeyField `json:"api_key"`
	// ID and SealedKey are the client-sealed form: the client picks the
	// connection id so that the blob's AAD can bind to it.
	ID        *string `json:"id"`
	SealedKey *string `json:"sealed_key"`
}

// maxKeyLen bounds a key's length in bytes, pasted or sealed: provider admin
// keys are well under it.
const maxKeyLen = 512

// validateKeyShape checks what any admin key looks like, without ever
// quoting it back: present, a plausible length, visible ASCII only.
func validateKeyShape(k *secret.Key) error {
	if k == nil || k.Len() == 0 {
		return &tokka.Error{Code: tokka.CodeInvalid, Message: "api_key is required", Field: "api_key"}
	}
	if k.Len() > maxKeyLen {
		return &tokka.Error{Code: tokka.CodeInvalid, Message: "api_key has an implausible length", Field: "api_key"}
	}
	for _, b := range k.Bytes() {
		if b <= ' ' || b >= 0x7f {
			return &tokka.Error{Code: tokka.CodeInvalid, Message: "api_key contains whitespace or non-ASCII characters", Field: "api_key"}
		}
	}
	return nil
}

// validateKey checks a pasted key's shape and that it is an admin key of p,
// without ever quoting it back.
func validateKey(p tokka.Provider, k *secret.Key) error {
	if err := validateKeyShape(k); err != nil {
		return err
	}
	if k.Len() < len(p.KeyPrefix())+8 {
		return &tokka.Error{Code: tokka.CodeInvalid, Message: "api_key has an implausible length", Field: "api_key"}
	}
	if !k.HasPrefix(p.KeyPrefix()) {
		return &tokka.Error{Code: tokka.CodeInvalid, Field: "api_key",
			Message: "api_key is not an " + string(p) + " admin key (it must start with " + p.KeyPrefix() + ")"}
	}
	return nil
}

func (s *Server) auditEvent(c echo.Context, action, purpose string) tokka.AuditEvent {
	ua := c.Request().UserAgent()
	if len(ua) > 256 {
		ua = ua[:256]
	}
	return tokka.AuditEvent{
		Action:    action,
		Outcome:   tokka.OutcomeSuccess,
		Purpose:   purpose,
		Actor:     "api:" + requestID(c),
		ClientIP:  c.RealIP(),
		UserAgent: strings.ToValidUTF8(ua, "?"),
	}
}

// newConnection is a checked POST /v1/connections: a pasted key, or a key
// the client sealed (sealed, with the id it is bound to).
type newConnection struct {
	provider tokka.Provider
	label    string
	key      *secret.Key
	id       string
	sealed   string
}

func (r *newConnection) wipe() { r.key.Wipe() }

func (s *Server) parseNewConnection(c echo.Context) (newConnection, error) {
	var req createConnectionRequest
	err := decodeStrict(c, &req)
	nc := newConnection{provider: tokka.Provider(req.Provider), key: req.APIKey.key} // wiped however this ends
	if err != nil {
		return nc, err
	}
	if !nc.provider.Valid() {
		return nc, &tokka.Error{Code: tokka.CodeInvalid, Message: `provider must be "openai" or "anthropic"`, Field: "provider"}
	}
	nc.label = string(nc.provider) // the default, when label is left out
	if req.Label != nil {
		if nc.label, err = cleanName("label", *req.Label); err != nil {
			return nc, err
		}
	}
	switch {
	case req.SealedKey != nil && nc.key != nil:
		return nc, &tokka.Error{Code: tokka.CodeInvalid, Field: "sealed_key", Message: "send api_key or sealed_key, not both"}
	case req.SealedKey != nil:
		if req.ID == nil {
			return nc, &tokka.Error{Code: tokka.CodeInvalid, Field: "id",
				Message: "id is required with sealed_key: the key is sealed to the connection's id, so the client chooses it"}
		}
		if nc.id, err = canonicalID("id", *req.ID); err != nil {
			return nc, err
		}
		nc.sealed = *req.SealedKey
		return nc, s.checkSealedKey(nc.sealed, nc.provider)
	case req.ID != nil:
		return nc, &tokka.Error{Code: tokka.CodeInvalid, Field: "id", Message: "id is accepted only with sealed_key"}
	}
	return nc, validateKey(nc.provider, nc.key)
}

func (s *Server) createConnection(c echo.Context) error {
	req := prepared[newConnection](c)
	u := userOf(c)
	nc, purpose := tokka.NewConnection{ID: req.id, Provider: req.provider, Label: req.label, SealedKey: req.sealed},
		"user added a connection (key sealed by the client)"
	if req.sealed == "" {
		var err error
		if nc, err = s.sealPasted(u, req.provider, req.key); err != nil {
			return err
		}
		nc.Label, purpose = req.label, "user added a connection"
	}
	// A client-sealed key has no hint or fingerprint yet: the syncer sets
	// both when it first opens the key (see syncer.checkClientSealed).
	conn, err := s.connections.CreateConnection(c.Request().Context(), u, nc, s.auditEvent(c, tokka.ActionKeyCreated, purpose))
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/connections/"+conn.ID)
	return c.JSON(http.StatusCreated, conn)
}

// sealPasted seals a pasted key for a new connection with a fresh id. The
// blob is bound to this user, connection and provider (AAD), so it cannot be
// moved to another row and still open.
func (s *Server) sealPasted(u tokka.User, p tokka.Provider, key *secret.Key) (tokka.NewConnection, error) {
	fp, err := s.keyFingerprint(u, p, key)
	if err != nil {
		return tokka.NewConnection{}, err
	}
	id := uuid.NewString()
	blob, err := s.sealer.Seal(key, seal.Binding{TeamID: u.TeamID(), ConnectionID: id, Provider: p})
	if err != nil {
		return tokka.NewConnection{}, err
	}
	return tokka.NewConnection{ID: id, Provider: p, KeyHint: key.Hint(p.KeyPrefix()), SealedKey: blob, KeyFingerprint: fp}, nil
}

// keyFingerprint is the keyed fingerprint by which the same key, pasted
// again by the same user, is recognised (see secret.Fingerprinter.Key).
func (s *Server) keyFingerprint(u tokka.User, p tokka.Provider, key *secret.Key) ([]byte, error) {
	if s.cfg.Fingerprints == nil {
		return nil, errors.New("httpapi: no key fingerprint secret configured")
	}
	return s.cfg.Fingerprints.Key(u.TeamID(), string(p), key), nil
}

func (s *Server) listConnections(c echo.Context) error {
	limit, after, err := createdPage(c, "connections")
	if err != nil {
		return err
	}
	cs, err := s.connections.ListConnectionsPage(c.Request().Context(), userOf(c), after, limit+1)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, pageOf(cs, limit, "connections", func(c tokka.Connection) []string {
		return createdKey(c.CreatedAt, c.ID)
	}))
}

// connectionID parses the path id; a malformed one is a 404 like any other
// id the caller cannot see.
func connectionID(c echo.Context) (string, error) {
	id, err := parseUUID(c.Param("id"))
	if err != nil {
		return "", tokka.ErrNotFound
	}
	return id, nil
}

// parseUUID accepts only the canonical 36-character form.
func parseUUID(s string) (string, error) {
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return "", tokka.ErrNotFound
	}
	return id.String(), nil
}

func (s *Server) getConnection(c echo.Context) error {
	id, err := connectionID(c)
	if err != nil {
		return err
	}
	conn, err := s.connections.GetConnection(c.Request().Context(), userOf(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, conn)
}

// parseConnectionID is the parser of the mutations that take only a
// connection id from their path.
func parseConnectionID(c echo.Context) (string, error) { return connectionID(c) }

func (s *Server) deleteConnection(c echo.Context) error {
	id := *prepared[string](c)
	if err := s.connections.DeleteConnection(c.Request().Context(), userOf(c), id,
		s.auditEvent(c, tokka.ActionKeyDeleted, "user deleted the connection")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
