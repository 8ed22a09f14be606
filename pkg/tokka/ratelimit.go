package tokka

import "time"

// RateLimit is one shared budget: at most PerUser requests per user and
// PerIP requests per client IP (IPv6 per /64) in each Window, counted under
// Scope.
type RateLimit struct {
	Scope   string
	PerUser int
	PerIP   int
	Window  time.Duration
}

// RateLimitResult is the outcome of counting one request: whether it is
// allowed, and the figures of the tighter of the user and IP budgets.
type RateLimitResult struct {
	Allowed   bool
	Limit     int
	Remaining int
	// Reset is the time until the window restarts, in whole seconds (≥ 1).
	Reset time.Duration
}
