package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// IdempotencyStore keeps the first response to each request sent with an
// Idempotency-Key; *postgres.DB implements it (see its methods for the
// contract).
type IdempotencyStore interface {
	ClaimIdempotencyKey(ctx context.Context, u tokka.User, key string, hash []byte, ttl, lock time.Duration) (*tokka.IdempotentResponse, error)
	SaveIdempotentResponse(ctx context.Context, u tokka.User, key string, hash []byte, r tokka.IdempotentResponse) error
	ReleaseIdempotencyKey(ctx context.Context, u tokka.User, key string, hash []byte) error
}

const (
	// HeaderIdempotencyKey names the request header that makes a POST safe
	// to retry.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderIdempotentReplayed is set to "true" on a response that repeats
	// an earlier one.
	HeaderIdempotentReplayed = "Idempotent-Replayed"
	// IdempotencyKeyTTL is how long a key and its response are kept.
	IdempotencyKeyTTL = 24 * time.Hour
	// idempotencyLock is how long a running request holds its key: longer
	// than any request may take (the server's write timeout is a minute),
	// so only a request whose process died loses it.
	idempotencyLock = 2 * time.Minute
	// maxIdempotentBody bounds a stored response body.
	maxIdempotentBody = 1 << 20
	idempotencyLabel  = "tokka/idempotency/v1"
)

// showOnceFields are response fields that exist only in the response that
// created them and that role authenticated cannot read back (a budget's
// webhook_secret, an invitation's token, of which only a hash is kept):
// they are never stored, so a replay leaves them out.
var showOnceFields = []string{"webhook_secret", "token"}

// validIdempotencyKey is 1 to 255 visible ASCII characters (a UUID is the
// usual choice).
func validIdempotencyKey(k string) bool {
	if k == "" || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < '!' || k[i] > '~' {
			return false
		}
	}
	return true
}

// idempotent makes a POST that carries an Idempotency-Key safe to retry.
// The first request with a key runs; its successful (2xx) response —
// status, Location, Content-Type and body, minus showOnceFields — is kept
// for IdempotencyKeyTTL, and a retry with the same key, method, path and
// body gets it again with Idempotent-Replayed: true and changes nothing. The
// same key with another request is 422; a retry while the first request
// still runs is 409 (retry it later). A request that fails (any non-2xx)
// keeps nothing, so its retry runs afresh. Keys are per user. Requests
// without the header are untouched.
func (s *Server) idempotent(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		vals := req.Header.Values(HeaderIdempotencyKey)
		if req.Method != http.MethodPost || len(vals) == 0 {
			return next(c)
		}
		if len(vals) > 1 || !validIdempotencyKey(vals[0]) {
			return &tokka.Error{Code: tokka.CodeInvalid, Field: HeaderIdempotencyKey,
				Message: "Idempotency-Key must be sent once, as 1 to 255 visible ASCII characters"}
		}
		key := vals[0]
		store := s.cfg.Idempotency
		if store == nil || s.cfg.Fingerprints == nil {
			return errors.New("httpapi: Idempotency-Key needs an idempotency store and a fingerprint secret")
		}
		body, err := requestBody(c) // the bytes the parser read; wiped by prepare
		if err != nil {
			return err
		}
		// Keyed like a key fingerprint: the body may hold a pasted key.
		// The team is part of the request: the same body sent to two
		// teams is two requests (without team_id, the digest is the one
		// requests had before teams).
		parts := [][]byte{[]byte(req.Method), []byte(strings.ToLower(req.URL.Path))}
		if team, given, err := queryTeam(c); given && err == nil {
			parts = append(parts, []byte("team_id="+team)) // canonical: however the client spelt it
		}
		hash := s.cfg.Fingerprints.Digest(idempotencyLabel, append(parts, body)...)

		ctx, u := req.Context(), userOf(c)
		prev, err := store.ClaimIdempotencyKey(ctx, u, key, hash, IdempotencyKeyTTL, idempotencyLock)
		if err != nil {
			return err
		}
		if prev != nil {
			h := c.Response().Header()
			h.Set(HeaderIdempotentReplayed, "true")
			if prev.Location != "" {
				h.Set(echo.HeaderLocation, prev.Location)
			}
			return c.Blob(prev.Status, prev.ContentType, prev.Body)
		}

		rec := &recorder{ResponseWriter: c.Response().Writer}
		c.Response().Writer = rec
		err = next(c)
		c.Response().Writer = rec.ResponseWriter
		bg := context.WithoutCancel(ctx) // record the outcome even if the client has gone
		status := c.Response().Status
		if err != nil || status < 200 || status > 299 || rec.overflow {
			if rerr := store.ReleaseIdempotencyKey(bg, u, key, hash); rerr != nil {
				s.log.Error().Str("request_id", requestID(c)).Err(rerr).Msg("releasing an idempotency key failed")
			}
			return err
		}
		h := c.Response().Header()
		saved := tokka.IdempotentResponse{Status: status, Location: h.Get(echo.HeaderLocation),
			ContentType: h.Get(echo.HeaderContentType), Body: withoutShowOnce(rec.body.Bytes(), h.Get(echo.HeaderContentType))}
		if serr := store.SaveIdempotentResponse(bg, u, key, hash, saved); serr != nil {
			// The change is made and answered; a retry will find the key
			// held until the claim lapses, then run again.
			s.log.Error().Str("request_id", requestID(c)).Err(serr).Msg("storing an idempotent response failed")
		}
		return nil
	}
}

// withoutShowOnce removes showOnceFields from a JSON object body.
func withoutShowOnce(body []byte, contentType string) []byte {
	if !strings.HasPrefix(contentType, echo.MIMEApplicationJSON) {
		return bytes.Clone(body)
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return bytes.Clone(body)
	}
	found := false
	for _, f := range showOnceFields {
		if _, ok := obj[f]; ok {
			delete(obj, f)
			found = true
		}
	}
	if !found {
		return bytes.Clone(body)
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return bytes.Clone(body)
	}
	return append(out, '\n')
}

// recorder passes a response through and keeps a copy of its body (up to
// maxIdempotentBody) to store.
type recorder struct {
	http.ResponseWriter
	body     bytes.Buffer
	overflow bool
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.body.Len()+len(b) > maxIdempotentBody {
		r.overflow = true
	} else {
		r.body.Write(b)
	}
	return r.ResponseWriter.Write(b)
}

// Flush passes flushes through to the underlying writer.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
