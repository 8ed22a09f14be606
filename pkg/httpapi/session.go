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
// still live and says what the Auth server knows of the user's email;
// *auth.SessionChecker implements it. It fails with a CodeUnauthorized error
// (signed out) or a CodeUnavailable error (cannot tell; the request fails
// closed).
type SessionChecker interface {
	Live(ctx context.Context, u tokka.User, token string) (auth.LiveSession, error)
}

const (
	ctxToken       = "tokka.token"
	ctxLiveSession = "tokka.live_session"
)

// readOnly reports whether method cannot change anything; every other
// method on a /v1 route is a mutation.
func readOnly(method string) bool {
	return method == http.MethodGet || method == http.MethodHead
}

// liveSessionForMutations asks the Auth server, when one is configured,
// whether the caller's session is still live before any mutation: every /v1
// request whose method is not GET or HEAD, whatever its route, so a route
// added later is covered as soon as it is registered with the /v1 chain. A
// token stolen or left behind after sign-out keeps reading until it expires
// but can change nothing: not keys, not budgets or their webhooks, not
// alerts, not "sync now". Without an Auth server (SUPABASE_URL and
// SUPABASE_AUTH_URL unset, e.g. the local HS256 stack) there is nobody to ask
// and the signature check alone decides. What the Auth server answered is
// kept for the handler (see notificationAddress), so a request asks once.
func (s *Server) liveSessionForMutations(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.cfg.Sessions == nil || readOnly(c.Request().Method) {
			return next(c)
		}
		if _, err := s.liveSession(c); err != nil {
			return err
		}
		return next(c)
	}
}

// liveSession returns the Auth server's answer for the caller's session,
// asking it at most once per request. Errors are ErrSessionEnded (401) or
// ErrSessionUnknown (503); anything unexpected fails closed as the latter.
func (s *Server) liveSession(c echo.Context) (auth.LiveSession, error) {
	if live, ok := c.Get(ctxLiveSession).(auth.LiveSession); ok {
		return live, nil
	}
	token, _ := c.Get(ctxToken).(string)
	live, err := s.cfg.Sessions.Live(c.Request().Context(), userOf(c), token)
	if err != nil {
		switch tokka.ErrorCode(err) {
		case tokka.CodeUnauthorized:
			s.log.Info().Str("request_id", requestID(c)).Msg("change refused: session no longer live")
			return auth.LiveSession{}, err
		case tokka.CodeUnavailable:
			s.log.Warn().Str("request_id", requestID(c)).Msg("change refused: the Auth server did not confirm the session")
			return auth.LiveSession{}, err
		}
		s.log.Error().Str("request_id", requestID(c)).Err(err).Msg("session check failed")
		return auth.LiveSession{}, auth.ErrSessionUnknown
	}
	c.Set(ctxLiveSession, live)
	return live, nil
}

// bearerToken returns the token from the request's one Authorization
// header, which must read "Bearer <jwt>": one header, the scheme in any case
// (RFC 9110 §11.1 makes scheme names case-insensitive: "bearer" and
// "BEARER" are the same scheme), one space, and a token of base64url
// characters and dots no longer than auth.MaxTokenLength. Anything else —
// another scheme, extra spaces, two tokens, a token in the query string or a
// cookie — is no token at all.
func bearerToken(r *http.Request) (string, bool) {
	vals := r.Header.Values(echo.HeaderAuthorization)
	if len(vals) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || len(token) > auth.MaxTokenLength {
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

// bearerChallenge is the WWW-Authenticate of a 401 (RFC 6750 §3): the
// Bearer scheme, and error="invalid_token" when the request carried a
// bearer token (well-formed or not) that was refused.
func bearerChallenge(r *http.Request) string {
	for _, v := range r.Header.Values(echo.HeaderAuthorization) {
		scheme, rest, _ := strings.Cut(v, " ")
		if strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(rest) != "" {
			return `Bearer error="invalid_token"`
		}
	}
	return "Bearer"
}
