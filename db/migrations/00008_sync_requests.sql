-- "Sync now" (POST /v1/connections/{id}/sync): when the user last asked, so
-- the api can refuse to let one user make the syncer hammer a provider (or
-- use it as an oracle for whether a key still works).

-- +goose Up
ALTER TABLE tokka.connections ADD COLUMN last_sync_request_at timestamptz;
GRANT SELECT (last_sync_request_at), UPDATE (last_sync_request_at) ON tokka.connections TO authenticated;

-- +goose Down
ALTER TABLE tokka.connections DROP COLUMN last_sync_request_at;
