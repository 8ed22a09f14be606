package postgres

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// A user's data version is the number of their connections and the highest
// data_version among them (migration 00021): the database moves it on every
// change of a connection row and on every statement that writes or deletes
// a connection's usage, cost, rollup or directory rows, and no two
// different states of a user's data share one. The api keeps the answers it
// computed under the version they were computed at and gives them again
// while the version is unchanged (see httpapi's answer cache).
//
// UsageAt and SummaryAt read the version first, in the transaction and on
// the server the answer is read from, so an answer is never filed under a
// version newer than its data (newer data under an older version only
// costs a recomputation).

// dataVersion reads u's data version in tx.
func dataVersion(ctx context.Context, tx *sqlx.Tx, u tokka.User) (string, error) {
	var v struct {
		Count int64 `db:"count"`
		Max   int64 `db:"max"`
	}
	err := tx.GetContext(ctx, &v, `SELECT count(*) AS count, coalesce(max(data_version), 0) AS max
		FROM tokka.connections WHERE team_id = $1`, u.TeamID())
	if err != nil {
		return "", domainError(err, "data version")
	}
	return versionOf(v.Count, v.Max), nil
}

// versionOf writes a data version from its two parts: the number of the
// user's connections and their highest data_version.
func versionOf(connections, highest int64) string { return fmt.Sprintf("%d.%d", connections, highest) }

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
