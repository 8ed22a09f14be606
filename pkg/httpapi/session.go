package httpapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/auth"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// SessionChecker confirms with the Auth server that a token's session is
// still live; *auth.SessionChecker implements it. It returns nil, a
// CodeUnauthorized error (signed out) or a CodeUnavailable error (cannot
// tell; the request fails closed).
type SessionChecker interface {
	CheckSession(ctx context.Context, u tokka.User, token string) error
}

// keyChangeRoutes are the routes that add, replace or delete a provider key
// ("METHOD route-template"). Each requires a session the Auth server still
// recognises, so a token stolen or left behind after sign-out cannot change
// keys even before it expires. Add a route here (or attach
// s.requireLiveSession to it) when it touches a key.
var keyChangeRoutes = map[string]bool{
	http.MethodPost + " /v1/connections":       true,
	http.MethodPatch + " /v1/connections/:id":  true,
	http.MethodDelete + " /v1/connections/:id": true,
}

const (
	ctxToken          = "tokka.token"
	ctxSessionChecked = "tokka.session_checked"
)

// liveSessionForKeyChanges applies requireLiveSession to the routes in
// keyChangeRoutes; it sits in every /v1 route's chain, so a key-changing
// route is covered as soon as it is listed.
func (s *Server) liveSessionForKeyChanges(next echo.HandlerFunc) echo.HandlerFunc {
	checked := s.requireLiveSession(next)
	return func(c echo.Context) error {
		if keyChangeRoutes[c.Request().Method+" "+c.Path()] {
			return checked(c)
		}
		return next(c)
	}
}

// requireLiveSession asks the Auth server (when one is configured) whether
// the caller's session is live before running next. Without an Auth server
// (SUPABASE_URL and SUPABASE_AUTH_URL unset, e.g. the local HS256 stack)
// there is nobody to ask and the signature check alone decides.
func (s *Server) requireLiveSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.cfg.Sessions == nil || c.Get(ctxSessionChecked) == true {
			return next(c)
		}
		token, _ := c.Get(ctxToken).(string)
		if err := s.cfg.Sessions.CheckSession(c.Request().Context(), userOf(c), token); err != nil {
			switch tokka.ErrorCode(err) {
			case tokka.CodeUnauthorized:
				s.log.Info().Str("request_id", requestID(c)).Msg("key change refused: session no longer live")
				return err
			case tokka.CodeUnavailable:
				s.log.Warn().Str("request_id", requestID(c)).Msg("key change refused: Auth server did not confirm the session")
				return err
			}
			// Anything else means we cannot tell: fail closed.
			s.log.Error().Str("request_id", requestID(c)).Err(err).Msg("session check failed")
			return auth.ErrSessionUnknown
		}
		c.Set(ctxSessionChecked, true)
		return next(c)
	}
}

// bearerToken returns the token from the request's one Authorization
// header, which must read exactly "Bearer <jwt>": one header, the scheme
// spelt as Supabase clients send it, one space, and a token of base64url
// characters and dots no longer than auth.MaxTokenLength. Anything else —
// another scheme, a lowercase one, extra spaces, two tokens, a token in the
// query string or a cookie — is no token at all.
func bearerToken(r *http.Request) (string, bool) {
	vals := r.Header.Values(echo.HeaderAuthorization)
	if len(vals) != 1 {
		return "", false
	}
	token, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok || token == "" || len(token) > auth.MaxTokenLength {
		return "", false
	}
	for i := 0; i < len(token); i++ {
		switch b := token[i]; {
		case b >= 'A' && b <= 'Z', b >= 'a' && b <= 'z', b >= '0' && b <= '9', b == '-', b == '_', b == '.':
		default:
			return "", false
		}
	}
	return token, true
}
