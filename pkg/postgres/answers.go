package postgres

import (
	"container/list"
	"context"
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// answers keeps computed usage answers (pages of usage rows, summaries) per
// user, each beside the user's data version it was computed at, the least
// recently used first out once their estimated size passes max. A dashboard
// asks the same questions again and again between syncs; an answer is only
// given again when, inside the asking transaction and under the caller's
// claims, the user's data version is still the one it was computed at (see
// migration 00021: any change to the user's connections, usage, costs,
// rollups or directory moves it). The version is read before the answer's
// own query in the same transaction on the same server, so an answer is
// never filed under a version newer than its data.
type answers struct {
	mu    sync.Mutex
	max   int
	size  int
	order *list.List // of *answer, most recently used at the front
	by    map[answerKey]*list.Element
}

// answerKey is the user, what was asked (a digest of the statement and its
// arguments) and the data version.
type answerKey struct {
	user    string
	asked   [sha256.Size]byte
	version string
}

type answer struct {
	key   answerKey
	value any
	size  int
}

func newAnswers(maxBytes int) *answers {
	return &answers{max: maxBytes, order: list.New(), by: map[answerKey]*list.Element{}}
}

// SetAnswerCache keeps up to maxBytes (estimated) of computed usage answers
// and summaries in memory, reused while the asking user's data has not
// changed; 0 turns it off (the default). Call it before serving.
func (d *DB) SetAnswerCache(maxBytes int) {
	if maxBytes <= 0 {
		d.answers = nil
		return
	}
	d.answers = newAnswers(maxBytes)
}

func (a *answers) get(k answerKey) (any, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.by[k]
	if !ok {
		return nil, false
	}
	a.order.MoveToFront(e)
	return e.Value.(*answer).value, true
}

func (a *answers) put(k answerKey, v any, size int) {
	if size > a.max/4 {
		return // one answer may not push out most of the others
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.by[k]; ok {
		a.size -= e.Value.(*answer).size
		a.order.Remove(e)
	}
	a.by[k] = a.order.PushFront(&answer{key: k, value: v, size: size})
	a.size += size
	for a.size > a.max {
		last := a.order.Back()
		old := last.Value.(*answer)
		a.order.Remove(last)
		delete(a.by, old.key)
		a.size -= old.size
	}
}

// asked digests a statement and its arguments into what an answer is filed
// under beside the user and the version.
func asked(query string, args ...any) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(query))
	for _, a := range args {
		fmt.Fprintf(h, "\x00%T\x00%v", a, a)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// dataVersion reads u's data version in tx: the number of u's connections
// and the highest data_version among them.
func dataVersion(ctx context.Context, tx *sqlx.Tx, u tokka.User) (string, error) {
	var v struct {
		Count int64 `db:"count"`
		Max   int64 `db:"max"`
	}
	err := tx.GetContext(ctx, &v, `SELECT count(*) AS count, coalesce(max(data_version), 0) AS max
		FROM tokka.connections WHERE user_id = $1`, u.ID)
	if err != nil {
		return "", domainError(err, "data version")
	}
	return fmt.Sprintf("%d.%d", v.Count, v.Max), nil
}

// DataVersion returns u's data version, read as u: it changes whenever
// anything u's usage answers are computed from changes.
func (d *DB) DataVersion(ctx context.Context, u tokka.User) (string, error) {
	var v string
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		var err error
		v, err = dataVersion(ctx, tx, u)
		return err
	})
	return v, err
}

// cachedAnswer runs compute in tx unless an answer to the same question
// at u's current data version is kept, and keeps what it computes. size
// estimates an answer's bytes.
func cachedAnswer[T any](ctx context.Context, d *DB, tx *sqlx.Tx, u tokka.User, q [sha256.Size]byte,
	compute func() (T, error), size func(T) int) (T, error) {
	if d.answers == nil {
		return compute()
	}
	var zero T
	version, err := dataVersion(ctx, tx, u)
	if err != nil {
		return zero, err
	}
	k := answerKey{user: u.ID, asked: q, version: version}
	if v, ok := d.answers.get(k); ok {
		return v.(T), nil
	}
	v, err := compute()
	if err != nil {
		return zero, err
	}
	d.answers.put(k, v, size(v))
	return v, nil
}
