package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

const (
	ctxBody     = "tokka.body"
	ctxPrepared = "tokka.prepared"
)

// A parser reads and checks what a mutation needs from the request alone
// (its path and body), looking nothing up: no database, no DNS, no Auth
// server. Its errors are the request's own fault (400, 404, 413, 415).
type parser[T any] func(c echo.Context) (T, error)

// wiper is a prepared request that holds a secret (a pasted key).
type wiper interface{ wipe() }

// prepare runs parse before the rate limiter, so a request refused for its
// own content spends nothing of the caller's budget and reaches neither the
// Auth server nor the store; the parsed request is kept for the handler
// (prepared). Without a parser it only sees to the body: whatever read it
// (requestBody) shares one copy, wiped when the request is done, as is a
// parsed request that holds a secret, however the request ends.
func prepare[T any](parse parser[T]) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			defer func() {
				if body, ok := c.Get(ctxBody).([]byte); ok {
					clear(body) // it may hold a pasted key
				}
			}()
			if parse == nil {
				return next(c)
			}
			v, err := parse(c)
			if w, ok := any(&v).(wiper); ok {
				defer w.wipe()
			}
			if err != nil {
				return err
			}
			c.Set(ctxPrepared, &v)
			return next(c)
		}
	}
}

// prepared returns the request prepare parsed for this route. It panics
// when the route was registered without that parser, a programming error
// the tests of every route catch.
func prepared[T any](c echo.Context) *T {
	return c.Get(ctxPrepared).(*T)
}

// requestBody reads the request body once, within the body limit, and
// keeps it for the rest of the request: the parser and the idempotency
// check read the same bytes. prepare wipes them at the end.
func requestBody(c echo.Context) ([]byte, error) {
	if body, ok := c.Get(ctxBody).([]byte); ok {
		return body, nil
	}
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		clear(body)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || strings.Contains(err.Error(), "too large") {
			return nil, &tokka.Error{Code: tokka.CodeTooLarge, Message: "request body too large"}
		}
		return nil, tokka.Errorf(tokka.CodeInvalid, "could not read request body")
	}
	c.Set(ctxBody, body)
	c.Request().Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}
