-- Spend must never be counted twice (issue 16). Three things can add one
-- provider organisation to a user twice; each gets its guard here.
--
-- 1. The same key pasted again: connections.key_fingerprint is an
--    HMAC-SHA256 of the key under KEY_FINGERPRINT_SECRET, which only the api
--    holds (so, like Vault's audit hashes, nothing stored here lets anyone
--    test a guessed key). It is keyed per user as well, so one key in two
--    accounts does not show as one. A unique index makes a second connection
--    with the same fingerprint for the same owner impossible, even for two
--    requests racing. Rows stored before this migration have none (the api
--    cannot decrypt to compute it); the organisation check below covers them.
--    Role authenticated may write it and compare with it (it must find the
--    connection that already holds a key, under row-level security, to say
--    which one it is) but no response carries it.
--
-- 2. Another key of an organisation already connected: the syncer learns
--    each connection's organisation at the first sync of its key (Anthropic
--    organisation id; for OpenAI, whose admin API has no organisation id,
--    the ids of the organisation's projects, which are globally unique) and
--    records it here. organization_checked_at older than key_set_at means
--    "not yet learnt for this key". The newer of two connections of one
--    owner and provider that share the organisation (or any project) gets
--    status `duplicate`: its rows are removed, it is never leased again, and
--    it leaves the state only when its key is replaced.
--
-- 3. A retried POST: tokka.idempotency_keys remembers, per user and
--    Idempotency-Key, a keyed digest of the request and the first response
--    (status, Location, body) for 24 hours. The body never holds a secret
--    shown once (a budget's webhook_secret is left out; see SECURITY.md).
--
-- Nothing here depends on migration 00011's details: it adds columns,
-- constraints, grants and a table of its own.

-- +goose Up
ALTER TABLE tokka.connections
  ADD COLUMN key_fingerprint bytea CHECK (octet_length(key_fingerprint) = 32),
  ADD COLUMN organization_id text CHECK (length(organization_id) BETWEEN 1 AND 200),
  ADD COLUMN project_ids text[] NOT NULL DEFAULT '{}' CHECK (cardinality(project_ids) <= 10000),
  ADD COLUMN organization_checked_at timestamptz;

CREATE UNIQUE INDEX connections_user_fingerprint_key ON tokka.connections (user_id, key_fingerprint);

ALTER TABLE tokka.connections DROP CONSTRAINT connections_status_check;
ALTER TABLE tokka.connections ADD CONSTRAINT connections_status_check
  CHECK (status IN ('pending', 'active', 'invalid', 'error', 'needs_reconnect', 'compromised', 'duplicate'));

DROP INDEX tokka.connections_due_idx;
CREATE INDEX connections_due_idx ON tokka.connections (next_sync_at)
  WHERE status NOT IN ('invalid', 'needs_reconnect', 'compromised', 'duplicate');

GRANT SELECT (key_fingerprint), INSERT (key_fingerprint), UPDATE (key_fingerprint)
  ON tokka.connections TO authenticated;
GRANT UPDATE (organization_id, project_ids, organization_checked_at) ON tokka.connections TO tokka_syncer;

ALTER TABLE tokka.alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE tokka.alerts ADD CONSTRAINT alerts_kind_check
  CHECK (kind IN ('budget_threshold', 'budget_forecast', 'spend_anomaly', 'key_access', 'key_rotation',
                  'duplicate_connection'));

CREATE TABLE tokka.idempotency_keys (
  user_id         uuid NOT NULL,
  idempotency_key text NOT NULL CHECK (idempotency_key ~ '^[!-~]{1,255}$'),
  -- HMAC-SHA256 of method, path and body under KEY_FINGERPRINT_SECRET: a
  -- body may hold a pasted key, so the digest is keyed like the
  -- fingerprint.
  request_hash    bytea NOT NULL CHECK (octet_length(request_hash) = 32),
  -- NULL while the first request runs; then its response.
  status          integer CHECK (status BETWEEN 200 AND 299),
  location        text CHECK (length(location) <= 2048),
  content_type    text CHECK (length(content_type) <= 200),
  body            bytea CHECK (octet_length(body) <= 1048576),
  -- A request that holds the key past this (its api process died) lets a
  -- retry take over.
  locked_until    timestamptz NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz NOT NULL,
  PRIMARY KEY (user_id, idempotency_key)
);
CREATE INDEX idempotency_keys_expiry_idx ON tokka.idempotency_keys (user_id, expires_at);

ALTER TABLE tokka.idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY idempotency_keys_owner ON tokka.idempotency_keys TO authenticated
  USING (user_id = (SELECT tokka.uid())) WITH CHECK (user_id = (SELECT tokka.uid()));
REVOKE ALL ON tokka.idempotency_keys FROM PUBLIC;
GRANT SELECT, INSERT, DELETE ON tokka.idempotency_keys TO authenticated;
GRANT UPDATE (request_hash, status, location, content_type, body, locked_until, created_at, expires_at)
  ON tokka.idempotency_keys TO authenticated;

-- +goose Down
DROP TABLE tokka.idempotency_keys;
-- Row-level security is forced and no policy names the migrating role.
ALTER TABLE tokka.alerts NO FORCE ROW LEVEL SECURITY;
DELETE FROM tokka.alerts WHERE kind = 'duplicate_connection';
ALTER TABLE tokka.alerts FORCE ROW LEVEL SECURITY;
ALTER TABLE tokka.alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE tokka.alerts ADD CONSTRAINT alerts_kind_check
  CHECK (kind IN ('budget_threshold', 'budget_forecast', 'spend_anomaly', 'key_access', 'key_rotation'));
DROP INDEX tokka.connections_due_idx;
CREATE INDEX connections_due_idx ON tokka.connections (next_sync_at)
  WHERE status NOT IN ('invalid', 'needs_reconnect', 'compromised');
-- A duplicate becomes invalid (its reason kept): the older schema has no
-- other status that is never synced until the key is replaced, and syncing
-- it would count its organisation twice.
ALTER TABLE tokka.connections NO FORCE ROW LEVEL SECURITY;
UPDATE tokka.connections SET status = 'invalid' WHERE status = 'duplicate';
ALTER TABLE tokka.connections FORCE ROW LEVEL SECURITY;
ALTER TABLE tokka.connections DROP CONSTRAINT connections_status_check;
ALTER TABLE tokka.connections ADD CONSTRAINT connections_status_check
  CHECK (status IN ('pending', 'active', 'invalid', 'error', 'needs_reconnect', 'compromised'));
DROP INDEX tokka.connections_user_fingerprint_key;
ALTER TABLE tokka.connections
  DROP COLUMN key_fingerprint, DROP COLUMN organization_id, DROP COLUMN project_ids,
  DROP COLUMN organization_checked_at;
