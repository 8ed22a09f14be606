package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// sealingKeyMaxAge is how long a client may cache GET /v1/sealing-key. The
// key changes only on rotation, and a client that seals to a key just
// retired is told so (409 with the new parameters) and seals again, so an
// hour of staleness costs one retry at most.
const sealingKeyMaxAge = "3600"

// howToSeal ends every refusal of a plaintext key: what to do instead.
const howToSeal = "seal the key in the client with the parameters from GET /v1/sealing-key " +
	"(the clients/js library does it) and send it as sealed_key"

// getSealingKey returns the public sealing parameters: the current public
// key, its kid, the suite, info and AAD encoding. They are the same for every
// user, so the response may be cached privately; the ETag is the kid.
func (s *Server) getSealingKey(c echo.Context) error {
	params := s.sealer.Parameters()
	h := c.Response().Header()
	h.Set("Cache-Control", "private, max-age="+sealingKeyMaxAge)
	h.Set("ETag", `"`+params.KID+`"`)
	return c.JSON(http.StatusOK, params)
}

// staleSealingKey is a sealed key under a kid that is not the current one
// (retired by a rotation, or never ours): 409, with the current parameters
// in the problem document so the client can seal again at once.
type staleSealingKey struct{ current seal.Parameters }

func (e *staleSealingKey) Error() string {
	return "sealed_key is sealed to a key id other than the current one"
}

// checkSealedKey checks what the api can of a client-sealed key: the v2
// form, that it is sealed to the current key, and that the key inside has a
// plausible length (the ciphertext is the key plus a 16-byte tag). The prefix
// and the binding need the plaintext, so the syncer checks them when it
// first opens the key. Nothing of the blob is quoted back.
func (s *Server) checkSealedKey(blob string, p tokka.Provider) error {
	b, err := seal.ParseBlob(blob)
	if err != nil || b.Version != 2 {
		return &tokka.Error{Code: tokka.CodeInvalid, Field: "sealed_key",
			Message: "sealed_key must be a v2 sealed key: v2:<kid>:<hex(encapsulated key)>:<hex(ciphertext with tag)>, lowercase hex, as the clients/js library makes it"}
	}
	if cur := s.sealer.Parameters(); b.KID != cur.KID {
		return &staleSealingKey{current: cur}
	}
	n := len(b.Ciphertext) - seal.TagSize
	minLen := 8
	if p != "" {
		minLen += len(p.KeyPrefix())
	}
	if n < minLen || n > maxKeyLen {
		return &tokka.Error{Code: tokka.CodeInvalid, Field: "sealed_key", Message: "sealed_key holds a key of implausible length"}
	}
	return nil
}

// canonicalID parses a client-chosen connection id. The AAD binds the id
// byte for byte, and the syncer opens with the id as Postgres prints it, so
// only the lowercase canonical form is accepted.
func canonicalID(field, s string) (string, error) {
	id, err := uuid.Parse(s)
	if err != nil || id.String() != s || id == uuid.Nil {
		return "", &tokka.Error{Code: tokka.CodeInvalid, Field: field,
			Message: field + " must be a UUID in canonical lowercase form (crypto.randomUUID() makes one)"}
	}
	return s, nil
}

// refusePlaintextKeys, with PLAINTEXT_KEYS=refuse, refuses any request whose
// JSON body has an api_key member before anything else reads the body, so
// no plaintext key gets further into the api than this check. The body is
// wiped at once; the refusal says how to seal instead.
func (s *Server) refusePlaintextKeys(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.cfg.RefusePlaintextKeys || c.Request().ContentLength == 0 {
			return next(c)
		}
		switch c.Request().Method {
		case http.MethodPost, http.MethodPatch, http.MethodPut:
		default:
			return next(c)
		}
		body, err := requestBody(c)
		if err != nil {
			return err
		}
		var probe struct {
			APIKey json.RawMessage `json:"api_key"`
		}
		// Only the top-level member matters; a body that is not a JSON
		// object is left to the route's own parser to refuse.
		if json.NewDecoder(bytes.NewReader(body)).Decode(&probe) == nil && probe.APIKey != nil {
			clear(probe.APIKey)
			clear(body)
			return &tokka.Error{Code: tokka.CodeInvalid, Field: "api_key",
				Message: "this Tokka does not accept plaintext keys (PLAINTEXT_KEYS=refuse): " + howToSeal}
		}
		clear(probe.APIKey)
		return next(c)
	}
}
