package postgres

import (
	"context"
	"net"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// HitRateLimit counts one request by u from ip (empty or unparseable: the
// IP is not counted) against rl, in the database so every api replica
// shares the counts. It runs in its own transaction as role authenticated,
// which may only call the SECURITY DEFINER function tokka.rate_limit_hit
// (see migration 00003). It fails only when the database does.
func (d *DB) HitRateLimit(ctx context.Context, u tokka.User, ip string, rl tokka.RateLimit) (tokka.RateLimitResult, error) {
	var ipArg any
	if parsed := net.ParseIP(ip); parsed != nil {
		ipArg = parsed.String()
	}
	var rows []struct {
		Bucket       string `db:"bucket"`
		Hits         int    `db:"hits"`
		MaxHits      int    `db:"max_hits"`
		ResetSeconds int    `db:"reset_seconds"`
	}
	err := d.asUserKeeping(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &rows,
			`SELECT bucket, hits, max_hits, reset_seconds FROM tokka.rate_limit_hit($1, $2, $3, $4, $5)`,
			rl.Scope, ipArg, rl.PerUser, rl.PerIP, int(rl.Window.Seconds())), "rate limit")
	})
	if err != nil {
		return tokka.RateLimitResult{}, err
	}
	res := tokka.RateLimitResult{Allowed: true, Limit: rl.PerUser, Remaining: rl.PerUser, Reset: rl.Window}
	for i, r := range rows {
		remaining := max(r.MaxHits-r.Hits, 0)
		if r.Hits > r.MaxHits {
			res.Allowed = false
		}
		if i == 0 || remaining < res.Remaining {
			res.Limit, res.Remaining = r.MaxHits, remaining
		}
		res.Reset = time.Duration(r.ResetSeconds) * time.Second
	}
	return res, nil
}

// HitTeamRateLimit counts one request against the budget of the team u acts
// in (limit per window, shared by its members): the database function
// checks u is a member. It fails only when the database does.
func (d *DB) HitTeamRateLimit(ctx context.Context, u tokka.User, scope string, limit int, window time.Duration) (tokka.RateLimitResult, error) {
	var r struct {
		Hits         int `db:"hits"`
		MaxHits      int `db:"max_hits"`
		ResetSeconds int `db:"reset_seconds"`
	}
	err := d.asUserKeeping(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.GetContext(ctx, &r,
			`SELECT hits, max_hits, reset_seconds FROM tokka.rate_limit_team_hit($1, $2, $3, $4)`,
			scope, u.TeamID(), limit, int(window.Seconds())), "rate limit")
	})
	if err != nil {
		return tokka.RateLimitResult{}, err
	}
	return tokka.RateLimitResult{Allowed: r.Hits <= r.MaxHits, Limit: r.MaxHits, Remaining: max(r.MaxHits-r.Hits, 0),
		Reset: time.Duration(r.ResetSeconds) * time.Second}, nil
}
