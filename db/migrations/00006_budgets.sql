-- Monthly budgets and the notifications they send.
--
-- A budget watches month-to-date spend (sum of cost_daily.amount_usd in the
-- current UTC month) for a scope: everything, one provider, or one of the
-- user's connections. When spend crosses one of its percent thresholds, or
-- the month-end forecast is projected to exceed one, the syncer raises an
-- alert (tokka.alerts, whose (user, dedup_key) uniqueness makes each
-- (budget, threshold, month, amount) fire once) and queues one delivery per
-- configured channel here, in the same transaction (an outbox), so a crash
-- between the two can neither lose nor duplicate a notification.

-- +goose Up
CREATE TABLE tokka.budgets (
  id                  uuid PRIMARY KEY,
  user_id             uuid NOT NULL,
  name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  -- Money is numeric, never float.
  amount_usd          numeric NOT NULL CHECK (amount_usd > 0 AND amount_usd < 1000000000000),
  scope               text NOT NULL CHECK (scope IN ('all', 'provider', 'connection')),
  provider            text CHECK (provider IN ('openai', 'anthropic')),
  -- A budget on a connection goes with it.
  connection_id       uuid REFERENCES tokka.connections (id) ON DELETE CASCADE,
  thresholds          integer[] NOT NULL DEFAULT '{}'
                      CHECK (cardinality(thresholds) <= 10 AND 1 <= ALL (thresholds) AND 1000 >= ALL (thresholds)),
  forecast_thresholds integer[] NOT NULL DEFAULT '{}'
                      CHECK (cardinality(forecast_thresholds) <= 10 AND 1 <= ALL (forecast_thresholds)
                             AND 1000 >= ALL (forecast_thresholds)),
  webhook_url         text CHECK (length(webhook_url) <= 2048),
  -- The HMAC key webhooks are signed with. It must be recoverable to sign,
  -- so it is stored, but role authenticated cannot SELECT it (column grants
  -- below): it is shown once, in the response that created or rotated it.
  webhook_secret      text NOT NULL CHECK (webhook_secret ~ '^whsec_[0-9a-f]{64}$'),
  -- The email channel's recipient: the caller's token email when they turned
  -- the channel on; NULL when it is off.
  email_to            text CHECK (length(email_to) <= 320),
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  CHECK ((scope = 'all' AND provider IS NULL AND connection_id IS NULL)
      OR (scope = 'provider' AND provider IS NOT NULL AND connection_id IS NULL)
      OR (scope = 'connection' AND provider IS NULL AND connection_id IS NOT NULL))
);
CREATE INDEX budgets_user_idx ON tokka.budgets (user_id, created_at);
CREATE INDEX budgets_connection_idx ON tokka.budgets (connection_id) WHERE connection_id IS NOT NULL;

-- One row per (alert, channel): what was (or will be) sent, and how it went.
-- The body is rebuilt from the alert at send time, so nothing here holds a
-- secret or a destination.
CREATE TABLE tokka.budget_deliveries (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id          uuid NOT NULL,
  budget_id        uuid NOT NULL REFERENCES tokka.budgets (id) ON DELETE CASCADE,
  alert_id         bigint NOT NULL REFERENCES tokka.alerts (id) ON DELETE CASCADE,
  channel          text NOT NULL CHECK (channel IN ('webhook', 'email')),
  status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
  attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  response_status  integer,
  -- A caller-safe reason (never a response body, URL or address).
  last_error       text CHECK (length(last_error) <= 300),
  claimed_by       text,
  claim_expires_at timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz,
  UNIQUE (alert_id, channel)
);
CREATE INDEX budget_deliveries_budget_idx ON tokka.budget_deliveries (budget_id, id DESC);
CREATE INDEX budget_deliveries_due_idx ON tokka.budget_deliveries (user_id, id)
  WHERE status IN ('pending', 'sending');

ALTER TABLE tokka.budgets ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.budgets FORCE ROW LEVEL SECURITY;
ALTER TABLE tokka.budget_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.budget_deliveries FORCE ROW LEVEL SECURITY;

-- A user's budgets are theirs alone, and a connection-scoped budget must
-- point at one of their own connections: the EXISTS runs as the caller, so
-- the connections policy hides everyone else's. (A foreign key alone would
-- not do: referential checks bypass row-level security.)
CREATE POLICY budgets_owner ON tokka.budgets TO authenticated
  USING (user_id = (SELECT tokka.uid()))
  WITH CHECK (user_id = (SELECT tokka.uid())
              AND (budgets.connection_id IS NULL
                   OR EXISTS (SELECT 1 FROM tokka.connections c WHERE c.id = budgets.connection_id)));
CREATE POLICY budget_deliveries_owner ON tokka.budget_deliveries FOR SELECT TO authenticated
  USING (user_id = (SELECT tokka.uid()));

-- The syncer evaluates every user's budgets: it reads them (secret included,
-- to sign) but never changes them; it queues deliveries and records how they
-- went.
CREATE POLICY budgets_syncer ON tokka.budgets FOR SELECT TO tokka_syncer USING (true);
CREATE POLICY budget_deliveries_syncer_read ON tokka.budget_deliveries FOR SELECT TO tokka_syncer USING (true);
CREATE POLICY budget_deliveries_syncer_insert ON tokka.budget_deliveries FOR INSERT TO tokka_syncer WITH CHECK (true);
CREATE POLICY budget_deliveries_syncer_update ON tokka.budget_deliveries FOR UPDATE TO tokka_syncer
  USING (true) WITH CHECK (true);

REVOKE ALL ON tokka.budgets, tokka.budget_deliveries FROM PUBLIC;
GRANT SELECT (id, user_id, name, amount_usd, scope, provider, connection_id, thresholds,
              forecast_thresholds, webhook_url, email_to, created_at, updated_at)
  ON tokka.budgets TO authenticated;
GRANT INSERT (id, user_id, name, amount_usd, scope, provider, connection_id, thresholds,
              forecast_thresholds, webhook_url, webhook_secret, email_to)
  ON tokka.budgets TO authenticated;
GRANT UPDATE (name, amount_usd, thresholds, forecast_thresholds, webhook_url, webhook_secret,
              email_to, updated_at)
  ON tokka.budgets TO authenticated;
GRANT DELETE ON tokka.budgets TO authenticated;
GRANT SELECT ON tokka.budget_deliveries TO authenticated;

GRANT SELECT ON tokka.budgets TO tokka_syncer;
GRANT SELECT, INSERT ON tokka.budget_deliveries TO tokka_syncer;
GRANT UPDATE (status, attempts, response_status, last_error, claimed_by, claim_expires_at,
              updated_at, delivered_at)
  ON tokka.budget_deliveries TO tokka_syncer;

-- +goose Down
DROP TABLE tokka.budget_deliveries;
DROP TABLE tokka.budgets;
