-- Two costs a sync paid on the connections table, both growing with the
-- number of connections.
--
-- 1. Leasing. LeaseDue takes the first due connections in the order
--    (sync_requested_at NULLS LAST, next_sync_at). No index had that order,
--    so when many connections were due at once (a cron run of `syncer once`
--    over every connection) each lease read and sorted all of them. This
--    index has the order (ascending puts NULLs last), so a lease reads the
--    index from its start and stops after the few rows it takes.
--
-- 2. Data versions (00021). The statement trigger on the usage, cost,
--    rollup and directory tables drew a new data_version for the
--    connection after every statement, so one sync wrote its connection row
--    a dozen times (each a new row version to index and later vacuum).
--    Once this transaction has written the row (its xmin is this
--    transaction's id), that row already carries a number drawn by this
--    transaction, and nobody else can see the transaction's changes before
--    it commits: the committed state still gets a number no other state
--    has, so the trigger leaves such rows alone. A row written only in a
--    subtransaction has another xmin and is written again, as before.

-- +goose Up
CREATE INDEX connections_lease_idx ON tokka.connections (sync_requested_at, next_sync_at)
  WHERE status NOT IN ('invalid', 'needs_reconnect', 'compromised', 'duplicate');

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tokka.rows_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- The connections trigger draws the new number.
  UPDATE tokka.connections SET data_version = 0
  WHERE id IN (SELECT DISTINCT connection_id FROM changed)
    AND xmin <> pg_catalog.xid(pg_catalog.pg_current_xact_id());
  RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tokka.rows_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- The connections trigger above draws the new number.
  UPDATE tokka.connections SET data_version = 0
  WHERE id IN (SELECT DISTINCT connection_id FROM changed);
  RETURN NULL;
END
$$;
-- +goose StatementEnd
DROP INDEX tokka.connections_lease_idx;
