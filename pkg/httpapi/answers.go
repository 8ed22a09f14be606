package httpapi

import (
	"container/list"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// answerCache keeps the bodies of usage pages and summaries the api has
// sent, each filed under the asking user, the request (path and query as
// sent), the day it was asked on (defaults and the provisional days follow
// the date) and the user's data version its figures were read at (see
// postgres.DataVersion: the database moves it on every change to what the
// answer is computed from). A request that asks the same again reads the
// version under its own claims and, while it is unchanged, gets the same
// bytes without the query or the encoding. Bodies are filed only under a
// version read before their figures, in the same transaction, so none is
// ever given once the data under it changed. The least recently used go
// first once their size passes max.
type answerCache struct {
	mu    sync.Mutex
	max   int
	size  int
	order *list.List // of *keptAnswer, most recently used at the front
	by    map[string]*list.Element
}

type keptAnswer struct {
	key  string
	body []byte
}

// size is what a kept answer counts against max: its key, its body and a
// little for the bookkeeping around them.
func (k *keptAnswer) size() int { return len(k.key) + len(k.body) + 128 }

func newAnswerCache(maxBytes int) *answerCache {
	if maxBytes <= 0 {
		return nil
	}
	return &answerCache{max: maxBytes, order: list.New(), by: map[string]*list.Element{}}
}

// get returns the body kept under key, or nil.
func (a *answerCache) get(key string) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.by[key]
	if !ok {
		return nil
	}
	a.order.MoveToFront(e)
	return e.Value.(*keptAnswer).body
}

// put keeps a copy of body under key.
func (a *answerCache) put(key string, body []byte) {
	kept := &keptAnswer{key: key, body: body}
	if kept.size() > a.max/8 {
		return // one answer may not push out most of the others
	}
	kept.body = append([]byte(nil), body...)
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.by[key]; ok {
		a.remove(e)
	}
	a.by[key] = a.order.PushFront(kept)
	a.size += kept.size()
	for a.size > a.max {
		a.remove(a.order.Back())
	}
}

// remove drops one kept answer; a.mu is held.
func (a *answerCache) remove(e *list.Element) {
	old := a.order.Remove(e).(*keptAnswer)
	delete(a.by, old.key)
	a.size -= old.size()
}

// keeps reports whether this request's answer may be kept and given from
// the cache: the cache is on and the request does not ask for an indented
// body.
func (s *Server) keeps(c echo.Context) bool {
	return s.answers != nil && !c.QueryParams().Has("pretty")
}

// answerKey is what a request's answer is filed under at version: the
// user, the team, the path, the query exactly as sent and today's date.
func (s *Server) answerKey(c echo.Context, version string) string {
	u := userOf(c)
	return strings.Join([]string{u.ID, u.TeamID(), c.Path(), c.QueryString(),
		s.cfg.Now().UTC().Format(time.DateOnly), version}, "\x00")
}

// sendKept writes the body kept for this request at the user's current
// data version and reports whether there was one. It reads the version
// under the caller's claims; an error is the request's.
func (s *Server) sendKept(c echo.Context) (bool, error) {
	if !s.keeps(c) {
		return false, nil
	}
	v, err := s.usageRows.DataVersion(c.Request().Context(), userOf(c))
	if err != nil {
		return false, err
	}
	body := s.answers.get(s.answerKey(c, v))
	if body == nil {
		return false, nil
	}
	return true, writeJSONBody(c, body)
}

// keep files body (this request's answer, computed at version).
func (s *Server) keep(c echo.Context, version string, body []byte) {
	if s.keeps(c) && version != "" {
		s.answers.put(s.answerKey(c, version), body)
	}
}
