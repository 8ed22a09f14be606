// Package ratelog keeps a failure that repeats on every request or every
// pass — the database being down — to a few log lines instead of one per
// occurrence: the first is logged in full, the rest within the interval are
// counted, and one summary line says how many were suppressed.
package ratelog

import (
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// DefaultEvery is the interval a Logger made with every <= 0 uses.
const DefaultEvery = 30 * time.Second

// Logger rate-limits log lines per key; it is safe for concurrent use.
type Logger struct {
	log   zerolog.Logger
	every time.Duration

	// after schedules the end of an interval (time.AfterFunc; tests end
	// intervals by hand).
	after func(d time.Duration, f func())

	mu      sync.Mutex
	windows map[string]*window
}

// window is one key's current interval.
type window struct {
	level      zerolog.Level
	suppressed int
}

// New returns a Logger that writes to log at most one full line per key per
// every (DefaultEvery when every <= 0), plus a summary of what it suppressed.
func New(log zerolog.Logger, every time.Duration) *Logger {
	if every <= 0 {
		every = DefaultEvery
	}
	return &Logger{log: log, every: every, windows: map[string]*window{},
		after: func(d time.Duration, f func()) { time.AfterFunc(d, f) }}
}

// Warn starts a warn-level line for key: the event to fill and send when
// this is the first occurrence in the interval, nil (on which zerolog's
// methods do nothing) when it is suppressed.
func (l *Logger) Warn(key string) *zerolog.Event { return l.event(zerolog.WarnLevel, key) }

// Error is Warn at error level.
func (l *Logger) Error(key string) *zerolog.Event { return l.event(zerolog.ErrorLevel, key) }

func (l *Logger) event(level zerolog.Level, key string) *zerolog.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w, ok := l.windows[key]; ok {
		w.suppressed++
		return nil
	}
	l.windows[key] = &window{level: level}
	l.after(l.every, func() { l.close(key) })
	return l.log.WithLevel(level)
}

// close ends key's interval; if anything was suppressed in it, one line says
// how much. The next occurrence is logged in full again.
func (l *Logger) close(key string) {
	l.mu.Lock()
	w := l.windows[key]
	delete(l.windows, key)
	l.mu.Unlock()
	if w != nil && w.suppressed > 0 {
		l.log.WithLevel(w.level).Str("repeated", key).Int("suppressed", w.suppressed).
			Dur("interval", l.every).Msg("repeated failure: similar lines suppressed")
	}
}
