package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// decodeStrict reads a JSON object into dst, rejecting a content type other
// than application/json (415), text that is not what the client wrote
// (invalid UTF-8, lone surrogate escapes), unknown fields (no mass
// assignment of user_id, status, sealed_key …), duplicate keys and trailing
// data. Messages never echo values, which may be keys, and name a field
// only when it is one of Tokka's own (ownName): a key pasted where a field
// name belongs is not repeated either.
func decodeStrict(c echo.Context, dst any) error {
	if !jsonContentType(c.Request().Header.Get(echo.HeaderContentType)) {
		return tokka.Errorf(tokka.CodeUnsupportedMediaType, "request body must be application/json (charset utf-8, if any)")
	}
	body, err := requestBody(c) // wiped by prepare when the request is done
	if err != nil {
		return err
	}
	if err := checkText(body); err != nil {
		return err
	}
	if err := checkDuplicateKeys(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return tokka.Errorf(tokka.CodeInvalid, "request body has data after the JSON object")
	}
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
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		if unquoted, err := strconv.Unquote(name); err == nil {
			name = unquoted
		}
		e := &tokka.Error{Code: tokka.CodeInvalid, Message: "request body has an unknown field"}
		if ownName(name) {
			e.Message, e.Field = fmt.Sprintf("unknown field %q", name), name
		}
		return e
	case errors.Is(err, io.EOF):
		return tokka.Errorf(tokka.CodeInvalid, "request body is empty")
	}
	return tokka.Errorf(tokka.CodeInvalid, "request body is not valid JSON")
}

// fieldError is returned by custom field decoders with a caller-safe message.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.msg }

// maxJSONDepth bounds the nesting checkDuplicateKeys walks; request bodies
// are flat objects, so anything deep is an attack on the parser.
const maxJSONDepth = 32

// checkDuplicateKeys walks body token by token and rejects an object that
// names the same member twice. encoding/json silently keeps the last one
// and matches names case-insensitively, so {"provider":"openai",
// "Provider":"anthropic"} would otherwise reach a handler as something other
// than what a validating proxy, a log line or a human reading the request
// saw. Names are compared the way encoding/json matches them (Unicode simple
// case folding). Syntax errors are left to the decoder that follows, except
// that a body it cannot tokenise is reported as invalid JSON here.
//
// It also refuses null as a member's value, except for the members in
// nullableMembers: in Tokka's request bodies null never means anything
// but "no value", and for every field an absent member, "" and white space
// already say that (or are refused), so null must not be a fourth spelling
// that one handler treats as "absent" and another as "empty".
func checkDuplicateKeys(body []byte) error {
	type frame struct {
		object  bool
		wantKey bool
		keys    map[string]struct{}
		key     string // the member whose value comes next
		path    string // the object's dotted path from the top ("" at the top)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var stack []*frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return decodeError(err)
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:n-1]
				valueDone()
			} else if name, ok := tok.(string); ok {
				f := foldName(name)
				if _, dup := stack[n-1].keys[f]; dup {
					field := ""
					if ownName(name) {
						field = name
					}
					return &tokka.Error{Code: tokka.CodeInvalid, Field: field, Message: "request body names a field twice"}
				}
				stack[n-1].keys[f] = struct{}{}
				stack[n-1].wantKey = false
				stack[n-1].key = name
			}
		} else {
			member := ""
			if n := len(stack); n > 0 && stack[n-1].object {
				member = strings.TrimPrefix(stack[n-1].path+"."+stack[n-1].key, ".")
			}
			if tok == nil && member != "" && !nullableMembers[member] {
				e := &tokka.Error{Code: tokka.CodeInvalid, Message: "request body has a null field; leave the field out instead"}
				if !slices.ContainsFunc(strings.Split(member, "."), func(n string) bool { return !ownName(n) }) {
					e.Field, e.Message = member, member+" must not be null; leave it out instead"
				}
				return e
			}
			switch tok {
			case json.Delim('{'):
				stack = append(stack, &frame{object: true, wantKey: true, keys: map[string]struct{}{}, path: member})
			case json.Delim('['):
				stack = append(stack, &frame{})
			case json.Delim(']'), json.Delim('}'):
				stack = stack[:len(stack)-1]
				valueDone()
			default:
				valueDone()
			}
			if len(stack) > maxJSONDepth {
				return tokka.Errorf(tokka.CodeInvalid, "request body is nested too deeply")
			}
		}
		if len(stack) == 0 {
			return nil // one complete value; trailing data is the decoder's to refuse
		}
	}
}

// nullableMembers are the request members (dotted paths) that may be null,
// which means the same as "" and as leaving them out: no webhook.
var nullableMembers = map[string]bool{"channels.webhook_url": true}

// ownNames are the names Tokka itself gives to fields: of its request and
// response bodies and of the columns a client might try to set. An error
// may repeat one of these (in any case variant), because it cannot be
// anything a caller pasted; any other name is not repeated.
var ownNames = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range []string{
		// request bodies
		"provider", "label", "api_key", "name", "amount_usd", "scope", "connection_id", "thresholds",
		"forecast_thresholds", "channels", "webhook_url", "email", "rotate_webhook_secret", "role",
		// objects Tokka returns and the columns behind them
		"id", "user_id", "team_id", "status", "sealed_key", "key_hint", "key_set_at", "last_error", "last_synced_at",
		"next_sync_at", "sync_requested_at", "last_sync_request_at", "lease_owner", "lease_expires_at",
		"created_at", "updated_at", "email_to", "webhook_secret", "deliveries", "kind", "severity", "title",
		"detail", "dedup_key", "acknowledged_at", "action", "actor", "outcome", "hash", "prev_hash",
	} {
		m[foldName(n)] = true
	}
	return m
}()

// ownName reports whether name is, up to case, one of ownNames.
func ownName(name string) bool {
	return len(name) <= 64 && utf8.ValidString(name) && ownNames[foldName(name)]
}

// foldName maps every rune to the smallest member of its simple case-folding
// orbit, so two names fold equal exactly when strings.EqualFold says so.
func foldName(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(m)
	}
	return b.String()
}
