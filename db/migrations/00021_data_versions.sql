-- Data versions: a number on each connection that changes whenever anything
-- a usage answer is computed from changes, so the api can keep the answers
-- it computed and know, with one small query under the caller's claims,
-- whether they still hold.
--
-- connections.data_version is drawn from one sequence: on insert, on
-- every update of the connection row, and whenever a statement
-- writes or deletes the connection's usage, cost, rollup or directory rows
-- (a statement trigger per table finds the connections in its transition
-- table). A user's data version is then (count of their connections, max
-- of their data_version): a connection added or changed gets a number above
-- every earlier one, and one removed lowers the count, so no two different
-- states of a user's data share a version.
--
-- The triggers are the only writers of the column. They run as the owner
-- (SECURITY DEFINER, search_path pinned, every name qualified), so neither
-- authenticated nor tokka_syncer needs any privilege on the sequence or the
-- column; authenticated may read it, like the rest of its own connections.
-- A syncer writing rows already holds its connection's row lock (the
-- lease), so bumping that row adds no waiting.

-- +goose Up
CREATE SEQUENCE tokka.data_version_seq;
ALTER TABLE tokka.connections
  ADD COLUMN data_version bigint NOT NULL DEFAULT nextval('tokka.data_version_seq');
-- Existing rows drew their numbers above; from now on the trigger draws
-- them (as the owner), so no application role needs the sequence.
ALTER TABLE tokka.connections ALTER COLUMN data_version SET DEFAULT 0;
GRANT SELECT (data_version) ON tokka.connections TO authenticated;

-- +goose StatementBegin
CREATE FUNCTION tokka.connection_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  NEW.data_version := nextval('tokka.data_version_seq');
  RETURN NEW;
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION tokka.connection_changed() FROM PUBLIC;
CREATE TRIGGER connections_data_version BEFORE INSERT OR UPDATE ON tokka.connections
  FOR EACH ROW EXECUTE FUNCTION tokka.connection_changed();

-- +goose StatementBegin
CREATE FUNCTION tokka.rows_changed() RETURNS trigger
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
REVOKE ALL ON FUNCTION tokka.rows_changed() FROM PUBLIC;

-- +goose StatementBegin
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['usage_daily', 'cost_daily', 'usage_monthly', 'cost_monthly', 'spend_daily',
                           'directory_projects', 'directory_keys'] LOOP
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON tokka.%I REFERENCING NEW TABLE AS changed '
                   'FOR EACH STATEMENT EXECUTE FUNCTION tokka.rows_changed()', t || '_inserted', t);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON tokka.%I REFERENCING NEW TABLE AS changed '
                   'FOR EACH STATEMENT EXECUTE FUNCTION tokka.rows_changed()', t || '_updated', t);
    EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON tokka.%I REFERENCING OLD TABLE AS changed '
                   'FOR EACH STATEMENT EXECUTE FUNCTION tokka.rows_changed()', t || '_deleted', t);
  END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['usage_daily', 'cost_daily', 'usage_monthly', 'cost_monthly', 'spend_daily',
                           'directory_projects', 'directory_keys'] LOOP
    EXECUTE format('DROP TRIGGER %I ON tokka.%I', t || '_inserted', t);
    EXECUTE format('DROP TRIGGER %I ON tokka.%I', t || '_updated', t);
    EXECUTE format('DROP TRIGGER %I ON tokka.%I', t || '_deleted', t);
  END LOOP;
END
$$;
-- +goose StatementEnd
DROP FUNCTION tokka.rows_changed();
DROP TRIGGER connections_data_version ON tokka.connections;
DROP FUNCTION tokka.connection_changed();
ALTER TABLE tokka.connections DROP COLUMN data_version;
DROP SEQUENCE tokka.data_version_seq;
