package postgres

import (
	"container/list"
	"database/sql/driver"
)

// stmtCacheSize is how many prepared statements each pooled connection
// keeps: every fixed statement of the api with room to spare for the usage
// query's shapes that are in use.
const stmtCacheSize = 128

// stmtCache is one connection's prepared statements by their SQL, the least
// recently used first out. A connection is used by one goroutine at a time,
// so it needs no lock.
type stmtCache struct {
	size  int
	order *list.List // of *cachedStmt, most recently used at the front
	by    map[string]*list.Element
}

type cachedStmt struct {
	query string
	stmt  driver.Stmt
}

func newStmtCache(size int) *stmtCache {
	return &stmtCache{size: size, order: list.New(), by: make(map[string]*list.Element, size)}
}

// get returns the statement prepared for query, or nil.
func (c *stmtCache) get(query string) driver.Stmt {
	e, ok := c.by[query]
	if !ok {
		return nil
	}
	c.order.MoveToFront(e)
	return e.Value.(*cachedStmt).stmt
}

// put keeps st as query's statement and returns the statement it pushed
// out, which the caller closes, or nil.
func (c *stmtCache) put(query string, st driver.Stmt) driver.Stmt {
	c.by[query] = c.order.PushFront(&cachedStmt{query: query, stmt: st})
	if c.order.Len() <= c.size {
		return nil
	}
	last := c.order.Back()
	c.order.Remove(last)
	old := last.Value.(*cachedStmt)
	delete(c.by, old.query)
	return old.stmt
}
