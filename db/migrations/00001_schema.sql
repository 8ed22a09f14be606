-- Tokka's schema. Everything lives in schema tokka (not public, which Supabase
-- exposes through PostgREST). Nothing here touches schema auth: on Supabase
-- it belongs to the Auth server.

-- +goose Up

-- Roles are cluster-wide and several databases may migrate at once (tests do),
-- so each is created behind a guard that also tolerates a concurrent creator.
-- +goose StatementBegin
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    BEGIN
      CREATE ROLE authenticated NOLOGIN NOINHERIT;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tokka_syncer') THEN
    BEGIN
      CREATE ROLE tokka_syncer NOLOGIN NOINHERIT;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
END
$$;
-- +goose StatementEnd

CREATE SCHEMA IF NOT EXISTS tokka;
GRANT USAGE ON SCHEMA tokka TO authenticated, tokka_syncer;

-- tokka.uid() reads the caller's user id exactly as Supabase's auth.uid()
-- does (per-claim setting first, then the JSON claims), so the same policies
-- work under PostgREST and under the api's per-request transaction.
-- +goose StatementBegin
CREATE FUNCTION tokka.uid() RETURNS uuid
LANGUAGE sql STABLE
AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
-- +goose StatementEnd
GRANT EXECUTE ON FUNCTION tokka.uid() TO authenticated, tokka_syncer;

CREATE TABLE tokka.connections (
  id               uuid PRIMARY KEY,
  user_id          uuid NOT NULL,
  provider         text NOT NULL CHECK (provider IN ('openai', 'anthropic')),
  label            text NOT NULL CHECK (length(label) BETWEEN 1 AND 100),
  key_hint         text NOT NULL,
  -- The sealed key: v2:<kid>:<hex>:<hex> (or a legacy v1 iv:tag:ct import).
  -- Only hex and colons, never plaintext; see the column grants below.
  sealed_key       text NOT NULL CHECK (sealed_key ~ '^[0-9a-f:v]+$'),
  key_set_at       timestamptz NOT NULL DEFAULT now(),
  status           text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'active', 'invalid', 'error', 'needs_reconnect')),
  last_error       text,
  last_synced_at   timestamptz,
  backfilled_at    timestamptz,
  next_sync_at     timestamptz NOT NULL DEFAULT now(),
  sync_requested_at timestamptz,
  lease_owner      text,
  lease_expires_at timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX connections_user_idx ON tokka.connections (user_id, created_at);
CREATE INDEX connections_due_idx ON tokka.connections (next_sync_at)
  WHERE status NOT IN ('invalid', 'needs_reconnect');

-- Daily usage as the providers report it. Grouping fields the provider left
-- null are stored as '' so they can be part of the natural key.
CREATE TABLE tokka.usage_daily (
  connection_id          uuid NOT NULL REFERENCES tokka.connections (id) ON DELETE CASCADE,
  user_id                uuid NOT NULL,
  provider               text NOT NULL,
  day                    date NOT NULL,
  family                 text NOT NULL,
  model                  text NOT NULL DEFAULT '',
  project_id             text NOT NULL DEFAULT '',
  api_key_id             text NOT NULL DEFAULT '',
  service_tier           text NOT NULL DEFAULT '',
  batch                  text NOT NULL DEFAULT '',
  context_window         text NOT NULL DEFAULT '',
  input_uncached_tokens  bigint NOT NULL DEFAULT 0 CHECK (input_uncached_tokens >= 0),
  cache_read_tokens      bigint NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
  cache_write_5m_tokens  bigint NOT NULL DEFAULT 0 CHECK (cache_write_5m_tokens >= 0),
  cache_write_1h_tokens  bigint NOT NULL DEFAULT 0 CHECK (cache_write_1h_tokens >= 0),
  output_tokens          bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
  requests               bigint NOT NULL DEFAULT 0 CHECK (requests >= 0),
  synced_at              timestamptz NOT NULL DEFAULT now()
);
-- Dashboard queries filter by user and day range, then group; re-syncs
-- replace by connection and day range.
CREATE INDEX usage_daily_user_day_idx ON tokka.usage_daily (user_id, day, provider, model);
CREATE INDEX usage_daily_conn_day_idx ON tokka.usage_daily (connection_id, day);

-- Daily cost lines. Money is numeric, never float.
CREATE TABLE tokka.cost_daily (
  connection_id  uuid NOT NULL REFERENCES tokka.connections (id) ON DELETE CASCADE,
  user_id        uuid NOT NULL,
  provider       text NOT NULL,
  day            date NOT NULL,
  line_item      text NOT NULL DEFAULT '',
  model          text NOT NULL DEFAULT '',
  token_type     text NOT NULL DEFAULT '',
  cost_type      text NOT NULL DEFAULT '',
  project_id     text NOT NULL DEFAULT '',
  api_key_id     text NOT NULL DEFAULT '',
  amount_usd     numeric NOT NULL,
  amount         numeric NOT NULL,
  currency       text NOT NULL,
  synced_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cost_daily_user_day_idx ON tokka.cost_daily (user_id, day, provider, model);
CREATE INDEX cost_daily_conn_day_idx ON tokka.cost_daily (connection_id, day);

-- Every use of a key. Append-only: no application role may UPDATE or DELETE.
CREATE TABLE tokka.audit_events (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id        uuid NOT NULL,
  connection_id  uuid,
  provider       text NOT NULL DEFAULT '',
  action         text NOT NULL,
  outcome        text NOT NULL CHECK (outcome IN ('success', 'failure')),
  purpose        text NOT NULL DEFAULT '',
  actor          text NOT NULL,
  client_ip      text NOT NULL DEFAULT '',
  user_agent     text NOT NULL DEFAULT '',
  detail         text NOT NULL DEFAULT '',
  created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX audit_events_user_idx ON tokka.audit_events (user_id, id DESC);

-- Row-level security, enabled and forced (so even the table owner is
-- subject to it unless it is a superuser or BYPASSRLS).
ALTER TABLE tokka.connections  ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.connections  FORCE ROW LEVEL SECURITY;
ALTER TABLE tokka.usage_daily  ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.usage_daily  FORCE ROW LEVEL SECURITY;
ALTER TABLE tokka.cost_daily   ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.cost_daily   FORCE ROW LEVEL SECURITY;
ALTER TABLE tokka.audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.audit_events FORCE ROW LEVEL SECURITY;
-- goose's own bookkeeping: only the migrating role (the schema owner) may
-- see it; no application role has a grant or a policy.
ALTER TABLE tokka.goose_db_version ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.goose_db_version FORCE ROW LEVEL SECURITY;
CREATE POLICY goose_owner ON tokka.goose_db_version TO CURRENT_USER USING (true) WITH CHECK (true);

-- authenticated: each user sees and changes only their own rows. The
-- (select …) wrapper makes Postgres evaluate tokka.uid() once per statement.
CREATE POLICY connections_owner ON tokka.connections TO authenticated
  USING (user_id = (SELECT tokka.uid())) WITH CHECK (user_id = (SELECT tokka.uid()));
CREATE POLICY usage_owner ON tokka.usage_daily FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY cost_owner ON tokka.cost_daily FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY audit_owner_read ON tokka.audit_events FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY audit_owner_insert ON tokka.audit_events FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT tokka.uid()));

-- The syncer works across users, so its policies are open; what it may do
-- is bounded by its grants instead.
CREATE POLICY connections_syncer ON tokka.connections TO tokka_syncer USING (true) WITH CHECK (true);
CREATE POLICY usage_syncer ON tokka.usage_daily TO tokka_syncer USING (true) WITH CHECK (true);
CREATE POLICY cost_syncer ON tokka.cost_daily TO tokka_syncer USING (true) WITH CHECK (true);
CREATE POLICY audit_syncer_read ON tokka.audit_events FOR SELECT TO tokka_syncer USING (true);
CREATE POLICY audit_syncer_insert ON tokka.audit_events FOR INSERT TO tokka_syncer WITH CHECK (true);

-- Grants. The api role may write a sealed key but never read one back:
-- SELECT is granted column by column and sealed_key is left out, so even a
-- SQL injection in the api could not exfiltrate ciphertext.
REVOKE ALL ON ALL TABLES IN SCHEMA tokka FROM PUBLIC;
GRANT SELECT (id, user_id, provider, label, key_hint, key_set_at, status, last_error,
              last_synced_at, backfilled_at, next_sync_at, sync_requested_at,
              created_at, updated_at)
  ON tokka.connections TO authenticated;
GRANT INSERT (id, user_id, provider, label, key_hint, sealed_key)
  ON tokka.connections TO authenticated;
GRANT UPDATE (label, key_hint, sealed_key, key_set_at, status, last_error,
              next_sync_at, sync_requested_at, updated_at)
  ON tokka.connections TO authenticated;
GRANT DELETE ON tokka.connections TO authenticated;
GRANT SELECT ON tokka.usage_daily, tokka.cost_daily TO authenticated;
GRANT SELECT, INSERT ON tokka.audit_events TO authenticated;

-- The syncer reads blobs and updates sync state; it never creates or deletes
-- connections and never edits audit events.
GRANT SELECT ON tokka.connections TO tokka_syncer;
GRANT UPDATE (sealed_key, status, last_error, last_synced_at, backfilled_at, next_sync_at,
              sync_requested_at, lease_owner, lease_expires_at, updated_at)
  ON tokka.connections TO tokka_syncer;
GRANT SELECT, INSERT, DELETE ON tokka.usage_daily, tokka.cost_daily TO tokka_syncer;
GRANT SELECT, INSERT ON tokka.audit_events TO tokka_syncer;

-- +goose Down
DROP SCHEMA tokka CASCADE;
