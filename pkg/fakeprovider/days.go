package fakeprovider

import (
	"sync"
	"time"
)

// dayCacheSize bounds the days a Server keeps generated: the 90-day
// windows of 16 syncs at once (the syncer's default concurrency), both
// providers, fit with room to spare.
const dayCacheSize = 4096

// dayKey names one generated day: a key's data from one provider on a UTC
// date at a restatement epoch.
type dayKey struct {
	anthropic bool
	key       string
	day       int64 // Unix time of the day's 00:00 UTC
	epoch     int
}

// dayCache keeps the days a Server generated lately. A sync reads every day
// of its window once per OpenAI usage family and once more for the costs,
// and generating a day (SHA-256 streams, decimal prices) was the fake's
// largest cost. The cached records are OpenAIDayAt's and AnthropicDayAt's
// results, which are pure: they are shared, and read only. The oldest day
// goes first when the cache is full.
type dayCache struct {
	mu    sync.Mutex
	days  map[dayKey]any
	order []dayKey // insertion order, a ring of at most dayCacheSize
	next  int      // the oldest entry of order once it is full
}

func (c *dayCache) get(k dayKey) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.days[k]
	return v, ok
}

func (c *dayCache) put(k dayKey, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.days == nil {
		c.days = make(map[dayKey]any, dayCacheSize)
	}
	if _, ok := c.days[k]; ok {
		return
	}
	if len(c.order) < dayCacheSize {
		c.order = append(c.order, k)
	} else {
		delete(c.days, c.order[c.next])
		c.order[c.next] = k
		c.next = (c.next + 1) % dayCacheSize
	}
	c.days[k] = v
}

// cachedDay returns the day k from the cache, generating and keeping it
// when missing. Two requests may generate the same day at once; both get
// equal records.
func cachedDay[R any](c *dayCache, k dayKey, generate func() []R) []R {
	if v, ok := c.get(k); ok {
		return v.([]R)
	}
	recs := generate()
	c.put(k, recs)
	return recs
}

// openAIDay is OpenAIDayAt for key on day at the epoch the Server serves it.
func (s *Server) openAIDay(key string, day time.Time) []OpenAIRecord {
	epoch := s.epochFor(key, day)
	k := dayKey{key: key, day: day.UTC().Truncate(24 * time.Hour).Unix(), epoch: epoch}
	return cachedDay(&s.days, k, func() []OpenAIRecord { return OpenAIDayAt(key, day, epoch) })
}

// anthropicDay is AnthropicDayAt for key on day at the epoch the Server
// serves it.
func (s *Server) anthropicDay(key string, day time.Time) []AnthropicRecord {
	epoch := s.epochFor(key, day)
	k := dayKey{anthropic: true, key: key, day: day.UTC().Truncate(24 * time.Hour).Unix(), epoch: epoch}
	return cachedDay(&s.days, k, func() []AnthropicRecord { return AnthropicDayAt(key, day, epoch) })
}
