-- The directory of each connection's provider organisation: its projects
-- (OpenAI) or workspaces (Anthropic) and its API and admin keys, read by the
-- syncer in the same sync as the usage. Ids are the identity; names are the
-- latest the provider reported. A project or key that disappears keeps its
-- row, so the usage it left behind keeps its name.
--
-- Keys are stored only as the provider's own redacted value (redacted_hint,
-- at most 64 characters): never the key. Rows follow the other per-user
-- tables: the owner reads them as authenticated, the syncer writes them.
--
-- connections.directory_unavailable lists the directory parts the key was
-- refused (a key restricted to usage reads): the sync still succeeds.

-- +goose Up
CREATE TABLE tokka.directory_projects (
  connection_id uuid NOT NULL REFERENCES tokka.connections (id) ON DELETE CASCADE,
  user_id       uuid NOT NULL,
  provider      text NOT NULL,
  id            text NOT NULL CHECK (length(id) BETWEEN 1 AND 200),
  kind          text NOT NULL CHECK (kind IN ('project', 'workspace')),
  name          text NOT NULL CHECK (length(name) <= 1000),
  archived      boolean NOT NULL,
  seen_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (connection_id, id)
);
CREATE INDEX directory_projects_user_idx ON tokka.directory_projects (user_id, id);

CREATE TABLE tokka.directory_keys (
  connection_id uuid NOT NULL REFERENCES tokka.connections (id) ON DELETE CASCADE,
  user_id       uuid NOT NULL,
  provider      text NOT NULL,
  id            text NOT NULL CHECK (length(id) BETWEEN 1 AND 200),
  admin         boolean NOT NULL,
  name          text NOT NULL CHECK (length(name) <= 1000),
  redacted_hint text NOT NULL CHECK (length(redacted_hint) <= 64),
  created_at    timestamptz,
  last_used_at  timestamptz,
  status        text NOT NULL CHECK (length(status) <= 40),
  project_id    text NOT NULL CHECK (length(project_id) <= 200),
  seen_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (connection_id, id)
);
CREATE INDEX directory_keys_user_idx ON tokka.directory_keys (user_id, id);

ALTER TABLE tokka.directory_projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.directory_projects FORCE ROW LEVEL SECURITY;
ALTER TABLE tokka.directory_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.directory_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY directory_projects_owner ON tokka.directory_projects FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY directory_keys_owner ON tokka.directory_keys FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY directory_projects_syncer ON tokka.directory_projects TO tokka_syncer USING (true) WITH CHECK (true);
CREATE POLICY directory_keys_syncer ON tokka.directory_keys TO tokka_syncer USING (true) WITH CHECK (true);
GRANT SELECT ON tokka.directory_projects, tokka.directory_keys TO authenticated;
GRANT SELECT, INSERT, UPDATE ON tokka.directory_projects, tokka.directory_keys TO tokka_syncer;

ALTER TABLE tokka.connections
  ADD COLUMN directory_unavailable text[] NOT NULL DEFAULT '{}'
    CHECK (directory_unavailable <@ ARRAY['projects', 'workspaces', 'api_keys', 'admin_keys']);
GRANT SELECT (directory_unavailable) ON tokka.connections TO authenticated;
GRANT UPDATE (directory_unavailable) ON tokka.connections TO tokka_syncer;

-- +goose Down
-- Dropping the column drops its column privileges too.
ALTER TABLE tokka.connections DROP COLUMN directory_unavailable;
DROP TABLE tokka.directory_keys;
DROP TABLE tokka.directory_projects;
