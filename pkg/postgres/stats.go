package postgres

import (
	"context"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// CountByStatus returns, as the syncer, how many connections have each
// status (statuses no connection has are absent), for the syncer's
// per-status gauge. It fails only when the database does.
func (d *DB) CountByStatus(ctx context.Context) (map[tokka.ConnectionStatus]int, error) {
	var rows []struct {
		Status tokka.ConnectionStatus `db:"status"`
		N      int                    `db:"n"`
	}
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &rows,
			`SELECT status, count(*) AS n FROM tokka.connections GROUP BY status`), "count by status")
	})
	out := make(map[tokka.ConnectionStatus]int, len(rows))
	for _, r := range rows {
		out[r.Status] = r.N
	}
	return out, err
}

// PoolCollector exports the connection pool's saturation (database/sql's
// DBStats: open, in use and idle connections, the pool's maximum, and how
// often and how long callers waited for a connection) as the standard
// go_sql_* series with db_name="tokka". Register it once per pool.
func (d *DB) PoolCollector() prometheus.Collector {
	return collectors.NewDBStatsCollector(d.db.DB, "tokka")
}
