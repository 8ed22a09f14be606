package postgres

import (
	"context"
	"sync"
	"time"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// DefaultReadAfterWrite is how long a user's reads stay on the primary after
// one of their writes, unless OpenReadReplica is told otherwise.
const DefaultReadAfterWrite = 5 * time.Second

// OpenReadReplica connects a pool of at most maxConns connections (≤ 0:
// DefaultMaxConns) to a streaming replica of the primary at url and sends
// the api's reads there from now on (see asReader): the same role, claims,
// search_path and timeout, so row-level security decides the same way.
// Writes, rate limits, idempotency and audit verification (which records
// checkpoints) stay on the primary. For readAfterWrite (≤ 0:
// DefaultReadAfterWrite) after a user's write, that user's reads go to the
// primary too, so they see what they just did even while the replica lags;
// the window is per api process. It fails when the replica is unreachable.
// Call it before the DB is used.
func (d *DB) OpenReadReplica(ctx context.Context, url string, maxConns int, readAfterWrite time.Duration) error {
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	if readAfterWrite <= 0 {
		readAfterWrite = DefaultReadAfterWrite
	}
	read, err := openPool(ctx, url, maxConns)
	if err != nil {
		return err
	}
	d.read = read
	d.writers = &recentWriters{window: readAfterWrite, at: map[string]time.Time{}, now: time.Now}
	return nil
}

// wrote records that u has just written (or tried to: a commit whose
// outcome is unknown may have landed), for recentWriter.
func (d *DB) wrote(u tokka.User) {
	if d.writers != nil {
		d.writers.add(u.ID)
	}
}

// recentWriter reports whether u wrote within the read-after-write window.
func (d *DB) recentWriter(u tokka.User) bool { return d.writers.has(u.ID) }

// recentWriters is the time of each user's last write within a window.
type recentWriters struct {
	window time.Duration
	now    func() time.Time
	mu     sync.Mutex
	at     map[string]time.Time
	// swept is when expired entries were last removed: at most once a
	// window, so the map holds only the users who wrote lately.
	swept time.Time
}

func (w *recentWriters) add(id string) {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.at[id] = now
	if now.Sub(w.swept) < w.window {
		return
	}
	for k, t := range w.at {
		if now.Sub(t) >= w.window {
			delete(w.at, k)
		}
	}
	w.swept = now
}

func (w *recentWriters) has(id string) bool {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.at[id]
	return ok && now.Sub(t) < w.window
}
