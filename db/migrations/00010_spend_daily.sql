-- Daily spend per connection (all models and projects added up), maintained
-- with the monthly rollups by the syncer. The usage summary reads a few
-- dozen of these rows per user instead of thousands of cost lines.

-- +goose Up
CREATE TABLE tokka.spend_daily (
  connection_id  uuid NOT NULL REFERENCES tokka.connections (id) ON DELETE CASCADE,
  user_id        uuid NOT NULL,
  provider       text NOT NULL,
  day            date NOT NULL,
  amount_usd     numeric NOT NULL,
  PRIMARY KEY (connection_id, day)
);
CREATE INDEX spend_daily_user_idx ON tokka.spend_daily (user_id, day);

ALTER TABLE tokka.spend_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.spend_daily FORCE ROW LEVEL SECURITY;
CREATE POLICY spend_daily_owner ON tokka.spend_daily FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));
CREATE POLICY spend_daily_syncer ON tokka.spend_daily TO tokka_syncer USING (true) WITH CHECK (true);
GRANT SELECT ON tokka.spend_daily TO authenticated;
GRANT SELECT, INSERT, DELETE ON tokka.spend_daily TO tokka_syncer;

INSERT INTO tokka.spend_daily
SELECT connection_id, user_id, provider, day, sum(amount_usd)
FROM tokka.cost_daily GROUP BY connection_id, user_id, provider, day;

-- +goose Down
DROP TABLE tokka.spend_daily;
