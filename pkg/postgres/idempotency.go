package postgres

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// ClaimIdempotencyKey is called before a request carrying u's Idempotency-Key
// key runs; hash identifies the request (method, path and body, keyed). It
// returns:
//
//   - (nil, nil) when the caller now holds the key: it runs the request and
//     then calls SaveIdempotentResponse or ReleaseIdempotencyKey. The claim
//     lasts lock; a claim whose holder died is taken over after that;
//   - the stored response, to send again, when the same request already ran;
//   - a CodeUnprocessable error when the key was used with another request,
//     and a CodeConflict error while the first request still runs.
//
// Keys live for ttl after their first use; u's expired keys are removed here.
func (d *DB) ClaimIdempotencyKey(ctx context.Context, u tokka.User, key string, hash []byte, ttl, lock time.Duration) (*tokka.IdempotentResponse, error) {
	var out *tokka.IdempotentResponse
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM tokka.idempotency_keys WHERE user_id = $1 AND expires_at < now()`,
			u.ID); err != nil {
			return domainError(err, "idempotency keys")
		}
		var claimed bool
		err := tx.GetContext(ctx, &claimed, `
			INSERT INTO tokka.idempotency_keys (user_id, idempotency_key, request_hash, locked_until, expires_at)
			VALUES ($1, $2, $3, now() + make_interval(secs => $4), now() + make_interval(secs => $5))
			ON CONFLICT (user_id, idempotency_key) DO NOTHING
			RETURNING true`, u.ID, key, hash, lock.Seconds(), ttl.Seconds())
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return domainError(err, "idempotency key")
		}
		var row struct {
			Body   []byte         `db:"body"`
			Hash   []byte         `db:"request_hash"`
			Done   bool           `db:"done"`
			Stale  bool           `db:"stale"`
			Status sql.NullInt64  `db:"status"`
			Loc    sql.NullString `db:"location"`
			CT     sql.NullString `db:"content_type"`
		}
		if err := tx.GetContext(ctx, &row, `
			SELECT request_hash, status IS NOT NULL AS done, locked_until < now() AS stale, status, location,
				content_type, body
			FROM tokka.idempotency_keys WHERE user_id = $1 AND idempotency_key = $2 FOR UPDATE`, u.ID, key); err != nil {
			return domainError(err, "idempotency key")
		}
		switch {
		case !bytes.Equal(row.Hash, hash):
			return tokka.Errorf(tokka.CodeUnprocessable,
				"this Idempotency-Key was already used with a different request; use a new key for a new request")
		case row.Done:
			out = &tokka.IdempotentResponse{Status: int(row.Status.Int64), Location: row.Loc.String, ContentType: row.CT.String,
				Body: row.Body}
			return nil
		case !row.Stale:
			return tokka.Errorf(tokka.CodeConflict,
				"a request with this Idempotency-Key is still being processed; retry once it has completed")
		}
		// The first request's api process died holding the key: take it over.
		_, err = tx.ExecContext(ctx, `
			UPDATE tokka.idempotency_keys SET locked_until = now() + make_interval(secs => $3)
			WHERE user_id = $1 AND idempotency_key = $2`, u.ID, key, lock.Seconds())
		return domainError(err, "idempotency key")
	})
	return out, err
}

// SaveIdempotentResponse stores r as the response to u's request with key,
// which the caller claimed with hash. It fails only when the database does.
func (d *DB) SaveIdempotentResponse(ctx context.Context, u tokka.User, key string, hash []byte, r tokka.IdempotentResponse) error {
	return d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, `
			UPDATE tokka.idempotency_keys SET status = $4, location = nullif($5, ''), content_type = $6, body = $7,
				locked_until = now()
			WHERE user_id = $1 AND idempotency_key = $2 AND request_hash = $3 AND status IS NULL`,
			u.ID, key, hash, r.Status, r.Location, r.ContentType, r.Body)
		return domainError(err, "idempotent response")
	})
}

// ReleaseIdempotencyKey gives up u's claim on key (the request failed, so a
// retry may run it afresh). A key that already holds a response is kept. It
// fails only when the database does.
func (d *DB) ReleaseIdempotencyKey(ctx context.Context, u tokka.User, key string, hash []byte) error {
	return d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, `
			DELETE FROM tokka.idempotency_keys
			WHERE user_id = $1 AND idempotency_key = $2 AND request_hash = $3 AND status IS NULL`, u.ID, key, hash)
		return domainError(err, "idempotency key")
	})
}
