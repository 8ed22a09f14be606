-- Trust enforced by the database (issue #11): what an SQL injection in the
-- api (any statement as role authenticated) or in the syncer (as
-- tokka_syncer) can do is bounded here, not by the Go code behaving.
--
-- 1. Identity. tokka.uid() reads only request.jwt.claims, the JSON the api
--    sets transaction-locally at the start of every transaction. It used to
--    prefer request.jwt.claim.sub (which the api never sets), so a
--    session-level set_config of that setting stayed on a pooled connection
--    and made every later request on it act as someone else.
--
-- 2. The audit chain is computed by the database. A BEFORE INSERT trigger
--    takes the per-user lock, links the event to the user's newest one, dates
--    it with the database's clock and hashes it; whatever the writer put in
--    id, prev_hash, hash or created_at is ignored. Each application role may
--    append only its own actions, under its own actor prefix.
--
-- 3. Connection state is not the api's to set. Role authenticated keeps
--    UPDATE on label and updated_at only; replacing a key and asking for a
--    sync go through two SECURITY DEFINER functions that check ownership and
--    do exactly what the api did, so a quarantined (compromised) connection
--    cannot be made active again, a sync cool-down cannot be reset, and a blob
--    cannot change without its state going back to pending.
--
-- 4. The api raises one kind of alert (the "sync now" spike), for its own
--    user and, if about a connection, one of its own: the foreign key alone
--    accepted anyone's connection id.
--
-- 5. Incremental audit verification. GET /v1/audit-events/verify used to
--    read a user's whole chain in one transaction, so a user with a long log
--    could hold pooled connections for seconds at a time. Now each user has a
--    checkpoint, the newest event a verification found intact (its id, its
--    hash and how many events the chain had up to it); a verification checks
--    that event is unchanged and reads only the events after it, then moves
--    the checkpoint forward. ?full=true still reads everything.
--
--    The api's role may read its user's checkpoint but not write it. It moves
--    only through tokka.advance_audit_checkpoint, which takes the user from
--    the transaction's claims, accepts only an event of that user's that
--    exists with exactly that hash, only moves forward, and counts the events
--    itself. So a caller cannot plant a checkpoint at an event that does not
--    exist, is not theirs or has another hash, nor move it back, nor make the
--    count lie. It does not re-check the events it skips over: a caller who
--    calls it directly can move its own checkpoint past events nobody
--    checked, which only ever hides something from themselves, and full=true
--    reads past any checkpoint. The table owner can rewrite checkpoints like
--    everything else.

-- +goose Up

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tokka.uid() RETURNS uuid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')::uuid
$$;
-- +goose StatementEnd

-- The audit trigger. It runs as the inserting role (not SECURITY DEFINER):
-- current_user is then the role whose actions are checked, and reading the
-- previous event goes through that role's own row-level security, which for
-- authenticated is exactly the user it may write for (any other user_id is
-- refused by the policy's WITH CHECK after the trigger). Every name is
-- qualified and search_path is pinned, so a caller's search_path cannot
-- redirect it.
--
-- Ids in chain order: the identity default is drawn when the row is formed,
-- before any trigger, so two writers could draw ids in one order and take the
-- lock in the other. The trigger draws the id again after the lock (the
-- first one becomes a gap). The lock is the one insertAudit used to take
-- (class 0x70c4a, the user id's hashtext), transaction-scoped.
--
-- The previous event is read by a statement that starts after the lock, so in
-- READ COMMITTED it sees the previous holder's committed event; a REPEATABLE
-- READ or SERIALIZABLE snapshot might not, so those are refused.
--
-- created_at is the database's clock, but never earlier than the
-- predecessor's (a clock stepped back would otherwise make an honest chain
-- look tampered with): verification reports time going backwards, so that
-- can only mean an edit.
-- +goose StatementBegin
CREATE FUNCTION tokka.audit_chain() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_prev_hash bytea;
  v_prev_at   timestamptz;
BEGIN
  IF current_user = 'authenticated' THEN
    IF NEW.action NOT IN ('key.created', 'key.replaced', 'key.deleted', 'connection.renamed', 'sync.requested')
       OR NOT starts_with(NEW.actor, 'api:') OR length(NEW.actor) NOT BETWEEN 5 AND 104 THEN
      RAISE EXCEPTION 'audit_events: the api role appends only the api''s actions, as api:<request id>'
        USING ERRCODE = '42501';
    END IF;
  ELSIF current_user = 'tokka_syncer' THEN
    IF NEW.action NOT IN ('key.decrypted', 'key.rewrapped', 'sync.succeeded', 'sync.failed',
                          'incident.quarantined', 'incident.notified', 'incident.released')
       OR NOT starts_with(NEW.actor, 'syncer:') OR length(NEW.actor) NOT BETWEEN 8 AND 107 THEN
      RAISE EXCEPTION 'audit_events: the syncer role appends only the syncer''s actions, as syncer:<instance>'
        USING ERRCODE = '42501';
    END IF;
  ELSIF NOT coalesce((SELECT r.rolsuper OR pg_catalog.pg_has_role(r.oid, c.relowner, 'USAGE')
                      FROM pg_catalog.pg_roles r, pg_catalog.pg_class c
                      WHERE r.rolname = current_user AND c.oid = 'tokka.audit_events'::pg_catalog.regclass), false) THEN
    -- Only the two application roles and the table's owner (migrations,
    -- operators) may append; a role granted INSERT later must be added here.
    RAISE EXCEPTION 'audit_events: only the api, the syncer and the table owner append events'
      USING ERRCODE = '42501';
  END IF;
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'audit_events: append in a READ COMMITTED transaction' USING ERRCODE = '25000';
  END IF;

  PERFORM pg_catalog.pg_advisory_xact_lock(461898, pg_catalog.hashtext(NEW.user_id::text));
  NEW.id := pg_catalog.nextval('tokka.audit_events_id_seq'::pg_catalog.regclass);
  SELECT e.hash, e.created_at INTO v_prev_hash, v_prev_at
  FROM tokka.audit_events e WHERE e.user_id = NEW.user_id ORDER BY e.id DESC LIMIT 1;
  NEW.prev_hash := v_prev_hash;
  NEW.created_at := greatest(pg_catalog.clock_timestamp(), v_prev_at);
  NEW.hash := tokka.audit_event_hash(NEW.prev_hash, NEW.user_id, NEW.connection_id, NEW.provider, NEW.action,
                                     NEW.outcome, NEW.purpose, NEW.actor, NEW.client_ip, NEW.user_agent,
                                     NEW.detail, NEW.created_at);
  RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_events_chain BEFORE INSERT ON tokka.audit_events
  FOR EACH ROW EXECUTE FUNCTION tokka.audit_chain();
-- Drawing the id again needs nextval; USAGE lets a role do only that (and
-- currval), never setval. A burnt id is a harmless gap.
GRANT USAGE ON SEQUENCE tokka.audit_events_id_seq TO authenticated, tokka_syncer;

-- Connection state. The api keeps only what a user may set directly.
REVOKE UPDATE ON tokka.connections FROM authenticated;
GRANT UPDATE (label, updated_at) ON tokka.connections TO authenticated;

-- The two functions below run as the migrating role, which owns the table
-- and is subject to its forced row-level security like everyone else: this
-- policy lets it through, and each function restricts itself to the caller's
-- rows with tokka.uid().
CREATE POLICY connections_definer ON tokka.connections TO CURRENT_USER USING (true) WITH CHECK (true);

-- tokka.replace_connection_key replaces the caller's key of connection p_id
-- (and its label when p_label is not null) and resets what the old key
-- decided: key_set_at now, status pending with no error, due at once. It
-- returns false when the caller has no such connection. The blob is sealed by
-- the api; the table's CHECK keeps it hex. The caller records key.replaced.
-- +goose StatementBegin
CREATE FUNCTION tokka.replace_connection_key(p_id uuid, p_label text, p_key_hint text, p_sealed_key text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_uid uuid := tokka.uid();
BEGIN
  IF v_uid IS NULL THEN
    RAISE EXCEPTION 'replace_connection_key: no user in this transaction' USING ERRCODE = '42501';
  END IF;
  IF p_key_hint IS NULL OR p_sealed_key IS NULL THEN
    RAISE EXCEPTION 'replace_connection_key: a key hint and a sealed key are required' USING ERRCODE = '22023';
  END IF;
  UPDATE tokka.connections c SET
    label = coalesce(p_label, c.label), key_hint = p_key_hint, sealed_key = p_sealed_key,
    key_set_at = now(), status = 'pending', last_error = NULL, next_sync_at = now(), updated_at = now()
  WHERE c.id = p_id AND c.user_id = v_uid;
  RETURN FOUND;
END
$$;
-- +goose StatementEnd

-- tokka.request_sync marks the caller's connection p_id for a sync as soon as
-- a syncer is free, at most once per p_min_interval_seconds (one second to a
-- year; the api passes SYNC_REQUEST_INTERVAL). It returns one row: outcome
-- 'requested'; 'not_found' (no such connection of the caller's); 'refused'
-- when the connection's status is one a sync cannot help (anything but
-- pending, active and error: a rejected or quarantined key, and any status
-- added later until it is allowed here), with that status; or 'too_soon'
-- with wait_seconds until the next request is allowed. Only 'requested'
-- changes anything. The caller records sync.requested and wakes the syncers.
-- +goose StatementBegin
CREATE FUNCTION tokka.request_sync(p_id uuid, p_min_interval_seconds double precision)
RETURNS TABLE (outcome text, status text, wait_seconds double precision)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_uid uuid := tokka.uid();
BEGIN
  IF v_uid IS NULL THEN
    RAISE EXCEPTION 'request_sync: no user in this transaction' USING ERRCODE = '42501';
  END IF;
  IF p_min_interval_seconds IS NULL OR NOT (p_min_interval_seconds BETWEEN 1 AND 31536000) THEN
    RAISE EXCEPTION 'request_sync: the interval must be one second to a year' USING ERRCODE = '22023';
  END IF;
  SELECT c.status,
         extract(epoch FROM c.last_sync_request_at + make_interval(secs => p_min_interval_seconds) - now())
  INTO status, wait_seconds
  FROM tokka.connections c WHERE c.id = p_id AND c.user_id = v_uid
  FOR UPDATE;
  IF NOT FOUND THEN
    outcome := 'not_found';
  ELSIF status NOT IN ('pending', 'active', 'error') THEN
    outcome := 'refused';
  ELSIF wait_seconds > 0 THEN
    outcome := 'too_soon';
  ELSE
    UPDATE tokka.connections c
    SET sync_requested_at = coalesce(c.sync_requested_at, now()), last_sync_request_at = now()
    WHERE c.id = p_id;
    outcome := 'requested';
  END IF;
  IF outcome <> 'too_soon' THEN
    wait_seconds := NULL;
  END IF;
  RETURN NEXT;
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION tokka.replace_connection_key(uuid, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tokka.request_sync(uuid, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tokka.replace_connection_key(uuid, text, text, text) TO authenticated;
GRANT EXECUTE ON FUNCTION tokka.request_sync(uuid, double precision) TO authenticated;

-- Alerts: the api reads and acknowledges its user's alerts and raises only
-- the sync-now spike. The EXISTS runs as the caller, so the connections
-- policy hides everyone else's rows.
DROP POLICY alerts_owner ON tokka.alerts;
CREATE POLICY alerts_owner_read ON tokka.alerts FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY alerts_owner_acknowledge ON tokka.alerts FOR UPDATE TO authenticated
  USING (user_id = (SELECT tokka.uid())) WITH CHECK (user_id = (SELECT tokka.uid()));
CREATE POLICY alerts_owner_raise ON tokka.alerts FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT tokka.uid())
              AND kind = 'key_access'
              AND starts_with(dedup_key, 'sync-request-spike:')
              AND (connection_id IS NULL
                   OR EXISTS (SELECT 1 FROM tokka.connections c WHERE c.id = alerts.connection_id)));

-- Incremental audit verification.
CREATE TABLE tokka.audit_checkpoints (
  user_id     uuid PRIMARY KEY,
  event_id    bigint NOT NULL,
  hash        bytea NOT NULL CHECK (length(hash) = 32),
  events      bigint NOT NULL CHECK (events > 0),
  verified_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tokka.audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.audit_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_checkpoints_owner_read ON tokka.audit_checkpoints FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
-- The function below runs as the migrating role, which owns both tables and
-- is subject to their forced row-level security: these let it through.
CREATE POLICY audit_checkpoints_definer ON tokka.audit_checkpoints TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY audit_events_definer_read ON tokka.audit_events FOR SELECT TO CURRENT_USER USING (true);
REVOKE ALL ON tokka.audit_checkpoints FROM PUBLIC;
GRANT SELECT ON tokka.audit_checkpoints TO authenticated;

-- tokka.advance_audit_checkpoint moves the caller's checkpoint to event
-- p_event_id, which must be the caller's and have hash p_hash (else error
-- 22023), unless the checkpoint is already there or beyond (no change). It
-- returns how many events the caller's chain has up to the checkpoint.
-- +goose StatementBegin
CREATE FUNCTION tokka.advance_audit_checkpoint(p_event_id bigint, p_hash bytea)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_uid    uuid := tokka.uid();
  v_at     bigint;
  v_events bigint;
  v_new    bigint;
BEGIN
  IF v_uid IS NULL THEN
    RAISE EXCEPTION 'advance_audit_checkpoint: no user in this transaction' USING ERRCODE = '42501';
  END IF;
  PERFORM 1 FROM tokka.audit_events e WHERE e.id = p_event_id AND e.user_id = v_uid AND e.hash = p_hash;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'advance_audit_checkpoint: the caller has no event with that id and hash' USING ERRCODE = '22023';
  END IF;
  SELECT c.event_id, c.events INTO v_at, v_events
  FROM tokka.audit_checkpoints c WHERE c.user_id = v_uid FOR UPDATE;
  IF FOUND AND v_at >= p_event_id THEN
    RETURN v_events;
  END IF;
  SELECT count(*) INTO v_new FROM tokka.audit_events e
  WHERE e.user_id = v_uid AND e.id > coalesce(v_at, 0) AND e.id <= p_event_id;
  v_events := coalesce(v_events, 0) + v_new;
  -- Two first verifications may race to insert: the later one updates, and
  -- only forward (its count, taken from zero, is right either way).
  INSERT INTO tokka.audit_checkpoints AS c (user_id, event_id, hash, events, verified_at)
  VALUES (v_uid, p_event_id, p_hash, v_events, now())
  ON CONFLICT (user_id) DO UPDATE
    SET event_id = EXCLUDED.event_id, hash = EXCLUDED.hash, events = EXCLUDED.events,
        verified_at = EXCLUDED.verified_at
    WHERE c.event_id < EXCLUDED.event_id;
  RETURN v_events;
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION tokka.advance_audit_checkpoint(bigint, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tokka.advance_audit_checkpoint(bigint, bytea) TO authenticated;

-- +goose Down
DROP FUNCTION tokka.advance_audit_checkpoint(bigint, bytea);
DROP POLICY audit_events_definer_read ON tokka.audit_events;
DROP TABLE tokka.audit_checkpoints;
DROP POLICY alerts_owner_raise ON tokka.alerts;
DROP POLICY alerts_owner_acknowledge ON tokka.alerts;
DROP POLICY alerts_owner_read ON tokka.alerts;
CREATE POLICY alerts_owner ON tokka.alerts TO authenticated
  USING (user_id = (SELECT tokka.uid())) WITH CHECK (user_id = (SELECT tokka.uid()));
DROP FUNCTION tokka.request_sync(uuid, double precision);
DROP FUNCTION tokka.replace_connection_key(uuid, text, text, text);
DROP POLICY connections_definer ON tokka.connections;
GRANT UPDATE (label, key_hint, sealed_key, key_set_at, status, last_error, next_sync_at, sync_requested_at,
              updated_at, last_sync_request_at)
  ON tokka.connections TO authenticated;
REVOKE USAGE ON SEQUENCE tokka.audit_events_id_seq FROM authenticated, tokka_syncer;
DROP TRIGGER audit_events_chain ON tokka.audit_events;
DROP FUNCTION tokka.audit_chain();
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tokka.uid() RETURNS uuid
LANGUAGE sql STABLE
AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
-- +goose StatementEnd
