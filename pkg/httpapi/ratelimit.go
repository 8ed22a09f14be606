package httpapi

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// RateLimiter counts requests against budgets shared by every api replica;
// *postgres.DB implements it (the counters live in Postgres).
type RateLimiter interface {
	HitRateLimit(ctx context.Context, u tokka.User, ip string, rl tokka.RateLimit) (tokka.RateLimitResult, error)
}

// Default mutation budgets: generous for a person using the SPA (and for
// test suites that create dozens of connections), tight enough to stop a
// script. The IP budget is higher because several users may share an
// address behind a NAT.
const (
	DefaultMutationsPerUser = 60
	DefaultMutationsPerIP   = 600
)

// DefaultMutationsPerTeam is the mutations a team's members may make
// together per window, in a team other than their personal one.
const DefaultMutationsPerTeam = 300

// TeamRateLimiter counts requests against a team's budget;
// *postgres.DB implements it. A RateLimiter without it counts no teams.
type TeamRateLimiter interface {
	HitTeamRateLimit(ctx context.Context, u tokka.User, scope string, limit int, window time.Duration) (tokka.RateLimitResult, error)
}

// Default budgets for expensive reads, per user: a person checking their
// audit log or exporting usage a few times a minute never meets them, one
// tenant hammering them cannot take the database pool from the others.
const (
	DefaultExpensiveReadsPerMinute = 30
	DefaultAuditFullPerHour        = 6
)

// LongUsageRangeDays is the longest GET /v1/usage range that is a cheap
// read (a quarter); a longer one counts as an expensive read.
const LongUsageRangeDays = 92

// RateLimits are the budgets for mutations (POST, PUT, PATCH, DELETE) and
// for expensive reads.
type RateLimits struct {
	// PerUser is the most mutations one user may make per Window; default
	// DefaultMutationsPerUser.
	PerUser int
	// PerTeam is the most mutations a team's members may make together per
	// Window in that team (a personal team counts as its user); default
	// DefaultMutationsPerTeam.
	PerTeam int
	// PerIP is the most mutations from one client IP (IPv6: one /64) per
	// Window, whoever sends them; default DefaultMutationsPerIP.
	PerIP int
	// Window is the counting window, whole seconds up to a day; default
	// one minute.
	Window time.Duration
	// ExpensiveReadsPerMinute is the most expensive reads (audit
	// verification, the CSV export, usage over more than LongUsageRangeDays)
	// one user may make per minute, whatever their address; default
	// DefaultExpensiveReadsPerMinute.
	ExpensiveReadsPerMinute int
	// AuditFullPerHour is the most full re-checks of the audit chain
	// (verify?full=true) one user may ask for per hour; default
	// DefaultAuditFullPerHour.
	AuditFullPerHour int
}

func (s *Server) mutationLimit() tokka.RateLimit {
	rl := tokka.RateLimit{Scope: "mutations", PerUser: s.cfg.RateLimits.PerUser, PerIP: s.cfg.RateLimits.PerIP,
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

// perUser is a budget of n requests per window for each user, in scope;
// the client IP is not counted (HitRateLimit is given none), so users
// behind one NAT do not share it.
func perUser(scope string, n, def int, window time.Duration) tokka.RateLimit {
	if n <= 0 {
		n = def
	}
	return tokka.RateLimit{Scope: scope, PerUser: n, PerIP: n, Window: window}
}

func (s *Server) expensiveReadLimit() tokka.RateLimit {
	return perUser("expensive_read", s.cfg.RateLimits.ExpensiveReadsPerMinute, DefaultExpensiveReadsPerMinute, time.Minute)
}

func (s *Server) auditFullLimit() tokka.RateLimit {
	return perUser("audit_full", s.cfg.RateLimits.AuditFullPerHour, DefaultAuditFullPerHour, time.Hour)
}

// limitMutations counts every mutation against the caller's and the client
// IP's budgets, and refuses it with 429 once either is spent. It runs after
// authentication (so the user is known and unauthenticated floods cost no
// database write) and after the request's own checks (prepare: a request
// refused for its content spends nothing), and before the session check and
// the handler (so a flood reaches neither the Auth server nor the key
// store). Checks that must look something up — whether a connection is the
// caller's, a webhook host's addresses, a confirmed email — come after it. The client IP is
// c.RealIP(): the peer address, or X-Forwarded-For only when the peer is a
// TRUSTED_PROXIES address. If the counters cannot be read the request fails
// closed with 503.
func (s *Server) limitMutations(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if readOnly(c.Request().Method) {
			return next(c)
		}
		if err := s.spend(c, s.mutationLimit(), c.RealIP(), "too many changes"); err != nil {
			return err
		}
		return next(c)
	}
}

// limitExpensiveReads counts the reads that cost the database most against
// the caller's own budgets (see expensiveRead) and refuses them with 429
// once spent, with the same headers as mutations. A request that would be
// refused as invalid is refused here first, before it spends anything.
func (s *Server) limitExpensiveReads(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !readOnly(c.Request().Method) { // a HEAD costs what its GET costs
			return next(c)
		}
		rl, err := s.expensiveRead(c)
		if err != nil {
			return err
		}
		if rl != nil {
			if err := s.spend(c, *rl, "", "too many expensive requests"); err != nil {
				return err
			}
		}
		return next(c)
	}
}

// expensiveRead returns the budget a read spends, or nil for a cheap one:
// audit verification (a full re-check, verify?full=true, has the stricter
// audit_full budget), the CSV export, and /v1/usage over more than
// LongUsageRangeDays. It validates the parameters the handler will read
// and returns their error, so an invalid request spends nothing.
func (s *Server) expensiveRead(c echo.Context) (*tokka.RateLimit, error) {
	var rl tokka.RateLimit
	switch c.Path() {
	case "/v1/audit-events/verify":
		full, err := fullRecheck(c)
		if err != nil {
			return nil, err
		}
		rl = s.expensiveReadLimit()
		if full {
			rl = s.auditFullLimit()
		}
	case "/v1/usage/export.csv", "/v1/usage/export.focus.csv":
		if _, err := s.usageQuery(c); err != nil {
			return nil, err
		}
		rl = s.expensiveReadLimit()
	case "/v1/usage":
		q, err := s.usagePage(c)
		if err != nil {
			return nil, err
		}
		if usageDays(q) <= LongUsageRangeDays {
			return nil, nil
		}
		rl = s.expensiveReadLimit()
	default:
		return nil, nil
	}
	return &rl, nil
}

// fullRecheck reads verify's full parameter: absent or false for the
// incremental check, true for a re-check from the first event. The limiter
// and the handler must read it the same way, so both call this.
func fullRecheck(c echo.Context) (bool, error) {
	v := c.QueryParam("full")
	if v == "" {
		return false, nil
	}
	full, err := strconv.ParseBool(v)
	if err != nil {
		return false, &tokka.Error{Code: tokka.CodeInvalid, Field: "full", Message: "full must be true or false"}
	}
	return full, nil
}

// spend counts one request against rl (for ip too, unless it is empty),
// sets the RateLimit-* headers, and returns a 429 error saying what there
// were too many of once the budget is spent, or a 503 error if the counters
// cannot be read (fail closed). With no limiter configured it allows all.
func (s *Server) spend(c echo.Context, rl tokka.RateLimit, ip, tooMany string) error {
	limiter := s.cfg.RateLimiter
	if limiter == nil {
		return nil
	}
	res, err := limiter.HitRateLimit(c.Request().Context(), userOf(c), ip, rl)
	return s.counted(c, res, err, tooMany)
}

// counted turns one count of a budget into the RateLimit headers (those of
// the tighter budget, when the request was counted against two) and, once
// the budget is spent, a 429 with Retry-After. A counter that cannot be
// read fails the request closed with 503.
func (s *Server) counted(c echo.Context, res tokka.RateLimitResult, err error, tooMany string) error {
	if err != nil && tokka.ErrorCode(err) == tokka.CodeUnavailable {
		// The counters live in the database: when it is down, say so, as
		// every other request does.
		return err
	}
	if err != nil {
		s.failures.Error("rate limiter unavailable").Str("request_id", requestID(c)).Err(err).Msg("rate limiter unavailable")
		return &tokka.Error{Code: tokka.CodeUnavailable, Message: "rate limiter unavailable"}
	}
	reset := strconv.Itoa(int(math.Ceil(res.Reset.Seconds())))
	h := c.Response().Header()
	if left, err := strconv.Atoi(h.Get("RateLimit-Remaining")); err != nil || res.Remaining < left {
		h.Set("RateLimit-Limit", strconv.Itoa(res.Limit))
		h.Set("RateLimit-Remaining", strconv.Itoa(res.Remaining))
		h.Set("RateLimit-Reset", reset)
	}
	if !res.Allowed {
		h.Set("Retry-After", reset)
		return &tokka.Error{Code: tokka.CodeRateLimited, Message: tooMany + "; retry after " + reset + " seconds"}
	}
	return nil
}

// spendTeam counts a mutation in a shared team against the team's budget,
// once the caller is known to be a member (so no one can spend the budget
// of a team they are not in). The RateLimit headers then describe the
// tighter of the caller's and the team's budgets.
func (s *Server) spendTeam(c echo.Context) error {
	limiter, ok := s.cfg.RateLimiter.(TeamRateLimiter)
	if !ok {
		return nil
	}
	rl := s.mutationLimit()
	n := s.cfg.RateLimits.PerTeam
	if n <= 0 {
		n = DefaultMutationsPerTeam
	}
	res, err := limiter.HitTeamRateLimit(c.Request().Context(), userOf(c), "team_mutations", n, rl.Window)
	return s.counted(c, res, err, "too many changes in this team")
}
