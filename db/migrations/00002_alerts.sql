-- Alerts a user sees in GET /v1/alerts: budget thresholds, forecasts, spend
-- anomalies, key-access anomalies and key-rotation reminders. dedup_key makes
-- raising idempotent: each (user, dedup_key) fires once, whoever raises it
-- and however often.

-- +goose Up
CREATE TABLE tokka.alerts (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id         uuid NOT NULL,
  kind            text NOT NULL CHECK (kind IN ('budget_threshold', 'budget_forecast', 'spend_anomaly',
                                                'key_access', 'key_rotation')),
  severity        text NOT NULL DEFAULT 'warning' CHECK (severity IN ('info', 'warning', 'critical')),
  connection_id   uuid REFERENCES tokka.connections (id) ON DELETE CASCADE,
  dedup_key       text NOT NULL,
  title           text NOT NULL,
  detail          jsonb NOT NULL DEFAULT '{}',
  created_at      timestamptz NOT NULL DEFAULT now(),
  acknowledged_at timestamptz,
  UNIQUE (user_id, dedup_key)
);
CREATE INDEX alerts_user_idx ON tokka.alerts (user_id, id DESC);

ALTER TABLE tokka.alerts ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.alerts FORCE ROW LEVEL SECURITY;
CREATE POLICY alerts_owner ON tokka.alerts TO authenticated
  USING (user_id = (SELECT tokka.uid())) WITH CHECK (user_id = (SELECT tokka.uid()));
CREATE POLICY alerts_syncer ON tokka.alerts TO tokka_syncer USING (true) WITH CHECK (true);

-- Users read their alerts, acknowledge them, and the api raises the ones it
-- sees (e.g. sync-now spikes); they cannot rewrite what an alert says.
GRANT SELECT, INSERT ON tokka.alerts TO authenticated;
GRANT UPDATE (acknowledged_at) ON tokka.alerts TO authenticated;
GRANT SELECT, INSERT ON tokka.alerts TO tokka_syncer;

-- +goose Down
DROP TABLE tokka.alerts;
