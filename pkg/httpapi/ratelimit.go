package httpapi

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// RateLimiter counts requests against budgets shared by every api replica;
// *postgres.DB implements it (the counters live in Postgres).
type RateLimiter interface {
	HitRateLimit(ctx context.Context, u tokka.User, ip string, rl postgres.RateLimit) (postgres.RateLimitResult, error)
}

// Default mutation budgets: generous for a person using the SPA (and for
// test suites that create dozens of connections), tight enough to stop a
// script. The IP budget is higher because several users may share an
// address behind a NAT.
const (
	DefaultMutationsPerUser = 60
	DefaultMutationsPerIP   = 600
)

// RateLimits are the budgets for mutations (POST, PUT, PATCH, DELETE).
type RateLimits struct {
	// PerUser is the most mutations one user may make per Window; default
	// DefaultMutationsPerUser.
	PerUser int
	// PerIP is the most mutations from one client IP (IPv6: one /64) per
	// Window, whoever sends them; default DefaultMutationsPerIP.
	PerIP int
	// Window is the counting window, whole seconds up to a day; default
	// one minute.
	Window time.Duration
}

func (s *Server) mutationLimit() postgres.RateLimit {
	rl := postgres.RateLimit{Scope: "mutations", PerUser: s.cfg.RateLimits.PerUser, PerIP: s.cfg.RateLimits.PerIP,
		Window: s.cfg.RateLimits.Window}
	if rl.PerUser <= 0 {
		rl.PerUser = DefaultMutationsPerUser
	}
	if rl.PerIP <= 0 {
		rl.PerIP = DefaultMutationsPerIP
	}
	if rl.Window < time.Second {
		rl.Window = time.Minute
	}
	rl.Window = min(rl.Window.Truncate(time.Second), 24*time.Hour) // what tokka.rate_limit_hit accepts
	return rl
}

// rateLimiter is the configured limiter, else the store when it can count
// (the real one can), so limits are on unless deliberately replaced.
func (s *Server) rateLimiter() RateLimiter {
	if s.cfg.RateLimiter != nil {
		return s.cfg.RateLimiter
	}
	rl, _ := s.store.(RateLimiter)
	return rl
}

func isMutation(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// limitMutations counts every mutation against the caller's and the client
// IP's budgets, and refuses it with 429 once either is spent. It runs after
// authentication (so the user is known and unauthenticated floods cost no
// database write) and before the session check and the handler (so a flood
// reaches neither the Auth server nor the key store). The client IP is
// c.RealIP(): the peer address, or X-Forwarded-For only when the peer is a
// TRUSTED_PROXIES address. If the counters cannot be read the request fails
// closed with 503.
func (s *Server) limitMutations(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !isMutation(c.Request().Method) {
			return next(c)
		}
		limiter := s.rateLimiter()
		if limiter == nil {
			return next(c)
		}
		res, err := limiter.HitRateLimit(c.Request().Context(), userOf(c), c.RealIP(), s.mutationLimit())
		if err != nil {
			s.failures.Error("rate limiter unavailable").Str("request_id", requestID(c)).Err(err).Msg("rate limiter unavailable")
			return &tokka.Error{Code: tokka.CodeUnavailable, Message: "rate limiter unavailable"}
		}
		reset := strconv.Itoa(int(math.Ceil(res.Reset.Seconds())))
		h := c.Response().Header()
		h.Set("RateLimit-Limit", strconv.Itoa(res.Limit))
		h.Set("RateLimit-Remaining", strconv.Itoa(res.Remaining))
		h.Set("RateLimit-Reset", reset)
		if !res.Allowed {
			h.Set("Retry-After", reset)
			return &tokka.Error{Code: tokka.CodeRateLimited, Message: "too many changes; retry after " + reset + " seconds"}
		}
		return next(c)
	}
}
