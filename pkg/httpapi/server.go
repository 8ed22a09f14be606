// Package httpapi is Tokka's REST API on Echo: authentication, the per-request
// security middleware, and the handlers. It can seal keys but never open
// them: it holds only the syncer's public key.
package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/rs/zerolog"

	"github.com/tokka-dev/tokka/pkg/egress"
	"github.com/tokka-dev/tokka/pkg/ratelog"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Pinger says whether storage answers, for /readyz.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Store is all the storage the API needs, composed from what each area of
// handlers declares next to its handlers; *postgres.DB implements it. Every
// method runs as the given user under row-level security and fails with
// the store's domain errors (tokka.ErrNotFound, ...).
type Store interface {
	Pinger
	ConnectionStore
	UsageStore
	AuditStore
	AlertStore
	BudgetStore
	TeamStore
}

// Sealer seals a pasted key to the syncer's public key and tells clients how
// to seal one themselves; *seal.PublicKey implements it.
type Sealer interface {
	Seal(key *secret.Key, b seal.Binding) (string, error)
	Parameters() seal.Parameters
}

// Verifier turns a bearer token into the caller; *auth.Verifier implements it.
type Verifier interface {
	Verify(ctx context.Context, token string) (tokka.User, error)
}

// Config is the API's behaviour that operators choose.
type Config struct {
	CORSAllowedOrigins []string
	// TrustedProxies are the networks whose X-Forwarded-For is believed;
	// from anyone else the peer address is the client IP.
	TrustedProxies []*net.IPNet
	// BodyLimit caps request bodies; default 64 KiB.
	BodyLimit string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// SyncRequestInterval is the least time between two "sync now" requests
	// for one connection; default 5 minutes.
	SyncRequestInterval time.Duration
	// Metrics, when set, records request latency.
	Metrics *Metrics
	// RateLimits are the mutation budgets; zero fields take the defaults.
	RateLimits RateLimits
	// RateLimiter counts mutations; default the store, when it implements
	// RateLimiter (the Postgres one does).
	RateLimiter RateLimiter
	// Sessions, when set, confirms with the Auth server that the session
	// behind every mutation is still live (see liveSessionForMutations) and
	// says whether the user's email is confirmed.
	Sessions SessionChecker
	// WebhookGuard checks budget webhook URLs when they are saved; default a
	// strict guard (WEBHOOK_ALLOW_LOOPBACK_HTTP off, system resolver).
	WebhookGuard *egress.Guard
	// Drain, once started, turns /readyz to 503 for a graceful shutdown.
	Drain *Drain
	// Fingerprints computes the keyed fingerprints of pasted keys and the
	// digests of idempotent requests (KEY_FINGERPRINT_SECRET). Required to
	// add or replace keys and for Idempotency-Key: without it those requests
	// fail with 500.
	Fingerprints *secret.Fingerprinter
	// Idempotency keeps responses for Idempotency-Key; default the store,
	// when it implements IdempotencyStore (the Postgres one does).
	Idempotency IdempotencyStore
	// FailureLogEvery spaces the log lines of a failure that repeats on
	// every request (the database down): one full line, then one summary
	// per interval. Default ratelog.DefaultEvery.
	FailureLogEvery time.Duration
	// ExportsPerUser is how many CSV exports one user may run at once in
	// this process; default 2.
	ExportsPerUser int
	// RefusePlaintextKeys (PLAINTEXT_KEYS=refuse) refuses every request
	// whose body carries api_key: keys must then arrive sealed by the
	// client, so the api never holds a plaintext key.
	RefusePlaintextKeys bool
	// ProvisionalDays is how many recent days (today included) usage marks
	// provisional: the days the providers may still restate and the syncer
	// re-reads on every sync, so it is the syncer's SYNC_RESYNC_DAYS;
	// default tokka.DefaultResyncDays.
	ProvisionalDays int
	// AnswerCacheBytes is how much memory the bodies of usage pages and
	// summaries may keep (see answerCache); 0 keeps none.
	AnswerCacheBytes int
	// InvitationTTL is how long an invitation stays open; default
	// DefaultInvitationTTL.
	InvitationTTL time.Duration
}

// Server holds the API's dependencies.
type Server struct {
	cfg Config
	// Each area of handlers sees only the storage it declares.
	health      Pinger
	connections ConnectionStore
	usageRows   UsageStore
	audit       AuditStore
	alerts      AlertStore
	budgets     BudgetStore
	teams       TeamStore
	sealer      Sealer
	verifier    Verifier
	log         zerolog.Logger
	spec        []byte
	// failures logs outages once per interval, not once per request.
	failures *ratelog.Logger
	exports  *exportSlots
	// answers keeps usage and summary bodies (nil: off).
	answers *answerCache
}

// New builds the Echo router with every route and middleware.
func New(cfg Config, store Store, sealer Sealer, verifier Verifier, log zerolog.Logger, spec []byte) *echo.Echo {
	cfg = cfg.withDefaults(store)
	s := &Server{cfg: cfg, health: store, connections: store, usageRows: store, audit: store, alerts: store, budgets: store, teams: store,
		sealer: sealer, verifier: verifier, log: log, spec: spec,
		failures: ratelog.New(log, cfg.FailureLogEvery), exports: newExportSlots(cfg.ExportsPerUser),
		answers: newAnswerCache(cfg.AnswerCacheBytes)}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.IPExtractor = ipExtractor(cfg.TrustedProxies)

	// Order matters: the request id and security headers come first so that
	// every response, errors and panics included, carries them.
	e.Use(s.requestIDMiddleware, securityHeaders, noStore, s.accessLog, s.recoverMiddleware)
	if len(cfg.CORSAllowedOrigins) > 0 {
		e.Use(cors(cfg.CORSAllowedOrigins))
	}
	e.Use(middleware.BodyLimit(cfg.BodyLimit))
	s.routes(e)
	return e
}

// withDefaults fills what c leaves zero; the rate limiter and the
// idempotency store default to the store when it implements them.
func (c Config) withDefaults(store Store) Config {
	if c.BodyLimit == "" {
		c.BodyLimit = "64K"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SyncRequestInterval == 0 {
		c.SyncRequestInterval = 5 * time.Minute
	}
	if c.ProvisionalDays <= 0 {
		c.ProvisionalDays = tokka.DefaultResyncDays
	}
	if c.RateLimiter == nil {
		c.RateLimiter, _ = store.(RateLimiter)
	}
	if c.Idempotency == nil {
		c.Idempotency, _ = store.(IdempotencyStore)
	}
	return c
}

// cors answers browsers from the allowed origins. Exact matches only: Echo
// treats "*" and "?" in AllowOrigins as wildcards, which an allow-list must
// not.
func cors(origins []string) echo.MiddlewareFunc {
	allowed := make(map[string]bool, len(origins))
	for _, o := range origins {
		allowed[o] = true
	}
	return middleware.CORSWithConfig(middleware.CORSConfig{
		AllowOriginFunc: func(origin string) (bool, error) { return allowed[origin], nil },
		AllowMethods:    []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete},
		AllowHeaders:    []string{echo.HeaderAuthorization, echo.HeaderContentType, HeaderIdempotencyKey},
		ExposeHeaders: []string{"X-Request-Id", "Retry-After",
			"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", echo.HeaderLocation, HeaderIdempotentReplayed, echo.HeaderWWWAuthenticate},
		MaxAge: 600,
	})
}

// routes registers every route with its middleware.
func (s *Server) routes(e *echo.Echo) {
	// Every GET route answers HEAD too (RFC 9110 §9.3.2): the same handler
	// and checks, the same headers; net/http drops the body.
	get := func(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
		e.GET(path, h, m...)
		e.HEAD(path, h, m...)
	}
	get("/healthz", s.healthz, checkQuery, negotiate)
	get("/readyz", s.readyz, checkQuery, negotiate)
	get("/openapi.yaml", s.openapi, checkQuery, negotiate)

	// Middleware goes on each route rather than on the group: a group with
	// middleware swallows unknown methods as 404, and 405 is the truth.
	// Every /v1 mutation is rate-limited and needs a live session, and the
	// expensive reads have budgets of their own (session.go, ratelimit.go).
	// The query string (query.go), the Accept header (negotiate.go) and a
	// mutation's path and body (prepare.go) are checked first, so a request
	// refused for its own content spends no budget and reaches neither the
	// Auth server nor the store. A POST with an Idempotency-Key is answered
	// from its first response when it is a retry (idempotency.go).
	// The team a request acts in is checked once the caller is known to
	// have budget left (inTeam): by method for the routes that take
	// team_id, and with a role of each route's own for the team routes,
	// which take the team from the path.
	chain := func(need func(echo.Context) tokka.Role, prep echo.MiddlewareFunc) []echo.MiddlewareFunc {
		return []echo.MiddlewareFunc{s.authenticate, checkQuery, checkTeamID, negotiate, s.refusePlaintextKeys, prep,
			s.limitMutations, s.limitExpensiveReads, s.inTeam(need), s.liveSessionForMutations, s.idempotent}
	}
	v1 := func(prep echo.MiddlewareFunc) []echo.MiddlewareFunc { return chain(byMethod, prep) }
	teamRoute := func(min tokka.Role, prep echo.MiddlewareFunc) []echo.MiddlewareFunc { return chain(always(min), prep) }
	read := v1(prepare[struct{}](nil))
	byConnectionID := v1(prepare(parseConnectionID))
	get("/v1/me", s.me, read...)
	get("/v1/connections", s.listConnections, read...)
	get("/v1/sealing-key", s.getSealingKey, read...)
	e.POST("/v1/connections", s.createConnection, v1(prepare(s.parseNewConnection))...)
	get("/v1/connections/:id", s.getConnection, read...)
	e.PATCH("/v1/connections/:id", s.updateConnection, v1(prepare(s.parseConnectionUpdate))...)
	e.DELETE("/v1/connections/:id", s.deleteConnection, byConnectionID...)
	e.POST("/v1/connections/:id/sync", s.requestSync, byConnectionID...)
	get("/v1/connections/:id/keys", s.listConnectionKeys, read...)
	get("/v1/usage", s.usage, read...)
	get("/v1/usage/summary", s.usageSummary, read...)
	get("/v1/usage/export.csv", s.usageExport, read...)
	get("/v1/usage/export.focus.csv", s.usageFocusExport, read...)
	get("/v1/audit-events", s.listAuditEvents, read...)
	get("/v1/audit-events/verify", s.verifyAuditEvents, read...)
	get("/v1/alerts", s.listAlerts, read...)
	e.POST("/v1/alerts/:id/acknowledge", s.acknowledgeAlert, v1(prepare(parseAlertID))...)
	get("/v1/budgets", s.listBudgets, read...)
	e.POST("/v1/budgets", s.createBudget, v1(prepare(parseNewBudget))...)
	get("/v1/budgets/:id", s.getBudget, read...)
	e.PATCH("/v1/budgets/:id", s.updateBudget, v1(prepare(parseBudgetUpdate))...)
	e.DELETE("/v1/budgets/:id", s.deleteBudget, v1(prepare(budgetID))...)
	get("/v1/budgets/:id/deliveries", s.listBudgetDeliveries, read...)

	get("/v1/teams", s.listTeams, read...)
	e.POST("/v1/teams", s.createTeam, v1(prepare(parseTeamName))...)
	get("/v1/teams/:team", s.getTeam, teamRoute(tokka.RoleViewer, prepare[struct{}](nil))...)
	e.PATCH("/v1/teams/:team", s.renameTeam, teamRoute(tokka.RoleOwner, prepare(parseTeamName))...)
	e.DELETE("/v1/teams/:team", s.deleteTeam, teamRoute(tokka.RoleOwner, prepare[struct{}](nil))...)
	get("/v1/teams/:team/members", s.listMembers, teamRoute(tokka.RoleViewer, prepare[struct{}](nil))...)
	e.PATCH("/v1/teams/:team/members/:user", s.changeMember, teamRoute(tokka.RoleViewer, prepare(parseMemberUpdate))...)
	e.DELETE("/v1/teams/:team/members/:user", s.changeMember, teamRoute(tokka.RoleViewer, prepare(parseMemberRemoval))...)
	get("/v1/teams/:team/invitations", s.listInvitations, teamRoute(tokka.RoleAdmin, prepare[struct{}](nil))...)
	e.POST("/v1/teams/:team/invitations", s.createInvitation, teamRoute(tokka.RoleAdmin, prepare(parseNewInvitation))...)
	get("/v1/teams/:team/invitations/:invitation", s.getInvitation, teamRoute(tokka.RoleAdmin, prepare(invitationID))...)
	e.DELETE("/v1/teams/:team/invitations/:invitation", s.revokeInvitation, teamRoute(tokka.RoleAdmin, prepare(invitationID))...)
	e.POST("/v1/invitations/:token/accept", s.acceptInvitation, v1(prepare(invitationToken))...)
}

const ctxUser = "tokka.user"

func userOf(c echo.Context) tokka.User { return c.Get(ctxUser).(tokka.User) }

// authenticate accepts only "Authorization: Bearer <token>" (see
// bearerToken) and verifies it.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		token, ok := bearerToken(c.Request())
		if !ok {
			return &tokka.Error{Code: tokka.CodeUnauthorized, Message: "missing or invalid access token"}
		}
		u, err := s.verifier.Verify(c.Request().Context(), token)
		if err != nil {
			return err
		}
		c.Set(ctxUser, u)
		c.Set(ctxToken, token) // for the live-session check; never logged
		return next(c)
	}
}

func (s *Server) requestIDMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		// Always our own id: a client-chosen one could be used to forge or
		// confuse audit trails.
		rid := uuid.NewString()
		c.Set(echo.HeaderXRequestID, rid)
		c.Response().Header().Set(echo.HeaderXRequestID, rid)
		return next(c)
	}
}

func requestID(c echo.Context) string {
	rid, _ := c.Get(echo.HeaderXRequestID).(string)
	return rid
}

func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		return next(c)
	}
}

// noStore keeps user data out of shared and browser caches: every /v1
// response, errors included.
func noStore(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if strings.HasPrefix(c.Request().URL.Path, "/v1/") {
			c.Response().Header().Set("Cache-Control", "no-store")
		}
		return next(c)
	}
}

// recoverMiddleware turns a panic into a 500 problem. It logs the stack but
// not the panic value, which could hold request data.
func (s *Server) recoverMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error().Str("request_id", requestID(c)).Str("path", c.Path()).
					Msg("panic recovered in handler")
				err = echo.NewHTTPError(http.StatusInternalServerError)
			}
		}()
		return next(c)
	}
}

const (
	// ctxAborted marks a response that did not reach the client whole.
	ctxAborted = "tokka.aborted"
	// ctxAbortConnection asks accessLog to abort the connection after
	// logging, so a client cannot take a response cut short after its
	// headers (a streamed export) for a complete one.
	ctxAbortConnection = "tokka.abort_connection"
)

// accessLog writes one line per request: method, route, status, bytes
// sent, latency, and "aborted" when the response did not reach the client
// whole (it went away, or the response was cut short). Never headers,
// query strings or bodies.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		d := time.Since(start)
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		// The request's context ends before the handler returns only when
		// the client went away (or a write to it failed).
		aborted := c.Get(ctxAborted) == true || c.Request().Context().Err() != nil
		ev := s.log.Info().Str("request_id", requestID(c)).Str("method", c.Request().Method).
			Str("route", route).Int("status", c.Response().Status).Int64("bytes", c.Response().Size)
		if aborted {
			ev = ev.Bool("aborted", true)
		}
		ev.Dur("latency", d).Msg("request")
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.ObserveRequest(c.Path(), c.Request().Method, c.Response().Status, d)
		}
		if c.Get(ctxAbortConnection) == true {
			// net/http closes the connection without ending the response
			// (no final chunk), and logs nothing for this value.
			panic(http.ErrAbortHandler)
		}
		return nil
	}
}

func ipExtractor(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

func jsonEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	return enc
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz pings the database on a connection of its own (postgres.DB.Ping),
// so the api reads as ready while users keep every pooled connection busy,
// and as unavailable only when the database does not answer.
func (s *Server) readyz(c echo.Context) error {
	if s.cfg.Drain.Draining() {
		return &tokka.Error{Code: tokka.CodeUnavailable, Message: "shutting down"}
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := s.health.Ping(ctx); err != nil {
		if tokka.ErrorCode(err) != tokka.CodeUnavailable {
			// No answer in time means the same to a load balancer.
			err = fmt.Errorf("readiness: %w: %w", tokka.ErrUnavailable, err)
		}
		return err // the error handler logs it, at most once per interval
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) openapi(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", s.spec)
}

func (s *Server) me(c echo.Context) error {
	u := userOf(c)
	return c.JSON(http.StatusOK, map[string]string{"id": u.ID, "email": u.Email})
}
