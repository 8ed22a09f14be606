package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// decodeStrict reads a JSON object into dst, rejecting a wrong content type,
// unknown fields (no mass assignment of user_id, status, sealed_key …) and
// trailing data. Messages name fields but never echo values, which may be keys.
func decodeStrict(c echo.Context, dst any) error {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if ct != "" && !strings.HasPrefix(strings.ToLower(ct), echo.MIMEApplicationJSON) {
		return tokka.Errorf(tokka.CodeInvalid, "request body must be application/json")
	}
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || strings.Contains(err.Error(), "too large") {
			return &tokka.Error{Code: tokka.CodeTooLarge, Message: "request body too large"}
		}
		return tokka.Errorf(tokka.CodeInvalid, "could not read request body")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return tokka.Errorf(tokka.CodeInvalid, "request body has data after the JSON object")
	}
	clear(body)
	return nil
}

func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var fieldErr *fieldError
	switch {
	case errors.As(err, &fieldErr):
		return &tokka.Error{Code: tokka.CodeInvalid, Message: fieldErr.msg, Field: fieldErr.field}
	case errors.As(err, &typeErr):
		return &tokka.Error{Code: tokka.CodeInvalid, Message: fmt.Sprintf("field %q has the wrong type", typeErr.Field), Field: typeErr.Field}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &tokka.Error{Code: tokka.CodeInvalid, Message: fmt.Sprintf("unknown field %q", name), Field: name}
	case errors.Is(err, io.EOF):
		return tokka.Errorf(tokka.CodeInvalid, "request body is empty")
	}
	return tokka.Errorf(tokka.CodeInvalid, "request body is not valid JSON")
}

// fieldError is returned by custom field decoders with a caller-safe message.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.msg }
