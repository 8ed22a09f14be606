-- Monthly rollups of usage_daily and cost_daily, maintained by the syncer in
-- the same transaction that replaces a window of daily rows. Dashboards that
-- group by month, provider, model, … over long ranges read whole months from
-- here and only the partial edge months from the daily tables: a year by
-- month touches ~12 rows per group instead of ~365.
--
-- `day` is the first day of the month (so the same grouping expressions work
-- on both), `last_day` the latest day that has data (for the provisional flag).

-- +goose Up
CREATE TABLE tokka.usage_monthly (
  connection_id          uuid NOT NULL REFERENCES tokka.connections (id) ON DELETE CASCADE,
  user_id                uuid NOT NULL,
  provider               text NOT NULL,
  day                    date NOT NULL CHECK (extract(day FROM day) = 1),
  last_day               date NOT NULL,
  model                  text NOT NULL,
  project_id             text NOT NULL,
  api_key_id             text NOT NULL,
  service_tier           text NOT NULL,
  input_uncached_tokens  bigint NOT NULL,
  cache_read_tokens      bigint NOT NULL,
  cache_write_5m_tokens  bigint NOT NULL,
  cache_write_1h_tokens  bigint NOT NULL,
  output_tokens          bigint NOT NULL,
  requests               bigint NOT NULL
);
CREATE INDEX usage_monthly_user_idx ON tokka.usage_monthly (user_id, day);
CREATE INDEX usage_monthly_conn_idx ON tokka.usage_monthly (connection_id, day);

CREATE TABLE tokka.cost_monthly (
  connection_id  uuid NOT NULL REFERENCES tokka.connections (id) ON DELETE CASCADE,
  user_id        uuid NOT NULL,
  provider       text NOT NULL,
  day            date NOT NULL CHECK (extract(day FROM day) = 1),
  last_day       date NOT NULL,
  model          text NOT NULL,
  project_id     text NOT NULL,
  api_key_id     text NOT NULL,
  amount_usd     numeric NOT NULL
);
CREATE INDEX cost_monthly_user_idx ON tokka.cost_monthly (user_id, day);
CREATE INDEX cost_monthly_conn_idx ON tokka.cost_monthly (connection_id, day);

ALTER TABLE tokka.usage_monthly ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.usage_monthly FORCE ROW LEVEL SECURITY;
ALTER TABLE tokka.cost_monthly ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.cost_monthly FORCE ROW LEVEL SECURITY;
CREATE POLICY usage_monthly_owner ON tokka.usage_monthly FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY cost_monthly_owner ON tokka.cost_monthly FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY usage_monthly_syncer ON tokka.usage_monthly TO tokka_syncer USING (true) WITH CHECK (true);
CREATE POLICY cost_monthly_syncer ON tokka.cost_monthly TO tokka_syncer USING (true) WITH CHECK (true);
GRANT SELECT ON tokka.usage_monthly, tokka.cost_monthly TO authenticated;
GRANT SELECT, INSERT, DELETE ON tokka.usage_monthly, tokka.cost_monthly TO tokka_syncer;

-- Existing daily rows (an upgrade) get their rollups now.
INSERT INTO tokka.usage_monthly
SELECT connection_id, user_id, provider, date_trunc('month', day)::date, max(day), model, project_id,
       api_key_id, service_tier, sum(input_uncached_tokens), sum(cache_read_tokens),
       sum(cache_write_5m_tokens), sum(cache_write_1h_tokens), sum(output_tokens), sum(requests)
FROM tokka.usage_daily
GROUP BY connection_id, user_id, provider, date_trunc('month', day), model, project_id, api_key_id, service_tier;
INSERT INTO tokka.cost_monthly
SELECT connection_id, user_id, provider, date_trunc('month', day)::date, max(day), model, project_id,
       api_key_id, sum(amount_usd)
FROM tokka.cost_daily
GROUP BY connection_id, user_id, provider, date_trunc('month', day), model, project_id, api_key_id;

-- +goose Down
DROP TABLE tokka.cost_monthly;
DROP TABLE tokka.usage_monthly;
