package httpapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Field  string `json:"field,omitempty"`
	// ConnectionID is, on a 409 about a key or organisation that is already
	// connected, the connection that already has it.
	ConnectionID string `json:"connection_id,omitempty"`
	// SealingKey is, on a 409 for a key sealed to a key id that is not the
	// current one, the current sealing parameters to seal it again with.
	SealingKey *seal.Parameters `json:"sealing_key,omitempty"`
	RequestID  string           `json:"request_id,omitempty"`
}

// statusOf is the one place a domain error code becomes an HTTP status.
func statusOf(code tokka.Code) int {
	switch code {
	case tokka.CodeInvalid:
		return http.StatusBadRequest
	case tokka.CodeNotFound:
		return http.StatusNotFound
	case tokka.CodeConflict:
		return http.StatusConflict
	case tokka.CodeUnprocessable:
		return http.StatusUnprocessableEntity
	case tokka.CodeUnauthorized:
		return http.StatusUnauthorized
	case tokka.CodeForbidden:
		return http.StatusForbidden
	case tokka.CodeRateLimited:
		return http.StatusTooManyRequests
	case tokka.CodeUnavailable:
		return http.StatusServiceUnavailable
	case tokka.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case tokka.CodeUnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	case tokka.CodeNotAcceptable:
		return http.StatusNotAcceptable
	case tokka.CodeSyncCooldown:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// unavailableRetryAfter is the Retry-After, in seconds, of a 503 that does
// not set its own: long enough not to hammer a dependency that is down,
// short enough that a blip is not felt.
const unavailableRetryAfter = "5"

// errorHandler writes every error as application/problem+json. Domain errors
// carry caller-safe messages, shown as they are, 503s included (the caller
// learns which dependency to wait for: "cannot confirm your session right
// now", "rate limiter unavailable" …); they were logged, if at all, where
// they arose. Anything else is logged once with the request id and shown
// only as "internal error", so no internal text (SQL, driver or provider
// messages) ever reaches a client. Every 503 carries Retry-After and every
// 401 a Bearer challenge (WWW-Authenticate).
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	rid := requestID(c)
	p := Problem{RequestID: rid}
	var de *tokka.Error
	var he *echo.HTTPError
	var stale *staleSealingKey
	safe := false // the detail may be shown even for a 5xx
	switch {
	case errors.As(err, &stale):
		p.Status, p.Field, p.SealingKey = http.StatusConflict, "sealed_key", &stale.current
		p.Detail = "sealed_key is sealed to a key id other than the current one (" + stale.current.KID +
			"); seal the key again with the parameters in sealing_key"
	case errors.As(err, &de):
		p.Status = statusOf(de.Code)
		p.Detail = de.Message
		p.Field = de.Field
		safe = de.Code == tokka.CodeUnavailable
		p.ConnectionID = de.ConnectionID
	case errors.As(err, &he):
		p.Status = he.Code
		switch he.Code {
		case http.StatusNotFound:
			p.Detail = "no such resource"
		case http.StatusMethodNotAllowed:
			p.Detail = "method not allowed on this resource"
		case http.StatusRequestEntityTooLarge:
			p.Detail = "request body too large"
		case http.StatusUnauthorized:
			p.Detail = "missing or invalid access token"
		default:
			if he.Code < 500 {
				p.Detail = http.StatusText(he.Code)
			}
		}
	default:
		p.Status = http.StatusInternalServerError
	}
	switch {
	case safe:
		// A dependency is down: the caller-safe detail says which, and
		// Retry-After when to come back. Every request fails the same way
		// while it lasts, so the log says so once per interval.
		s.failures.Error(de.Message).Str("request_id", rid).Str("path", c.Path()).Err(err).
			Msg("request failed: " + de.Message)
	case p.Status >= 500:
		p.Detail = "internal error; quote the request id when reporting it"
		s.log.Error().Str("request_id", rid).Str("path", c.Path()).Err(err).Msg("request failed")
	}
	if p.Status == http.StatusUnauthorized {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, bearerChallenge(c.Request()))
	}
	if p.Status == http.StatusServiceUnavailable && c.Response().Header().Get("Retry-After") == "" {
		c.Response().Header().Set("Retry-After", unavailableRetryAfter)
	}
	p.Type, p.Title = "https://tokka.dev/problems/"+strconv.Itoa(p.Status), http.StatusText(p.Status)
	if de != nil && de.Code == tokka.CodeSyncCooldown {
		p.Type, p.Title = SyncCooldownType, "Sync requested too recently"
	}
	writeProblem(c, p)
}

// SyncCooldownType is the problem type of a "sync now" refused because the
// connection was asked to sync too recently: a 429 that says nothing about
// the caller's rate-limit budget, so a client can tell the two apart. Every
// other problem's type is https://tokka.dev/problems/<status>.
const SyncCooldownType = "https://tokka.dev/problems/sync-cooldown"

func writeProblem(c echo.Context, p Problem) {
	c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
	c.Response().WriteHeader(p.Status)
	_ = jsonEncoder(c.Response()).Encode(p)
}
