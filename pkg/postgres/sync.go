package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// ErrLeaseLost means the syncer no longer holds the connection's lease: it
// expired and another syncer took it, or the connection was deleted. The
// caller must stop without using the key or writing results.
var ErrLeaseLost = errors.New("postgres: lease lost")

// ErrKeyChanged means the user replaced the connection's key after it was
// leased: the leased blob is the old key and must not be opened or synced
// with. It wraps ErrLeaseLost (every caller must stop the same way) and the
// caller should release the lease so the new key is synced promptly.
var ErrKeyChanged = fmt.Errorf("%w: the key was replaced after the lease was taken", ErrLeaseLost)

// ErrDuplicate means the connection was marked duplicate while it was
// leased: an older connection of the same user covers its organisation, so
// nothing of this sync may be stored. It wraps ErrLeaseLost; the lease is
// still the caller's, to give back with AbandonSync.
var ErrDuplicate = fmt.Errorf("%w: the connection was marked duplicate", ErrLeaseLost)

// Lease is a connection a syncer holds until ExpiresAt.
type Lease struct {
	ConnectionID string     `db:"id"`
	UserID       string     `db:"user_id"`
	Provider     string     `db:"provider"`
	SealedKey    string     `db:"sealed_key"`
	KeySetAt     time.Time  `db:"key_set_at"`
	BackfilledAt *time.Time `db:"backfilled_at"`
	Requested    bool       `db:"requested"`
	// Owner names this one lease: the syncer's instance name and a random
	// suffix, so a lease is never mistaken for a later one of the same
	// syncer on the same connection (after it expired and was taken again).
	Owner string `db:"lease_owner"`
	// Takeover is set when the connection was still marked as leased by a
	// syncer whose lease had expired (it crashed or stalled).
	Takeover  bool      `db:"takeover"`
	ExpiresAt time.Time `db:"lease_expires_at"`
	// OrganizationKnown is set when the provider organisation of the
	// current key has been recorded (RecordOrganization); until then the
	// sync must learn it first.
	OrganizationKnown bool `db:"organization_known"`
	// Failures counts the connection's syncs that failed in a row before
	// this one (since its last success or new key); the syncer's retry
	// backoff grows with it.
	Failures int `db:"failures"`
}

// LeaseDue leases up to n connections that are due: never synced, asked for
// by their user, or whose next_sync_at has passed, and not leased by a live
// syncer. FOR UPDATE SKIP LOCKED lets several syncers lease at once without
// ever taking the same connection.
func (d *DB) LeaseDue(ctx context.Context, owner string, n int, leaseFor time.Duration) ([]Lease, error) {
	leases := []Lease{}
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		// Consecutive failures are counted from the audit log (sync.failed
		// since the last sync.succeeded, key.created or key.replaced), and
		// only for connections whose last sync failed (status error).
		return domainError(tx.SelectContext(ctx, &leases, `
			UPDATE tokka.connections c
			SET lease_owner = $1 || '/' || gen_random_uuid(), lease_expires_at = now() + make_interval(secs => $3)
			FROM (
				SELECT id, lease_owner IS NOT NULL AS takeover FROM tokka.connections
				WHERE status NOT IN ('invalid', 'needs_reconnect', 'compromised', 'duplicate')
				  AND (next_sync_at <= now() OR sync_requested_at IS NOT NULL)
				  AND (lease_expires_at IS NULL OR lease_expires_at < now())
				ORDER BY sync_requested_at NULLS LAST, next_sync_at
				LIMIT $2
				FOR UPDATE SKIP LOCKED
			) due
			WHERE c.id = due.id
			RETURNING c.id, c.user_id, c.provider, c.sealed_key, c.key_set_at, c.backfilled_at,
				c.sync_requested_at IS NOT NULL AS requested, c.lease_owner, c.lease_expires_at, due.takeover,
				coalesce(c.organization_checked_at >= c.key_set_at, false) AS organization_known,
				CASE WHEN c.status = 'error' THEN (
					SELECT count(*) FROM tokka.audit_events e
					WHERE e.user_id = c.user_id AND e.connection_id = c.id AND e.action = 'sync.failed'
					  AND e.id > coalesce((
						SELECT max(s.id) FROM tokka.audit_events s
						WHERE s.user_id = c.user_id AND s.connection_id = c.id
						  AND s.action IN ('sync.succeeded', 'key.created', 'key.replaced')), 0)
				) ELSE 0 END AS failures`,
			owner, n, leaseFor.Seconds()), "lease")
	})
	return leases, err
}

// RenewLease extends a held lease by leaseFor from now, so a sync that
// takes longer than one lease keeps it. It returns ErrLeaseLost when l.Owner
// no longer holds an unexpired lease (the sync must stop).
func (d *DB) RenewLease(ctx context.Context, l Lease, leaseFor time.Duration) error {
	return d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `
			UPDATE tokka.connections SET lease_expires_at = now() + make_interval(secs => $3)
			WHERE id = $1 AND lease_owner = $2 AND lease_expires_at > now()`,
			l.ConnectionID, l.Owner, leaseFor.Seconds())
		if err != nil {
			return domainError(err, "renew lease")
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrLeaseLost
		}
		return nil
	})
}

// CountDue counts the connections that are due now (for the due gauge).
func (d *DB) CountDue(ctx context.Context) (int, error) {
	var n int
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		return domainError(tx.GetContext(ctx, &n, `
			SELECT count(*) FROM tokka.connections
			WHERE status NOT IN ('invalid', 'needs_reconnect', 'compromised', 'duplicate')
			  AND (next_sync_at <= now() OR sync_requested_at IS NOT NULL)`), "count due")
	})
	return n, err
}

// holdLease locks the leased row for the rest of tx and fails with
// ErrLeaseLost unless l.Owner still holds an unexpired lease on it, with
// ErrKeyChanged when the user replaced the key since, and with ErrDuplicate
// when the connection was marked duplicate since. Only a replacement moves
// key_set_at; a rewrap re-seals the same key and leaves it alone, so a
// rewrap running beside a sync does not cost that sync its results.
func holdLease(ctx context.Context, tx *sqlx.Tx, l Lease) error {
	return lockLease(ctx, tx, l, true)
}

// lockLease is holdLease; unless live, a lease that has expired still
// counts as long as nobody has taken the connection since (lease_owner
// still names this very lease).
func lockLease(ctx context.Context, tx *sqlx.Tx, l Lease, live bool) error {
	var row struct {
		SameKey bool   `db:"same_key"`
		Status  string `db:"status"`
	}
	err := tx.GetContext(ctx, &row, `
		SELECT key_set_at = $3 AS same_key, status FROM tokka.connections
		WHERE id = $1 AND lease_owner = $2 AND (lease_expires_at > now() OR NOT $4)
		FOR UPDATE`, l.ConnectionID, l.Owner, l.KeySetAt, live)
	if err != nil {
		if errors.Is(domainError(err, "lease"), tokka.ErrNotFound) {
			return ErrLeaseLost
		}
		return domainError(err, "lease")
	}
	switch {
	case !row.SameKey:
		return ErrKeyChanged
	case row.Status == tokka.StatusDuplicate:
		return ErrDuplicate
	}
	return nil
}

// RecordKeyUse writes ev (key.decrypted) only while l is still held. The
// syncer calls it before it opens the blob: if this write fails, the key is
// not used (fail closed), and a deleted connection is never decrypted again.
func (d *DB) RecordKeyUse(ctx context.Context, l Lease, ev tokka.AuditEvent) error {
	return d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		if err := holdLease(ctx, tx, l); err != nil {
			return err
		}
		ev.UserID, ev.ConnectionID, ev.Provider = l.UserID, &l.ConnectionID, l.Provider
		return insertAudit(ctx, tx, ev)
	})
}

// SyncResult is what one successful sync writes.
type SyncResult struct {
	Window   provider.Window
	Usage    []provider.UsageRow
	Costs    []provider.CostRow
	Backfill bool // the window was the first-connect backfill
	Next     time.Time
	Event    tokka.AuditEvent // sync.succeeded
}

// CompleteSync replaces the window's usage and cost rows for the leased
// connection, marks it active, releases the lease and records the outcome,
// all in one transaction, so a crash leaves either the old rows or the new
// ones and re-syncs never double. It fails with ErrLeaseLost (writing
// nothing) when the lease is no longer held.
func (d *DB) CompleteSync(ctx context.Context, l Lease, r SyncResult) error {
	return d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		if err := holdLease(ctx, tx, l); err != nil {
			return err
		}
		from, to := r.Window.From.Format(time.DateOnly), r.Window.To.Format(time.DateOnly)
		for _, table := range []string{"tokka.usage_daily", "tokka.cost_daily"} {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+`
				WHERE connection_id = $1 AND day >= $2 AND day < $3`, l.ConnectionID, from, to); err != nil {
				return domainError(err, "replace window")
			}
		}
		if err := copyUsage(ctx, tx, l, r.Usage); err != nil {
			return err
		}
		if err := copyCosts(ctx, tx, l, r.Costs); err != nil {
			return err
		}
		if err := refreshRollups(ctx, tx, l.ConnectionID, r.Window); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE tokka.connections SET
				status = 'active', last_error = NULL, last_synced_at = now(),
				backfilled_at = CASE WHEN $2 THEN now() ELSE backfilled_at END,
				next_sync_at = $3, sync_requested_at = NULL,
				lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
			WHERE id = $1`, l.ConnectionID, r.Backfill, r.Next); err != nil {
			return domainError(err, "complete sync")
		}
		ev := r.Event
		ev.UserID, ev.ConnectionID, ev.Provider = l.UserID, &l.ConnectionID, l.Provider
		return insertAudit(ctx, tx, ev)
	})
}

// FailSync records a failed sync: the connection gets status and a
// user-facing reason, the lease is released, and ev (sync.failed) is written.
// It works on a lease that expired meanwhile (the database was away) as long
// as nobody has leased the connection since; otherwise it is ErrLeaseLost and
// changes nothing (ErrKeyChanged when the user replaced the key).
func (d *DB) FailSync(ctx context.Context, l Lease, status, reason string, next time.Time, ev tokka.AuditEvent) error {
	return d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		if err := lockLease(ctx, tx, l, false); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE tokka.connections SET
				status = $2, last_error = $3, next_sync_at = $4, sync_requested_at = NULL,
				lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
			WHERE id = $1`, l.ConnectionID, status, reason, next); err != nil {
			return domainError(err, "fail sync")
		}
		ev.UserID, ev.ConnectionID, ev.Provider = l.UserID, &l.ConnectionID, l.Provider
		return insertAudit(ctx, tx, ev)
	})
}

// rollupInserts returns the statements that rebuild the monthly rollups
// from the daily rows that match where.
func rollupInserts(where string) []string {
	return []string{
		`INSERT INTO tokka.usage_monthly
			SELECT connection_id, user_id, provider, date_trunc('month', day)::date, max(day), model, project_id,
				api_key_id, service_tier, sum(input_uncached_tokens), sum(cache_read_tokens),
				sum(cache_write_5m_tokens), sum(cache_write_1h_tokens), sum(output_tokens), sum(requests)
			FROM tokka.usage_daily WHERE ` + where + `
			GROUP BY connection_id, user_id, provider, date_trunc('month', day), model, project_id, api_key_id, service_tier`,
		`INSERT INTO tokka.cost_monthly
			SELECT connection_id, user_id, provider, date_trunc('month', day)::date, max(day), model, project_id,
				api_key_id, sum(amount_usd)
			FROM tokka.cost_daily WHERE ` + where + `
			GROUP BY connection_id, user_id, provider, date_trunc('month', day), model, project_id, api_key_id`,
		`INSERT INTO tokka.spend_daily
			SELECT connection_id, user_id, provider, day, sum(amount_usd)
			FROM tokka.cost_daily WHERE ` + where + `
			GROUP BY connection_id, user_id, provider, day`,
	}
}

// refreshRollups recomputes the monthly rollups and daily spend totals of
// every month the window touches, from the daily rows just written, in the
// caller's transaction.
func refreshRollups(ctx context.Context, tx *sqlx.Tx, connID string, w provider.Window) error {
	first := time.Date(w.From.Year(), w.From.Month(), 1, 0, 0, 0, 0, time.UTC)
	last := w.To.AddDate(0, 0, -1)
	end := time.Date(last.Year(), last.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 1, 0)
	from, to := first.Format(time.DateOnly), end.Format(time.DateOnly)
	stmts := append([]string{
		`DELETE FROM tokka.usage_monthly WHERE connection_id = $1 AND day >= $2 AND day < $3`,
		`DELETE FROM tokka.cost_monthly WHERE connection_id = $1 AND day >= $2 AND day < $3`,
		`DELETE FROM tokka.spend_daily WHERE connection_id = $1 AND day >= $2 AND day < $3`,
	}, rollupInserts(`connection_id = $1 AND day >= $2 AND day < $3`)...)
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q, connID, from, to); err != nil {
			return domainError(err, "refresh rollups")
		}
	}
	return nil
}

// RebuildRollups recomputes every monthly rollup from the daily tables, for
// rows written by other means than a sync (an import, a benchmark's
// generator). It must run as the tables' owner.
func (d *DB) RebuildRollups(ctx context.Context) error {
	return d.inTx(ctx, d.db, false, func(tx *sqlx.Tx) error {
		for _, q := range append([]string{`DELETE FROM tokka.usage_monthly`, `DELETE FROM tokka.cost_monthly`,
			`DELETE FROM tokka.spend_daily`},
			rollupInserts("true")...) {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return domainError(err, "rebuild rollups")
			}
		}
		return nil
	})
}

// ReleaseLease gives a lease back without recording a result (shutdown).
func (d *DB) ReleaseLease(ctx context.Context, l Lease) error {
	return d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, `
			UPDATE tokka.connections SET lease_owner = NULL, lease_expires_at = NULL
			WHERE id = $1 AND lease_owner = $2`, l.ConnectionID, l.Owner)
		return domainError(err, "release lease")
	})
}

// Rows are inserted with unnest over column arrays: one round trip per
// chunk, and (unlike COPY FROM) allowed on tables with row-level security.
const insertChunk = 5000

// copyUsage inserts rows for the leased connection, in chunks.
func copyUsage(ctx context.Context, tx *sqlx.Tx, l Lease, rows []provider.UsageRow) error {
	for len(rows) > 0 {
		n := min(len(rows), insertChunk)
		chunk := rows[:n]
		rows = rows[n:]
		var (
			day, family, model, project, apiKey, tier, batch, ctxWin  []string
			imageSize, imageSource, ctxLevel, vectorStore             []string
			uncached, cacheRead, cw5, cw1, output, requests           []int64
			images, chars, secs, bytes, sessions, fileSrch, webSearch []int64
		)
		for _, r := range chunk {
			day = append(day, r.Day.Format(time.DateOnly))
			family = append(family, r.Family)
			model = append(model, r.Model)
			project = append(project, r.ProjectID)
			apiKey = append(apiKey, r.APIKeyID)
			tier = append(tier, r.ServiceTier)
			batch = append(batch, r.Batch)
			ctxWin = append(ctxWin, r.ContextWindow)
			imageSize = append(imageSize, r.ImageSize)
			imageSource = append(imageSource, r.ImageSource)
			ctxLevel = append(ctxLevel, r.ContextLevel)
			vectorStore = append(vectorStore, r.VectorStoreID)
			uncached = append(uncached, r.InputUncachedTokens)
			cacheRead = append(cacheRead, r.CacheReadTokens)
			cw5 = append(cw5, r.CacheWrite5mTokens)
			cw1 = append(cw1, r.CacheWrite1hTokens)
			output = append(output, r.OutputTokens)
			requests = append(requests, r.Requests)
			images = append(images, r.Images)
			chars = append(chars, r.Characters)
			secs = append(secs, r.Seconds)
			bytes = append(bytes, r.Bytes)
			sessions = append(sessions, r.Sessions)
			fileSrch = append(fileSrch, r.FileSearches)
			webSearch = append(webSearch, r.WebSearches)
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO tokka.usage_daily (connection_id, user_id, provider, day, family, model,
				project_id, api_key_id, service_tier, batch, context_window,
				image_size, image_source, context_level, vector_store_id,
				input_uncached_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
				output_tokens, requests,
				images, characters, seconds, bytes, sessions, file_searches, web_searches)
			SELECT $1, $2, $3, u.* FROM unnest($4::date[], $5::text[], $6::text[], $7::text[], $8::text[],
				$9::text[], $10::text[], $11::text[],
				$12::text[], $13::text[], $14::text[], $15::text[],
				$16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[],
				$20::bigint[], $21::bigint[],
				$22::bigint[], $23::bigint[], $24::bigint[], $25::bigint[], $26::bigint[], $27::bigint[],
				$28::bigint[]) AS u`,
			l.ConnectionID, l.UserID, l.Provider, pq.Array(day), pq.Array(family), pq.Array(model),
			pq.Array(project), pq.Array(apiKey), pq.Array(tier), pq.Array(batch), pq.Array(ctxWin),
			pq.Array(imageSize), pq.Array(imageSource), pq.Array(ctxLevel), pq.Array(vectorStore),
			pq.Array(uncached), pq.Array(cacheRead), pq.Array(cw5), pq.Array(cw1),
			pq.Array(output), pq.Array(requests),
			pq.Array(images), pq.Array(chars), pq.Array(secs), pq.Array(bytes), pq.Array(sessions),
			pq.Array(fileSrch), pq.Array(webSearch)); err != nil {
			return domainError(err, "usage rows")
		}
	}
	return nil
}

// copyCosts inserts rows for the leased connection, in chunks. Amounts go
// to numeric columns as decimal text, so no float ever touches money.
func copyCosts(ctx context.Context, tx *sqlx.Tx, l Lease, rows []provider.CostRow) error {
	for len(rows) > 0 {
		n := min(len(rows), insertChunk)
		chunk := rows[:n]
		rows = rows[n:]
		var day, lineItem, model, tokenType, costType, project, apiKey, usd, amount, currency []string
		for _, r := range chunk {
			day = append(day, r.Day.Format(time.DateOnly))
			lineItem = append(lineItem, r.LineItem)
			model = append(model, r.Model)
			tokenType = append(tokenType, r.TokenType)
			costType = append(costType, r.CostType)
			project = append(project, r.ProjectID)
			apiKey = append(apiKey, r.APIKeyID)
			usd = append(usd, r.AmountUSD.String())
			amount = append(amount, r.Amount.String())
			currency = append(currency, r.Currency)
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO tokka.cost_daily (connection_id, user_id, provider, day, line_item, model,
				token_type, cost_type, project_id, api_key_id, amount_usd, amount, currency)
			SELECT $1, $2, $3, c.* FROM unnest($4::date[], $5::text[], $6::text[], $7::text[], $8::text[],
				$9::text[], $10::text[], $11::numeric[], $12::numeric[], $13::text[]) AS c`,
			l.ConnectionID, l.UserID, l.Provider, pq.Array(day), pq.Array(lineItem), pq.Array(model),
			pq.Array(tokenType), pq.Array(costType), pq.Array(project), pq.Array(apiKey), pq.Array(usd),
			pq.Array(amount), pq.Array(currency)); err != nil {
			return domainError(err, "cost rows")
		}
	}
	return nil
}
