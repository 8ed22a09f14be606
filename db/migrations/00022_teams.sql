-- Teams (issue 15). Connections, usage, budgets, alerts and the audit log
-- belong to a team; people belong to teams with a role: owner (manages
-- members, may delete the team), admin (keys, budgets, webhooks, alerts) or
-- viewer (reads). The database decides who sees and changes what.
--
-- 1. Personal teams, and how existing data moves. Every user has a personal
--    team whose id is their own user id; they are always its owner. So the
--    user_id column of every table a team owns becomes team_id with its
--    values unchanged (a rename: no row is rewritten, every index and
--    column grant follows), and every row a user owned is their personal
--    team's. The audit chain hashes that id, so every hash stays valid, and
--    a key's seal binds it, so no key needs sealing again: the binding's
--    first field is the team's id from now on (see pkg/seal). The team row
--    and the owner's membership row of a personal team are made here for
--    everyone who has data, and by tokka.ensure_personal_team on first use
--    for everyone else; tokka.team_ids counts the personal team without
--    them, so a new user's first request needs no extra write.
--
-- 2. One helper decides. tokka.team_ids(role) is the array of teams in which
--    the caller (tokka.uid()) holds that role or a higher one. It is
--    SECURITY DEFINER (it reads memberships the caller's own policies would
--    otherwise have to consult recursively) with search_path pinned and
--    every name qualified. Policies wrap it as (SELECT …) so it runs once
--    per statement, and compare with = ANY, which an index can use. Each
--    policy first compares with the caller's own id (the personal team,
--    always theirs): a statement that touches only personal rows never
--    calls the helper at all (an init plan runs when first needed, and OR
--    stops at the first true arm).
--
-- 3. Membership changes only through definer functions that check the
--    caller's role, keep the last owner from leaving or losing the role,
--    keep the founder of a personal team its owner, and append to the
--    team's audit chain. Role authenticated has no write grant on the three
--    team tables.
--
-- 4. Who did it. The audit log of a team holds several people's actions, so
--    events gain actor_user_id: set by the trigger from the claims for the
--    api's role (a writer cannot name someone else), by the definer
--    functions for theirs, NULL for the syncer. Events with one are hashed
--    as "tokka/audit/v2" (v1's fields, then the actor's id); events without
--    keep v1, so nothing already chained is hashed again, and clearing or
--    setting the column of an old event breaks the chain like any edit.
--    tokka.audit_event_hash_v2 computes either (v1 when the actor is NULL).

-- +goose Up

-- Every table a team owns: user_id becomes team_id.
ALTER TABLE tokka.connections        RENAME COLUMN user_id TO team_id;
ALTER TABLE tokka.usage_daily        RENAME COLUMN user_id TO team_id;
ALTER TABLE tokka.cost_daily         RENAME COLUMN user_id TO team_id;
ALTER TABLE tokka.usage_monthly      RENAME COLUMN user_id TO team_id;
ALTER TABLE tokka.cost_monthly       RENAME COLUMN user_id TO team_id;
ALTER TABLE tokka.spend_daily        RENAME COLUMN user_id TO team_id;
ALTER TABLE tokka.directory_projects RENAME COLUMN user_id TO team_id;
ALTER TABLE tokka.directory_keys     RENAME COLUMN user_id TO team_id;
ALTER TABLE tokka.budgets            RENAME COLUMN user_id TO team_id;
ALTER TABLE tokka.budget_deliveries  RENAME COLUMN user_id TO team_id;
ALTER TABLE tokka.alerts             RENAME COLUMN user_id TO team_id;
ALTER TABLE tokka.audit_events       RENAME COLUMN user_id TO team_id;
ALTER TABLE tokka.audit_checkpoints  RENAME COLUMN user_id TO team_id;

CREATE TABLE tokka.teams (
  id          uuid PRIMARY KEY,
  -- 100 user-perceived characters, which the api counts, are at most 400
  -- code points (as for labels and budget names, migration 00016).
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 400),
  -- The user whose personal team this is (then id = personal_of), or NULL.
  personal_of uuid UNIQUE CHECK (personal_of IS NULL OR personal_of = id),
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tokka.team_members (
  team_id    uuid NOT NULL REFERENCES tokka.teams (id) ON DELETE CASCADE,
  user_id    uuid NOT NULL,
  role       text NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
  -- The member's email when they joined (from their verified claims), for
  -- the member list; the Auth server stays the authority on it.
  email      text NOT NULL DEFAULT '' CHECK (length(email) <= 320),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user_idx ON tokka.team_members (user_id, team_id);

-- An invitation is a single-use token; only its SHA-256 is stored, so the
-- table cannot be used to accept one.
CREATE TABLE tokka.team_invitations (
  id          uuid PRIMARY KEY,
  team_id     uuid NOT NULL REFERENCES tokka.teams (id) ON DELETE CASCADE,
  email       text NOT NULL CHECK (length(email) BETWEEN 3 AND 320 AND email = lower(email)),
  role        text NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
  token_hash  bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
  invited_by  uuid NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  accepted_at timestamptz,
  accepted_by uuid,
  revoked_at  timestamptz,
  -- The token sealed to the syncer's public key (as provider keys are,
  -- bound to the team, the invitation's id and "invitation"), so the syncer,
  -- which alone may send email, can mail it; cleared once mailed or no
  -- longer open. Role authenticated may write it but never read it.
  token_sealed       text CHECK (token_sealed ~ '^[0-9a-f:v]+$'),
  mailed_at          timestamptz,
  mail_attempts      integer NOT NULL DEFAULT 0,
  mail_claimed_until timestamptz,
  mail_error         text,
  CHECK (accepted_at IS NULL OR revoked_at IS NULL)
);
CREATE INDEX team_invitations_team_idx ON tokka.team_invitations (team_id, created_at);

-- Personal teams for everyone who has data today, each owned by its user.
INSERT INTO tokka.teams (id, name, personal_of)
SELECT t.id, 'Personal', t.id
FROM (SELECT team_id AS id FROM tokka.connections
      UNION SELECT team_id FROM tokka.budgets
      UNION SELECT team_id FROM tokka.alerts
      UNION SELECT team_id FROM tokka.audit_events
      UNION SELECT user_id FROM tokka.idempotency_keys) t;
INSERT INTO tokka.team_members (team_id, user_id, role)
SELECT id, id, 'owner' FROM tokka.teams;

-- tokka.role_at_least: whether role is p_min or above (owner > admin > viewer).
-- +goose StatementBegin
CREATE FUNCTION tokka.role_at_least(p_role text, p_min text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE p_min
           WHEN 'viewer' THEN p_role IN ('viewer', 'admin', 'owner')
           WHEN 'admin' THEN p_role IN ('admin', 'owner')
           WHEN 'owner' THEN p_role = 'owner'
           ELSE false
         END
$$;
-- +goose StatementEnd

-- tokka.team_ids: the teams in which the caller holds p_min or a higher
-- role, their personal team included. Empty without claims.
-- +goose StatementBegin
CREATE FUNCTION tokka.team_ids(p_min text) RETURNS uuid[]
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN me.id IS NULL THEN '{}'::uuid[]
         ELSE array_append(
                coalesce((SELECT array_agg(m.team_id) FROM tokka.team_members m
                          WHERE m.user_id = me.id AND m.team_id <> me.id
                            AND tokka.role_at_least(m.role, p_min)), '{}'::uuid[]),
                me.id)
         END
  FROM (SELECT tokka.uid() AS id) me
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION tokka.team_ids(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tokka.team_ids(text) TO authenticated;
GRANT EXECUTE ON FUNCTION tokka.role_at_least(text, text) TO authenticated;

-- The definer functions below run as the migrating role, which owns these
-- tables and is subject to their forced row-level security.
ALTER TABLE tokka.teams ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.teams FORCE ROW LEVEL SECURITY;
ALTER TABLE tokka.team_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.team_members FORCE ROW LEVEL SECURITY;
ALTER TABLE tokka.team_invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.team_invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY teams_definer ON tokka.teams TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY team_members_definer ON tokka.team_members TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY team_invitations_definer ON tokka.team_invitations TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY audit_events_definer_insert ON tokka.audit_events FOR INSERT TO CURRENT_USER WITH CHECK (true);
CREATE POLICY budgets_definer ON tokka.budgets TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY alerts_definer ON tokka.alerts TO CURRENT_USER USING (true) WITH CHECK (true);

-- Members see their teams, their teams' members, and (admins) invitations.
CREATE POLICY teams_member ON tokka.teams FOR SELECT TO authenticated
  USING ((id = (SELECT tokka.uid()) OR id = ANY ((SELECT tokka.team_ids('viewer'))::uuid[])));
CREATE POLICY team_members_member ON tokka.team_members FOR SELECT TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('viewer'))::uuid[])));
CREATE POLICY team_invitations_admin ON tokka.team_invitations FOR SELECT TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('admin'))::uuid[])));
REVOKE ALL ON tokka.teams, tokka.team_members, tokka.team_invitations FROM PUBLIC;
GRANT SELECT ON tokka.teams, tokka.team_members TO authenticated;
GRANT SELECT (id, team_id, email, role, invited_by, created_at, expires_at, accepted_at, accepted_by, revoked_at)
  ON tokka.team_invitations TO authenticated;
-- The syncer tells owners and admins of a team about incidents, and mails
-- invitations (the only process that sends email).
CREATE POLICY team_members_syncer ON tokka.team_members FOR SELECT TO tokka_syncer USING (true);
GRANT SELECT ON tokka.team_members TO tokka_syncer;
CREATE POLICY teams_syncer ON tokka.teams FOR SELECT TO tokka_syncer USING (true);
GRANT SELECT (id, name) ON tokka.teams TO tokka_syncer;
CREATE POLICY team_invitations_syncer_read ON tokka.team_invitations FOR SELECT TO tokka_syncer USING (true);
CREATE POLICY team_invitations_syncer_mail ON tokka.team_invitations FOR UPDATE TO tokka_syncer USING (true) WITH CHECK (true);
GRANT SELECT (id, team_id, email, role, created_at, expires_at, accepted_at, revoked_at, token_sealed, mailed_at,
              mail_attempts, mail_claimed_until)
  ON tokka.team_invitations TO tokka_syncer;
GRANT UPDATE (token_sealed, mailed_at, mail_attempts, mail_claimed_until, mail_error)
  ON tokka.team_invitations TO tokka_syncer;

-- The policies of role authenticated, by membership and role. Reading needs
-- viewer; changing a team's keys, budgets and alerts needs admin.
DROP POLICY connections_owner ON tokka.connections;
CREATE POLICY connections_read ON tokka.connections FOR SELECT TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('viewer'))::uuid[])));
CREATE POLICY connections_add ON tokka.connections FOR INSERT TO authenticated
  WITH CHECK ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('admin'))::uuid[])));
CREATE POLICY connections_change ON tokka.connections FOR UPDATE TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('admin'))::uuid[])))
  WITH CHECK ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('admin'))::uuid[])));
CREATE POLICY connections_remove ON tokka.connections FOR DELETE TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('admin'))::uuid[])));

DROP POLICY usage_owner ON tokka.usage_daily;
CREATE POLICY usage_read ON tokka.usage_daily FOR SELECT TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('viewer'))::uuid[])));
DROP POLICY cost_owner ON tokka.cost_daily;
CREATE POLICY cost_read ON tokka.cost_daily FOR SELECT TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('viewer'))::uuid[])));
DROP POLICY usage_monthly_owner ON tokka.usage_monthly;
CREATE POLICY usage_monthly_read ON tokka.usage_monthly FOR SELECT TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('viewer'))::uuid[])));
DROP POLICY cost_monthly_owner ON tokka.cost_monthly;
CREATE POLICY cost_monthly_read ON tokka.cost_monthly FOR SELECT TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('viewer'))::uuid[])));
DROP POLICY spend_daily_owner ON tokka.spend_daily;
CREATE POLICY spend_daily_read ON tokka.spend_daily FOR SELECT TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('viewer'))::uuid[])));
DROP POLICY directory_projects_owner ON tokka.directory_projects;
CREATE POLICY directory_projects_read ON tokka.directory_projects FOR SELECT TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('viewer'))::uuid[])));
DROP POLICY directory_keys_owner ON tokka.directory_keys;
CREATE POLICY directory_keys_read ON tokka.directory_keys FOR SELECT TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('viewer'))::uuid[])));

-- A connection-scoped budget must point at a connection of the same team
-- (the EXISTS runs as the caller, so it also hides other teams' rows).
DROP POLICY budgets_owner ON tokka.budgets;
CREATE POLICY budgets_read ON tokka.budgets FOR SELECT TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('viewer'))::uuid[])));
CREATE POLICY budgets_add ON tokka.budgets FOR INSERT TO authenticated
  WITH CHECK ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('admin'))::uuid[]))
              AND (budgets.connection_id IS NULL
                   OR EXISTS (SELECT 1 FROM tokka.connections c
                              WHERE c.id = budgets.connection_id AND c.team_id = budgets.team_id)));
CREATE POLICY budgets_change ON tokka.budgets FOR UPDATE TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('admin'))::uuid[])))
  WITH CHECK ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('admin'))::uuid[]))
              AND (budgets.connection_id IS NULL
                   OR EXISTS (SELECT 1 FROM tokka.connections c
                              WHERE c.id = budgets.connection_id AND c.team_id = budgets.team_id)));
CREATE POLICY budgets_remove ON tokka.budgets FOR DELETE TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('admin'))::uuid[])));
DROP POLICY budget_deliveries_owner ON tokka.budget_deliveries;
CREATE POLICY budget_deliveries_read ON tokka.budget_deliveries FOR SELECT TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('viewer'))::uuid[])));

DROP POLICY alerts_owner_read ON tokka.alerts;
DROP POLICY alerts_owner_acknowledge ON tokka.alerts;
DROP POLICY alerts_owner_raise ON tokka.alerts;
CREATE POLICY alerts_read ON tokka.alerts FOR SELECT TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('viewer'))::uuid[])));
CREATE POLICY alerts_acknowledge ON tokka.alerts FOR UPDATE TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('admin'))::uuid[])))
  WITH CHECK ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('admin'))::uuid[])));
CREATE POLICY alerts_raise ON tokka.alerts FOR INSERT TO authenticated
  WITH CHECK ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('admin'))::uuid[]))
              AND kind = 'key_access'
              AND starts_with(dedup_key, 'sync-request-spike:')
              AND (connection_id IS NULL
                   OR EXISTS (SELECT 1 FROM tokka.connections c
                              WHERE c.id = alerts.connection_id AND c.team_id = alerts.team_id)));

-- Every member reads the team's audit log (every decryption of its keys);
-- the api appends the actions of admins.
DROP POLICY audit_owner_read ON tokka.audit_events;
DROP POLICY audit_owner_insert ON tokka.audit_events;
CREATE POLICY audit_read ON tokka.audit_events FOR SELECT TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('viewer'))::uuid[])));
CREATE POLICY audit_append ON tokka.audit_events FOR INSERT TO authenticated
  WITH CHECK ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('admin'))::uuid[])));
DROP POLICY audit_checkpoints_owner_read ON tokka.audit_checkpoints;
CREATE POLICY audit_checkpoints_read ON tokka.audit_checkpoints FOR SELECT TO authenticated
  USING ((team_id = (SELECT tokka.uid()) OR team_id = ANY ((SELECT tokka.team_ids('viewer'))::uuid[])));

-- Who did it.
ALTER TABLE tokka.audit_events ADD COLUMN actor_user_id uuid;

-- +goose StatementBegin
CREATE FUNCTION tokka.audit_event_hash_v2(
  prev_hash bytea, team_id uuid, connection_id uuid, provider text, action text, outcome text,
  purpose text, actor text, client_ip text, user_agent text, detail text, created_at timestamptz,
  actor_user_id uuid)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN actor_user_id IS NULL
    THEN tokka.audit_event_hash(prev_hash, team_id, connection_id, provider, action, outcome, purpose, actor,
                                client_ip, user_agent, detail, created_at)
    ELSE sha256(
      convert_to('tokka/audit/v2', 'UTF8')
      || tokka.audit_field(coalesce(prev_hash, ''::bytea))
      || tokka.audit_field(convert_to(team_id::text, 'UTF8'))
      || tokka.audit_field(convert_to(coalesce(connection_id::text, ''), 'UTF8'))
      || tokka.audit_field(convert_to(provider, 'UTF8'))
      || tokka.audit_field(convert_to(action, 'UTF8'))
      || tokka.audit_field(convert_to(outcome, 'UTF8'))
      || tokka.audit_field(convert_to(purpose, 'UTF8'))
      || tokka.audit_field(convert_to(actor, 'UTF8'))
      || tokka.audit_field(convert_to(client_ip, 'UTF8'))
      || tokka.audit_field(convert_to(user_agent, 'UTF8'))
      || tokka.audit_field(convert_to(detail, 'UTF8'))
      || tokka.audit_field(int8send(
           extract(epoch FROM date_trunc('second', created_at AT TIME ZONE 'UTC'))::bigint * 1000000
           + extract(microseconds FROM created_at AT TIME ZONE 'UTC')::bigint % 1000000))
      || tokka.audit_field(convert_to(actor_user_id::text, 'UTF8')))
  END
$$;
-- +goose StatementEnd
GRANT EXECUTE ON FUNCTION tokka.audit_event_hash_v2(bytea, uuid, uuid, text, text, text, text, text, text, text,
                                                    text, timestamptz, uuid)
  TO authenticated, tokka_syncer;

-- The chain trigger of 00011, per team, with the actor's id: taken from
-- the claims for the api's role (whatever it wrote), cleared for the
-- syncer's, kept as given for the owner's definer functions.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tokka.audit_chain() RETURNS trigger
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
    NEW.actor_user_id := tokka.uid();
  ELSIF current_user = 'tokka_syncer' THEN
    IF NEW.action NOT IN ('key.decrypted', 'key.rewrapped', 'sync.succeeded', 'sync.failed',
                          'incident.quarantined', 'incident.notified', 'incident.released')
       OR NOT starts_with(NEW.actor, 'syncer:') OR length(NEW.actor) NOT BETWEEN 8 AND 107 THEN
      RAISE EXCEPTION 'audit_events: the syncer role appends only the syncer''s actions, as syncer:<instance>'
        USING ERRCODE = '42501';
    END IF;
    NEW.actor_user_id := NULL;
  ELSIF NOT coalesce((SELECT r.rolsuper OR pg_catalog.pg_has_role(r.oid, c.relowner, 'USAGE')
                      FROM pg_catalog.pg_roles r, pg_catalog.pg_class c
                      WHERE r.rolname = current_user AND c.oid = 'tokka.audit_events'::pg_catalog.regclass), false) THEN
    RAISE EXCEPTION 'audit_events: only the api, the syncer and the table owner append events'
      USING ERRCODE = '42501';
  END IF;
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'audit_events: append in a READ COMMITTED transaction' USING ERRCODE = '25000';
  END IF;

  PERFORM pg_catalog.pg_advisory_xact_lock(461898, pg_catalog.hashtext(NEW.team_id::text));
  NEW.id := pg_catalog.nextval('tokka.audit_events_id_seq'::pg_catalog.regclass);
  SELECT e.hash, e.created_at INTO v_prev_hash, v_prev_at
  FROM tokka.audit_events e WHERE e.team_id = NEW.team_id ORDER BY e.id DESC LIMIT 1;
  NEW.prev_hash := v_prev_hash;
  NEW.created_at := greatest(pg_catalog.clock_timestamp(), v_prev_at);
  NEW.hash := tokka.audit_event_hash_v2(NEW.prev_hash, NEW.team_id, NEW.connection_id, NEW.provider, NEW.action,
                                        NEW.outcome, NEW.purpose, NEW.actor, NEW.client_ip, NEW.user_agent,
                                        NEW.detail, NEW.created_at, NEW.actor_user_id);
  RETURN NEW;
END
$$;
-- +goose StatementEnd

-- The key and sync functions of 00011, for admins of the connection's team.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tokka.replace_connection_key(p_id uuid, p_label text, p_key_hint text, p_sealed_key text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF tokka.uid() IS NULL THEN
    RAISE EXCEPTION 'replace_connection_key: no user in this transaction' USING ERRCODE = '42501';
  END IF;
  IF p_key_hint IS NULL OR p_sealed_key IS NULL THEN
    RAISE EXCEPTION 'replace_connection_key: a key hint and a sealed key are required' USING ERRCODE = '22023';
  END IF;
  UPDATE tokka.connections c SET
    label = coalesce(p_label, c.label), key_hint = p_key_hint, sealed_key = p_sealed_key,
    key_set_at = now(), status = 'pending', last_error = NULL, next_sync_at = now(), updated_at = now()
  WHERE c.id = p_id AND c.team_id = ANY (tokka.team_ids('admin'));
  RETURN FOUND;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tokka.request_sync(p_id uuid, p_min_interval_seconds double precision)
RETURNS TABLE (outcome text, status text, wait_seconds double precision)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF tokka.uid() IS NULL THEN
    RAISE EXCEPTION 'request_sync: no user in this transaction' USING ERRCODE = '42501';
  END IF;
  IF p_min_interval_seconds IS NULL OR NOT (p_min_interval_seconds BETWEEN 1 AND 31536000) THEN
    RAISE EXCEPTION 'request_sync: the interval must be one second to a year' USING ERRCODE = '22023';
  END IF;
  SELECT c.status,
         extract(epoch FROM c.last_sync_request_at + make_interval(secs => p_min_interval_seconds) - now())
  INTO status, wait_seconds
  FROM tokka.connections c WHERE c.id = p_id AND c.team_id = ANY (tokka.team_ids('admin'))
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

-- The checkpoint of 00011, per team: any member may verify the team's log.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tokka.advance_audit_checkpoint(p_event_id bigint, p_hash bytea)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_team   uuid;
  v_at     bigint;
  v_events bigint;
  v_new    bigint;
BEGIN
  IF tokka.uid() IS NULL THEN
    RAISE EXCEPTION 'advance_audit_checkpoint: no user in this transaction' USING ERRCODE = '42501';
  END IF;
  SELECT e.team_id INTO v_team FROM tokka.audit_events e
  WHERE e.id = p_event_id AND e.team_id = ANY (tokka.team_ids('viewer')) AND e.hash = p_hash;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'advance_audit_checkpoint: the caller has no event with that id and hash' USING ERRCODE = '22023';
  END IF;
  SELECT c.event_id, c.events INTO v_at, v_events
  FROM tokka.audit_checkpoints c WHERE c.team_id = v_team FOR UPDATE;
  IF FOUND AND v_at >= p_event_id THEN
    RETURN v_events;
  END IF;
  SELECT count(*) INTO v_new FROM tokka.audit_events e
  WHERE e.team_id = v_team AND e.id > coalesce(v_at, 0) AND e.id <= p_event_id;
  v_events := coalesce(v_events, 0) + v_new;
  INSERT INTO tokka.audit_checkpoints AS c (team_id, event_id, hash, events, verified_at)
  VALUES (v_team, p_event_id, p_hash, v_events, now())
  ON CONFLICT (team_id) DO UPDATE
    SET event_id = EXCLUDED.event_id, hash = EXCLUDED.hash, events = EXCLUDED.events,
        verified_at = EXCLUDED.verified_at
    WHERE c.event_id < EXCLUDED.event_id;
  RETURN v_events;
END
$$;
-- +goose StatementEnd

-- tokka.team_event appends a team action to the team's chain as the
-- calling user (the trigger above keeps actor_user_id as given for the
-- owner). Not granted to anyone: only the functions below call it.
-- +goose StatementBegin
CREATE FUNCTION tokka.team_event(p_team uuid, p_action text, p_actor text, p_detail text) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO tokka.audit_events (team_id, action, outcome, actor, detail, actor_user_id)
  VALUES (p_team, p_action, 'success', p_actor, p_detail, tokka.uid())
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION tokka.team_event(uuid, text, text, text) FROM PUBLIC;

-- tokka.team_actor checks the actor text the api passes (api:<request id>).
-- +goose StatementBegin
CREATE FUNCTION tokka.team_caller(p_actor text) RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF tokka.uid() IS NULL THEN
    RAISE EXCEPTION 'teams: no user in this transaction' USING ERRCODE = '42501';
  END IF;
  IF p_actor IS NULL OR NOT starts_with(p_actor, 'api:') OR length(p_actor) NOT BETWEEN 5 AND 104 THEN
    RAISE EXCEPTION 'teams: the actor is api:<request id>' USING ERRCODE = '22023';
  END IF;
  RETURN tokka.uid();
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION tokka.team_caller(text) FROM PUBLIC;

-- tokka.claims_email: the caller's email from the verified claims, lower case.
-- +goose StatementBegin
CREATE FUNCTION tokka.claims_email() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT lower(coalesce(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email', ''))
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION tokka.claims_email() FROM PUBLIC;

-- tokka.ensure_personal_team makes the caller's personal team row and their
-- owner membership if they do not exist yet; it returns the team's id.
-- +goose StatementBegin
CREATE FUNCTION tokka.ensure_personal_team() RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_uid uuid := tokka.uid();
BEGIN
  IF v_uid IS NULL THEN
    RAISE EXCEPTION 'ensure_personal_team: no user in this transaction' USING ERRCODE = '42501';
  END IF;
  INSERT INTO tokka.teams (id, name, personal_of) VALUES (v_uid, 'Personal', v_uid)
  ON CONFLICT (id) DO NOTHING;
  INSERT INTO tokka.team_members (team_id, user_id, role, email) VALUES (v_uid, v_uid, 'owner', tokka.claims_email())
  ON CONFLICT (team_id, user_id) DO NOTHING;
  RETURN v_uid;
END
$$;
-- +goose StatementEnd

-- tokka.create_team makes a team with the caller as its only owner and
-- returns its id (drawn here: a caller choosing it could pick someone's
-- personal team id).
-- +goose StatementBegin
CREATE FUNCTION tokka.create_team(p_name text, p_actor text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_uid uuid := tokka.team_caller(p_actor);
  v_id  uuid := gen_random_uuid();
BEGIN
  INSERT INTO tokka.teams (id, name) VALUES (v_id, p_name);
  INSERT INTO tokka.team_members (team_id, user_id, role, email) VALUES (v_id, v_uid, 'owner', tokka.claims_email());
  PERFORM tokka.team_event(v_id, 'team.created', p_actor, p_name);
  RETURN v_id;
END
$$;
-- +goose StatementEnd

-- tokka.rename_team: owners rename their team.
-- +goose StatementBegin
CREATE FUNCTION tokka.rename_team(p_team uuid, p_name text, p_actor text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM tokka.team_caller(p_actor);
  IF NOT p_team = ANY (tokka.team_ids('owner')) THEN
    RETURN false;
  END IF;
  PERFORM tokka.ensure_personal_team() WHERE p_team = tokka.uid();
  UPDATE tokka.teams SET name = p_name WHERE id = p_team;
  PERFORM tokka.team_event(p_team, 'team.renamed', p_actor, p_name);
  RETURN true;
END
$$;
-- +goose StatementEnd

-- tokka.delete_team: an owner deletes a team that holds no connections (its
-- keys are deleted first, each with its own audit event) and is not a
-- personal team. Budgets, alerts, invitations and memberships go with it;
-- the audit log stays (append-only), ending with team.deleted.
-- Returns 'deleted', 'not_found', 'personal' or 'has_connections'.
-- +goose StatementBegin
CREATE FUNCTION tokka.delete_team(p_team uuid, p_actor text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM tokka.team_caller(p_actor);
  IF NOT p_team = ANY (tokka.team_ids('owner')) THEN
    RETURN 'not_found';
  END IF;
  IF p_team = tokka.uid() OR EXISTS (SELECT 1 FROM tokka.teams t WHERE t.id = p_team AND t.personal_of IS NOT NULL) THEN
    RETURN 'personal';
  END IF;
  PERFORM 1 FROM tokka.teams t WHERE t.id = p_team FOR UPDATE;
  IF EXISTS (SELECT 1 FROM tokka.connections c WHERE c.team_id = p_team) THEN
    RETURN 'has_connections';
  END IF;
  DELETE FROM tokka.budgets WHERE team_id = p_team;
  DELETE FROM tokka.alerts WHERE team_id = p_team;
  DELETE FROM tokka.teams WHERE id = p_team;
  PERFORM tokka.team_event(p_team, 'team.deleted', p_actor, '');
  RETURN 'deleted';
END
$$;
-- +goose StatementEnd

-- tokka.change_member: an owner sets member p_user's role (p_role) or
-- removes them (p_role NULL); any member may remove themselves (leave). The
-- team keeps at least one owner, and a personal team keeps its founder as
-- owner. Returns 'changed', 'unchanged', 'not_found' (no such team or
-- member the caller may see), 'forbidden' (not an owner) or 'last_owner'.
-- +goose StatementBegin
CREATE FUNCTION tokka.change_member(p_team uuid, p_user uuid, p_role text, p_actor text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_uid  uuid := tokka.team_caller(p_actor);
  v_role text;
BEGIN
  IF p_role IS NOT NULL AND p_role NOT IN ('owner', 'admin', 'viewer') THEN
    RAISE EXCEPTION 'change_member: a role is owner, admin or viewer' USING ERRCODE = '22023';
  END IF;
  IF NOT p_team = ANY (tokka.team_ids('viewer')) THEN
    RETURN 'not_found';
  END IF;
  PERFORM tokka.ensure_personal_team() WHERE p_team = v_uid;
  -- Serialise changes to one team's members, so two owners cannot demote
  -- each other at once and leave none.
  PERFORM 1 FROM tokka.teams t WHERE t.id = p_team FOR UPDATE;
  SELECT m.role INTO v_role FROM tokka.team_members m WHERE m.team_id = p_team AND m.user_id = p_user;
  IF NOT FOUND THEN
    RETURN 'not_found';
  END IF;
  IF NOT (p_team = ANY (tokka.team_ids('owner')) OR (p_user = v_uid AND p_role IS NULL)) THEN
    RETURN 'forbidden';
  END IF;
  IF v_role IS NOT DISTINCT FROM p_role THEN
    RETURN 'unchanged';
  END IF;
  IF v_role = 'owner' AND (p_user = p_team
                           OR NOT EXISTS (SELECT 1 FROM tokka.team_members m
                                          WHERE m.team_id = p_team AND m.role = 'owner' AND m.user_id <> p_user)) THEN
    RETURN 'last_owner';
  END IF;
  IF p_role IS NULL THEN
    DELETE FROM tokka.team_members WHERE team_id = p_team AND user_id = p_user;
    PERFORM tokka.team_event(p_team, 'member.removed', p_actor, 'user ' || p_user::text || ' (' || v_role || ')');
  ELSE
    UPDATE tokka.team_members SET role = p_role, updated_at = now() WHERE team_id = p_team AND user_id = p_user;
    PERFORM tokka.team_event(p_team, 'member.role_changed', p_actor,
                             'user ' || p_user::text || ': ' || v_role || ' to ' || p_role);
  END IF;
  RETURN 'changed';
END
$$;
-- +goose StatementEnd

-- tokka.create_invitation: an admin or owner invites p_email as p_role
-- (only owners invite owners). The api makes the id and the token, and
-- passes the token's SHA-256 and the token sealed to the syncer (to mail).
-- Returns when it expires, or NULL when the caller may not invite to this
-- team.
-- +goose StatementBegin
CREATE FUNCTION tokka.create_invitation(p_id uuid, p_team uuid, p_email text, p_role text, p_token_hash bytea,
                                        p_token_sealed text, p_ttl_seconds integer, p_actor text)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_uid     uuid := tokka.team_caller(p_actor);
  v_expires timestamptz;
BEGIN
  IF p_role IS NULL OR p_role NOT IN ('owner', 'admin', 'viewer') THEN
    RAISE EXCEPTION 'create_invitation: a role is owner, admin or viewer' USING ERRCODE = '22023';
  END IF;
  IF p_ttl_seconds IS NULL OR p_ttl_seconds NOT BETWEEN 60 AND 2592000 THEN
    RAISE EXCEPTION 'create_invitation: an invitation lasts a minute to 30 days' USING ERRCODE = '22023';
  END IF;
  IF NOT p_team = ANY (tokka.team_ids(CASE WHEN p_role = 'owner' THEN 'owner' ELSE 'admin' END)) THEN
    RETURN NULL;
  END IF;
  PERFORM tokka.ensure_personal_team() WHERE p_team = v_uid;
  v_expires := now() + make_interval(secs => p_ttl_seconds);
  INSERT INTO tokka.team_invitations (id, team_id, email, role, token_hash, token_sealed, invited_by, expires_at)
  VALUES (p_id, p_team, lower(p_email), p_role, p_token_hash, p_token_sealed, v_uid, v_expires);
  -- The invitee's address stays in the invitations table (admins); the
  -- log, which every member reads, names the invitation and the role.
  PERFORM tokka.team_event(p_team, 'invitation.created', p_actor, 'invitation ' || p_id::text || ' as ' || p_role);
  RETURN v_expires;
END
$$;
-- +goose StatementEnd

-- tokka.revoke_invitation: an admin or owner of its team revokes an
-- invitation not yet accepted. Returns false when there is none to revoke.
-- +goose StatementBegin
CREATE FUNCTION tokka.revoke_invitation(p_team uuid, p_id uuid, p_actor text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM tokka.team_caller(p_actor);
  UPDATE tokka.team_invitations i SET revoked_at = now()
  WHERE i.id = p_id AND i.team_id = p_team AND i.team_id = ANY (tokka.team_ids('admin'))
    AND i.accepted_at IS NULL AND i.revoked_at IS NULL;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  PERFORM tokka.team_event(p_team, 'invitation.revoked', p_actor, 'invitation ' || p_id::text);
  RETURN true;
END
$$;
-- +goose StatementEnd

-- tokka.accept_invitation: the caller accepts the invitation whose token
-- hashes to p_token_hash, once, before it expires, when the invitation's
-- email is the one in the caller's verified claims (the api has also asked
-- the Auth server that it is confirmed). Returns the team id and role, or
-- one row with outcome 'not_found' (unknown, used, revoked or expired: a
-- caller learns nothing about which) or 'wrong_email'.
-- +goose StatementBegin
CREATE FUNCTION tokka.accept_invitation(p_token_hash bytea, p_actor text)
RETURNS TABLE (outcome text, team_id uuid, role text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_uid  uuid := tokka.team_caller(p_actor);
  v_inv  tokka.team_invitations%ROWTYPE;
  v_had  text;
BEGIN
  SELECT * INTO v_inv FROM tokka.team_invitations i WHERE i.token_hash = p_token_hash FOR UPDATE;
  IF NOT FOUND OR v_inv.accepted_at IS NOT NULL OR v_inv.revoked_at IS NOT NULL OR v_inv.expires_at <= now() THEN
    outcome := 'not_found';
    RETURN NEXT;
    RETURN;
  END IF;
  IF v_inv.email <> tokka.claims_email() THEN
    outcome := 'wrong_email';
    RETURN NEXT;
    RETURN;
  END IF;
  UPDATE tokka.team_invitations SET accepted_at = now(), accepted_by = v_uid WHERE id = v_inv.id;
  SELECT m.role INTO v_had FROM tokka.team_members m WHERE m.team_id = v_inv.team_id AND m.user_id = v_uid;
  IF v_had IS NULL THEN
    INSERT INTO tokka.team_members (team_id, user_id, role, email)
    VALUES (v_inv.team_id, v_uid, v_inv.role, tokka.claims_email());
    v_had := v_inv.role;
  ELSIF NOT tokka.role_at_least(v_had, v_inv.role) THEN
    -- An invitation never lowers a role the member already has.
    UPDATE tokka.team_members m SET role = v_inv.role, updated_at = now()
    WHERE m.team_id = v_inv.team_id AND m.user_id = v_uid;
    v_had := v_inv.role;
  END IF;
  PERFORM tokka.team_event(v_inv.team_id, 'invitation.accepted', p_actor,
                           'invitation ' || v_inv.id::text || ': user ' || v_uid::text || ' joined as ' || v_had);
  outcome := 'accepted';
  team_id := v_inv.team_id;
  role := v_had;
  RETURN NEXT;
END
$$;
-- +goose StatementEnd

-- tokka.rate_limit_team_hit counts one request against team p_team's
-- bucket in scope, in the fixed window of p_window_seconds, like
-- tokka.rate_limit_hit (00003) does for users and addresses: a team's
-- members share its budget. Only a member may spend it, so no one can
-- exhaust a team they are not in.
-- +goose StatementBegin
CREATE FUNCTION tokka.rate_limit_team_hit(p_scope text, p_team uuid, p_limit integer, p_window_seconds integer)
RETURNS TABLE (bucket text, hits integer, max_hits integer, reset_seconds integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now   timestamptz := clock_timestamp();
  v_start timestamptz;
  v_seen  timestamptz;
BEGIN
  IF p_scope IS NULL OR p_scope !~ '^[a-z][a-z_]{0,31}$' THEN
    RAISE EXCEPTION 'rate_limit_team_hit: invalid scope' USING ERRCODE = '22023';
  END IF;
  IF p_window_seconds IS NULL OR p_window_seconds NOT BETWEEN 1 AND 86400 OR coalesce(p_limit, 0) < 1 THEN
    RAISE EXCEPTION 'rate_limit_team_hit: window must be 1 to 86400 seconds, the limit positive' USING ERRCODE = '22023';
  END IF;
  IF p_team IS NULL OR NOT p_team = ANY (tokka.team_ids('viewer')) THEN
    RAISE EXCEPTION 'rate_limit_team_hit: the caller is not a member of the team' USING ERRCODE = '42501';
  END IF;
  v_start := to_timestamp(floor(extract(epoch FROM v_now) / p_window_seconds) * p_window_seconds);
  INSERT INTO tokka.rate_limits AS r (bucket_key, window_start, hit_count)
  VALUES (p_scope || ':team:' || p_team::text, v_start, 1)
  ON CONFLICT (bucket_key) DO UPDATE
    SET hit_count = CASE WHEN EXCLUDED.window_start > r.window_start THEN 1 ELSE r.hit_count + 1 END,
        window_start = greatest(r.window_start, EXCLUDED.window_start)
  RETURNING r.hit_count, r.window_start INTO hits, v_seen;
  bucket := 'team';
  max_hits := p_limit;
  reset_seconds := greatest(1, ceil(extract(epoch FROM (v_seen + make_interval(secs => p_window_seconds) - v_now)))::integer);
  RETURN NEXT;
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION tokka.rate_limit_team_hit(text, uuid, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tokka.rate_limit_team_hit(text, uuid, integer, integer) TO authenticated;

REVOKE ALL ON FUNCTION tokka.ensure_personal_team(), tokka.create_team(text, text),
  tokka.rename_team(uuid, text, text), tokka.delete_team(uuid, text),
  tokka.change_member(uuid, uuid, text, text),
  tokka.create_invitation(uuid, uuid, text, text, bytea, text, integer, text),
  tokka.revoke_invitation(uuid, uuid, text), tokka.accept_invitation(bytea, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tokka.ensure_personal_team(), tokka.create_team(text, text),
  tokka.rename_team(uuid, text, text), tokka.delete_team(uuid, text),
  tokka.change_member(uuid, uuid, text, text),
  tokka.create_invitation(uuid, uuid, text, text, bytea, text, integer, text),
  tokka.revoke_invitation(uuid, uuid, text), tokka.accept_invitation(bytea, text) TO authenticated;

-- +goose Down
-- Back to one owner per row: a team's rows go back to the user whose
-- personal team it is; rows of other teams keep the team's id, which no
-- user has, so nobody sees them (a Down is for development databases).
DROP FUNCTION tokka.rate_limit_team_hit(text, uuid, integer, integer);
DROP FUNCTION tokka.accept_invitation(bytea, text);
DROP FUNCTION tokka.revoke_invitation(uuid, uuid, text);
DROP FUNCTION tokka.create_invitation(uuid, uuid, text, text, bytea, text, integer, text);
DROP FUNCTION tokka.change_member(uuid, uuid, text, text);
DROP FUNCTION tokka.delete_team(uuid, text);
DROP FUNCTION tokka.rename_team(uuid, text, text);
DROP FUNCTION tokka.create_team(text, text);
DROP FUNCTION tokka.ensure_personal_team();
DROP FUNCTION tokka.claims_email();
DROP FUNCTION tokka.team_caller(text);
DROP FUNCTION tokka.team_event(uuid, text, text, text);

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tokka.audit_chain() RETURNS trigger
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

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tokka.replace_connection_key(p_id uuid, p_label text, p_key_hint text, p_sealed_key text)
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

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tokka.request_sync(p_id uuid, p_min_interval_seconds double precision)
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

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tokka.advance_audit_checkpoint(p_event_id bigint, p_hash bytea)
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

DROP FUNCTION tokka.audit_event_hash_v2(bytea, uuid, uuid, text, text, text, text, text, text, text, text,
                                        timestamptz, uuid);
ALTER TABLE tokka.audit_events DROP COLUMN actor_user_id;

DROP POLICY audit_checkpoints_read ON tokka.audit_checkpoints;
DROP POLICY audit_append ON tokka.audit_events;
DROP POLICY audit_read ON tokka.audit_events;
DROP POLICY alerts_raise ON tokka.alerts;
DROP POLICY alerts_acknowledge ON tokka.alerts;
DROP POLICY alerts_read ON tokka.alerts;
DROP POLICY budget_deliveries_read ON tokka.budget_deliveries;
DROP POLICY budgets_remove ON tokka.budgets;
DROP POLICY budgets_change ON tokka.budgets;
DROP POLICY budgets_add ON tokka.budgets;
DROP POLICY budgets_read ON tokka.budgets;
DROP POLICY directory_keys_read ON tokka.directory_keys;
DROP POLICY directory_projects_read ON tokka.directory_projects;
DROP POLICY spend_daily_read ON tokka.spend_daily;
DROP POLICY cost_monthly_read ON tokka.cost_monthly;
DROP POLICY usage_monthly_read ON tokka.usage_monthly;
DROP POLICY cost_read ON tokka.cost_daily;
DROP POLICY usage_read ON tokka.usage_daily;
DROP POLICY connections_remove ON tokka.connections;
DROP POLICY connections_change ON tokka.connections;
DROP POLICY connections_add ON tokka.connections;
DROP POLICY connections_read ON tokka.connections;
DROP POLICY alerts_definer ON tokka.alerts;
DROP POLICY budgets_definer ON tokka.budgets;
DROP POLICY audit_events_definer_insert ON tokka.audit_events;
DROP TABLE tokka.team_invitations;
DROP TABLE tokka.team_members;
DROP TABLE tokka.teams;
DROP FUNCTION tokka.team_ids(text);
DROP FUNCTION tokka.role_at_least(text, text);

ALTER TABLE tokka.connections        RENAME COLUMN team_id TO user_id;
ALTER TABLE tokka.usage_daily        RENAME COLUMN team_id TO user_id;
ALTER TABLE tokka.cost_daily         RENAME COLUMN team_id TO user_id;
ALTER TABLE tokka.usage_monthly      RENAME COLUMN team_id TO user_id;
ALTER TABLE tokka.cost_monthly       RENAME COLUMN team_id TO user_id;
ALTER TABLE tokka.spend_daily        RENAME COLUMN team_id TO user_id;
ALTER TABLE tokka.directory_projects RENAME COLUMN team_id TO user_id;
ALTER TABLE tokka.directory_keys     RENAME COLUMN team_id TO user_id;
ALTER TABLE tokka.budgets            RENAME COLUMN team_id TO user_id;
ALTER TABLE tokka.budget_deliveries  RENAME COLUMN team_id TO user_id;
ALTER TABLE tokka.alerts             RENAME COLUMN team_id TO user_id;
ALTER TABLE tokka.audit_events       RENAME COLUMN team_id TO user_id;
ALTER TABLE tokka.audit_checkpoints  RENAME COLUMN team_id TO user_id;

CREATE POLICY connections_owner ON tokka.connections TO authenticated
  USING (user_id = (SELECT tokka.uid())) WITH CHECK (user_id = (SELECT tokka.uid()));
CREATE POLICY usage_owner ON tokka.usage_daily FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY cost_owner ON tokka.cost_daily FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY usage_monthly_owner ON tokka.usage_monthly FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY cost_monthly_owner ON tokka.cost_monthly FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY spend_daily_owner ON tokka.spend_daily FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY directory_projects_owner ON tokka.directory_projects FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY directory_keys_owner ON tokka.directory_keys FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY budgets_owner ON tokka.budgets TO authenticated
  USING (user_id = (SELECT tokka.uid()))
  WITH CHECK (user_id = (SELECT tokka.uid())
              AND (budgets.connection_id IS NULL
                   OR EXISTS (SELECT 1 FROM tokka.connections c WHERE c.id = budgets.connection_id)));
CREATE POLICY budget_deliveries_owner ON tokka.budget_deliveries FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
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
CREATE POLICY audit_owner_read ON tokka.audit_events FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY audit_owner_insert ON tokka.audit_events FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT tokka.uid()));
CREATE POLICY audit_checkpoints_owner_read ON tokka.audit_checkpoints FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
