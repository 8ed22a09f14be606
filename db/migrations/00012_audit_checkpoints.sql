-- Incremental audit verification (issue #11): GET /v1/audit-events/verify
-- used to read a user's whole chain in one transaction, so a user with a long
-- log could hold pooled connections for seconds at a time. Now each user has
-- a checkpoint, the newest event a verification found intact (its id, its
-- hash and how many events the chain had up to it); a verification checks
-- that event is unchanged and reads only the events after it, then moves the
-- checkpoint forward. ?full=true still reads everything.
--
-- The api's role may read its user's checkpoint but not write it. It moves
-- only through tokka.advance_audit_checkpoint, which takes the user from the
-- transaction's claims, accepts only an event of that user's that exists with
-- exactly that hash, only moves forward, and counts the events itself. So a
-- caller cannot plant a checkpoint at an event that does not exist, is not
-- theirs or has another hash, nor move it back, nor make the count lie. It
-- does not re-check the events it skips over: a caller who calls it directly
-- can move its own checkpoint past events nobody checked, which only ever
-- hides something from themselves, and full=true reads past any checkpoint.
-- The table owner can rewrite checkpoints like everything else.

-- +goose Up
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
