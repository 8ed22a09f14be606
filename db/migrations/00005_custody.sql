-- Key custody, part two: a tamper-evident audit log.
--
-- Each user's audit events form a hash chain: an event stores the hash of
-- the user's previous event (prev_hash, NULL for the first) and a SHA-256 of
-- its own canonical content including prev_hash (hash). Editing, deleting or
-- inserting an event anywhere but at the end breaks the chain at that event,
-- which GET /v1/audit-events/verify reports. The table stays append-only for
-- every application role (no UPDATE or DELETE grant, see 00001); the chain is
-- what catches a writer with more power than that (the table owner, a
-- restored backup, someone with disk access).
--
-- The canonical encoding (also implemented in Go, postgres.AuditEventHash,
-- which is what verification uses; a test checks the two agree):
--
--   SHA-256( "tokka/audit/v1"
--            || f(prev_hash or empty) || f(user_id) || f(connection_id or empty)
--            || f(provider) || f(action) || f(outcome) || f(purpose) || f(actor)
--            || f(client_ip) || f(user_agent) || f(detail)
--            || f(created_at as UTC microseconds since 1970, int64 big-endian) )
--
-- where f(x) is x's length in bytes as a 4-byte big-endian integer followed
-- by x (text as UTF-8, ids in their lowercase canonical text). The length
-- prefixes make the encoding injective whatever the fields contain.

-- +goose Up
ALTER TABLE tokka.audit_events
  ADD COLUMN prev_hash bytea CHECK (prev_hash IS NULL OR length(prev_hash) = 32),
  ADD COLUMN hash      bytea CHECK (hash IS NULL OR length(hash) = 32);

-- +goose StatementBegin
CREATE FUNCTION tokka.audit_field(b bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT int4send(length(b)) || b $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION tokka.audit_event_hash(
  prev_hash bytea, user_id uuid, connection_id uuid, provider text, action text, outcome text,
  purpose text, actor text, client_ip text, user_agent text, detail text, created_at timestamptz)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT sha256(
    convert_to('tokka/audit/v1', 'UTF8')
    || tokka.audit_field(coalesce(prev_hash, ''::bytea))
    || tokka.audit_field(convert_to(user_id::text, 'UTF8'))
    || tokka.audit_field(convert_to(coalesce(connection_id::text, ''), 'UTF8'))
    || tokka.audit_field(convert_to(provider, 'UTF8'))
    || tokka.audit_field(convert_to(action, 'UTF8'))
    || tokka.audit_field(convert_to(outcome, 'UTF8'))
    || tokka.audit_field(convert_to(purpose, 'UTF8'))
    || tokka.audit_field(convert_to(actor, 'UTF8'))
    || tokka.audit_field(convert_to(client_ip, 'UTF8'))
    || tokka.audit_field(convert_to(user_agent, 'UTF8'))
    || tokka.audit_field(convert_to(detail, 'UTF8'))
    -- Whole seconds and microseconds separately, from the UTC wall clock, so
    -- the value is exact (no float) and independent of the session's TimeZone.
    || tokka.audit_field(int8send(
         extract(epoch FROM date_trunc('second', created_at AT TIME ZONE 'UTC'))::bigint * 1000000
         + extract(microseconds FROM created_at AT TIME ZONE 'UTC')::bigint % 1000000))
  )
$$;
-- +goose StatementEnd
GRANT EXECUTE ON FUNCTION tokka.audit_field(bytea) TO authenticated, tokka_syncer;
GRANT EXECUTE ON FUNCTION tokka.audit_event_hash(bytea, uuid, uuid, text, text, text, text, text, text, text, text, timestamptz)
  TO authenticated, tokka_syncer;

-- Chain the events that exist already, per user in id order. Row-level
-- security is forced on this table and no policy names the migrating role,
-- so it is lifted for the duration; ALTER TABLE holds an exclusive lock until
-- this migration's transaction commits, so no one else sees the gap.
ALTER TABLE tokka.audit_events NO FORCE ROW LEVEL SECURITY;
-- +goose StatementBegin
DO $$
DECLARE
  r    record;
  prev bytea;
  cur  uuid;
BEGIN
  FOR r IN SELECT * FROM tokka.audit_events ORDER BY user_id, id LOOP
    IF cur IS DISTINCT FROM r.user_id THEN
      cur := r.user_id;
      prev := NULL;
    END IF;
    UPDATE tokka.audit_events
    SET prev_hash = prev,
        hash = tokka.audit_event_hash(prev, r.user_id, r.connection_id, r.provider, r.action, r.outcome,
                                      r.purpose, r.actor, r.client_ip, r.user_agent, r.detail, r.created_at)
    WHERE id = r.id
    RETURNING hash INTO prev;
  END LOOP;
END
$$;
-- +goose StatementEnd
ALTER TABLE tokka.audit_events FORCE ROW LEVEL SECURITY;
ALTER TABLE tokka.audit_events ALTER COLUMN hash SET NOT NULL;

-- +goose Down
ALTER TABLE tokka.audit_events DROP COLUMN prev_hash, DROP COLUMN hash;
DROP FUNCTION tokka.audit_event_hash(bytea, uuid, uuid, text, text, text, text, text, text, text, text, timestamptz);
DROP FUNCTION tokka.audit_field(bytea);
