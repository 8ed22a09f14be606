-- Breach response (issue #8): a connection can be quarantined as
-- `compromised` by `syncer incident quarantine`.
--
-- A compromised connection's stored key is never used again: no syncer may
-- lease it (the lease query skips it, and the second constraint below makes
-- a lease on it impossible even for a query that forgot to), `syncer rewrap`
-- leaves it alone, and the api refuses "sync now" for it. Its user gets a
-- key_access alert and leaves the state by pasting a new key (PATCH with
-- api_key puts the connection back to pending) or deleting the connection.
--
-- Which connections an incident affects, and who was told, is recorded in the
-- users' own (hash-chained, append-only) audit logs as incident.quarantined
-- and incident.notified events, so no table is needed here.

-- +goose Up
ALTER TABLE tokka.connections DROP CONSTRAINT connections_status_check;
ALTER TABLE tokka.connections ADD CONSTRAINT connections_status_check
  CHECK (status IN ('pending', 'active', 'invalid', 'error', 'needs_reconnect', 'compromised'));
-- Quarantine clears the lease in the same statement that sets the status, so
-- a syncer mid-sync loses its lease (its results are discarded) and no new
-- lease can be taken while the status stays compromised.
ALTER TABLE tokka.connections ADD CONSTRAINT connections_compromised_unleased
  CHECK (status <> 'compromised' OR (lease_owner IS NULL AND lease_expires_at IS NULL));

DROP INDEX tokka.connections_due_idx;
CREATE INDEX connections_due_idx ON tokka.connections (next_sync_at)
  WHERE status NOT IN ('invalid', 'needs_reconnect', 'compromised');

-- +goose Down
DROP INDEX tokka.connections_due_idx;
CREATE INDEX connections_due_idx ON tokka.connections (next_sync_at)
  WHERE status NOT IN ('invalid', 'needs_reconnect');
ALTER TABLE tokka.connections DROP CONSTRAINT connections_compromised_unleased;
-- Row-level security is forced and no policy names the migrating role.
ALTER TABLE tokka.connections NO FORCE ROW LEVEL SECURITY;
UPDATE tokka.connections SET status = 'needs_reconnect' WHERE status = 'compromised';
ALTER TABLE tokka.connections FORCE ROW LEVEL SECURITY;
ALTER TABLE tokka.connections DROP CONSTRAINT connections_status_check;
ALTER TABLE tokka.connections ADD CONSTRAINT connections_status_check
  CHECK (status IN ('pending', 'active', 'invalid', 'error', 'needs_reconnect'));
