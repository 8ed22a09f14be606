package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Every list but usage takes limit 1 to maxPageLimit, default
// defaultPageLimit (usage: usage.go).
const (
	defaultPageLimit = 50
	maxPageLimit     = 200
	maxCursorLength  = 4096
)

// page is the one shape of every list response: the items, whether more
// follow, and the cursor of the next page (null on the last).
type page[T any] struct {
	Data       []T     `json:"data"`
	HasMore    bool    `json:"has_more"`
	NextCursor *string `json:"next_cursor"`
}

// pageOf makes a page of items, which the store was asked for with limit+1
// so that the extra item says whether another page exists; after returns
// the keys a cursor positioned after an item holds.
func pageOf[T any](items []T, limit int, list string, after func(T) []string) page[T] {
	p := page[T]{Data: items}
	if len(items) > limit {
		p.Data, p.HasMore = items[:limit], true
		next := encodeCursor(list, after(items[limit-1])...)
		p.NextCursor = &next
	}
	return p
}

// A cursor is opaque to clients: base64url JSON holding the list (or, for
// usage, the query) it belongs to and the keys of the last item served, so
// the next page starts after that item (keyset paging: pages neither repeat
// nor skip an item when others are added or removed meanwhile). Nothing in
// it is secret, and every key reaches the database as a placeholder.
type cursor struct {
	Version int      `json:"v"`
	List    string   `json:"q"`
	After   []string `json:"k"`
}

func encodeCursor(list string, after ...string) string {
	b, _ := json.Marshal(cursor{Version: 1, List: list, After: after})
	return base64.RawURLEncoding.EncodeToString(b)
}

// errBadCursor is the error for a cursor this API did not issue.
var errBadCursor = &tokka.Error{Code: tokka.CodeInvalid, Field: "cursor", Message: "cursor is not one this API returned"}

// decodeCursor returns the n keys of a cursor issued for list. A cursor that
// does not decode is errBadCursor; one of another list is a CodeInvalid
// error saying so (otherList, when given, says it in the list's own words).
func decodeCursor(v, list string, n int, otherList string) ([]string, error) {
	if len(v) > maxCursorLength {
		return nil, errBadCursor
	}
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return nil, errBadCursor
	}
	var cur cursor
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cur); err != nil || cur.Version != 1 {
		return nil, errBadCursor
	}
	if cur.List != list {
		if otherList == "" {
			otherList = "cursor belongs to another list: use it only with the request it came from"
		}
		return nil, &tokka.Error{Code: tokka.CodeInvalid, Field: "cursor", Message: otherList}
	}
	if len(cur.After) != n {
		return nil, errBadCursor
	}
	return cur.After, nil
}

// limitParam reads limit: 1 to most, def when absent.
func limitParam(c echo.Context, def, most int) (int, error) {
	v := c.QueryParam("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		return 0, &tokka.Error{Code: tokka.CodeInvalid, Field: "limit", Message: "limit must be between 1 and " + strconv.Itoa(most)}
	}
	return n, nil
}

// idPage reads limit and cursor for a list of list, newest first by id: the
// page starts below the returned id (0: from the newest).
func idPage(c echo.Context, list string) (limit int, before int64, err error) {
	if limit, err = limitParam(c, defaultPageLimit, maxPageLimit); err != nil {
		return 0, 0, err
	}
	v := c.QueryParam("cursor")
	if v == "" {
		return limit, 0, nil
	}
	keys, err := decodeCursor(v, list, 1, "")
	if err != nil {
		return 0, 0, err
	}
	id, err := strconv.ParseInt(keys[0], 10, 64)
	if !idCursor.MatchString(keys[0]) || err != nil {
		return 0, 0, errBadCursor
	}
	return limit, id, nil
}

func idKey(id int64) []string { return []string{strconv.FormatInt(id, 10)} }

// createdPage reads limit and cursor for a list of list, oldest first by
// (created_at, id): the page starts after the returned key (nil: from the
// first).
func createdPage(c echo.Context, list string) (limit int, after *tokka.CreatedKey, err error) {
	if limit, err = limitParam(c, defaultPageLimit, maxPageLimit); err != nil {
		return 0, nil, err
	}
	v := c.QueryParam("cursor")
	if v == "" {
		return limit, nil, nil
	}
	keys, err := decodeCursor(v, list, 2, "")
	if err != nil {
		return 0, nil, err
	}
	at, err := time.Parse(time.RFC3339Nano, keys[0])
	if err != nil {
		return 0, nil, errBadCursor
	}
	id, err := parseUUID(keys[1])
	if err != nil {
		return 0, nil, errBadCursor
	}
	return limit, &tokka.CreatedKey{CreatedAt: at, ID: id}, nil
}

func createdKey(at time.Time, id string) []string {
	return []string{at.UTC().Format(time.RFC3339Nano), id}
}
