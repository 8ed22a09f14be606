package postgres

import (
	"context"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// A user's data version names the state of every connection they see
// (migration 00021): the database draws a connection a new data_version,
// from one sequence, in every transaction that changes the connection row
// or writes or deletes its usage, cost, rollup or directory rows. Numbers
// are never reused, so two different committed states of one connection
// never share a number, and the version, a digest of the team's
// connection ids each with its number, is never the same for two
// different states of the data. (The highest number alone was not enough:
// two syncs of one team commit in either order, and the one that drew the
// lower number may commit last.) The api keeps the answers it computed
// under the version they were computed at and gives them again while the
// version is unchanged (see httpapi's answer cache).
//
// UsageAt and SummaryAt read the version first, in the transaction and on
// the server the answer is read from, so an answer is never filed under a
// version newer than its data (newer data under an older version only
// costs a recomputation).

// versionExpr is the data version of the connections rows it aggregates
// over (those of one team that the reading role sees).
const versionExpr = `encode(sha256(convert_to(coalesce(
	string_agg(id::text || ':' || data_version::text, ',' ORDER BY id), ''), 'UTF8')), 'hex')`

// dataVersion reads u's data version in tx.
func dataVersion(ctx context.Context, tx *sqlx.Tx, u tokka.User) (string, error) {
	var v string
	if err := tx.GetContext(ctx, &v, `SELECT `+versionExpr+` FROM tokka.connections WHERE team_id = $1`, u.TeamID()); err != nil {
		return "", domainError(err, "data version")
	}
	return v, nil
}

// DataVersion returns u's data version, read as u.
func (d *DB) DataVersion(ctx context.Context, u tokka.User) (string, error) {
	var v string
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		var err error
		v, err = dataVersion(ctx, tx, u)
		return err
	})
	return v, err
}
