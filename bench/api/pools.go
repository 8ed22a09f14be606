package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/tokka-dev/tokka/pkg/postgres"
)

// comparePools loads each endpoint that reads the database again with the
// api started with each -max-conns pool size in turn, and prints them.
func (h *harness) comparePools(ctx context.Context, out io.Writer, failed *failures) error {
	var rows []poolRow
	for _, n := range h.cfg.maxConns {
		api, addr, err := h.startAPI(ctx, h.dbURL, "DATABASE_MAX_CONNS="+strconv.Itoa(n))
		if err != nil {
			return err
		}
		for _, ep := range h.endpoints {
			if ep.script == nil {
				continue // it runs no SQL
			}
			fmt.Fprintf(os.Stderr, "measuring %s with a pool of %d…\n", ep.name, n)
			rows = append(rows, poolRow{ep: ep, pool: n, api: h.loadEndpoint(ctx, addr, ep)})
			if ctx.Err() != nil {
				break
			}
		}
		api.stop()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	reportPools(out, rows, postgres.DefaultMaxConns, h.cfg, failed)
	return nil
}
