-- A budget may notify a Slack channel through a Slack incoming webhook.
--
-- The webhook URL is the credential: whoever has it can post to the
-- channel. So it is handled like webhook_secret: role authenticated may
-- write it but not read it back; the api shows slack_url_hint instead, a
-- generated column that keeps only the last four characters of the token,
-- so the mask is computed in exactly one place and can never disagree with
-- the URL it stands for. The syncer reads the URL to send.
--
-- The CHECK repeats the api's rule (notify.CheckSlackURL) so that nothing
-- but an https://hooks.slack.com/services/… URL is ever stored.

-- +goose Up
ALTER TABLE tokka.budgets
  ADD COLUMN slack_url text
    CHECK (length(slack_url) <= 2048
           AND slack_url ~ '^https://hooks\.slack\.com/services/[A-Z0-9]{1,32}/[A-Z0-9]{1,32}/[A-Za-z0-9]{8,64}$'),
  ADD COLUMN slack_url_hint text
    GENERATED ALWAYS AS (regexp_replace(slack_url, '^.*(.{4})$', 'https://hooks.slack.com/services/…\1')) STORED;

ALTER TABLE tokka.budget_deliveries DROP CONSTRAINT budget_deliveries_channel_check,
  ADD CONSTRAINT budget_deliveries_channel_check CHECK (channel IN ('webhook', 'email', 'slack'));

GRANT SELECT (slack_url_hint) ON tokka.budgets TO authenticated;
GRANT INSERT (slack_url), UPDATE (slack_url) ON tokka.budgets TO authenticated;

-- +goose Down
-- Slack deliveries go with the channel. Row-level security is forced and no
-- policy names the migrating role.
ALTER TABLE tokka.budget_deliveries NO FORCE ROW LEVEL SECURITY;
DELETE FROM tokka.budget_deliveries WHERE channel = 'slack';
ALTER TABLE tokka.budget_deliveries FORCE ROW LEVEL SECURITY;
ALTER TABLE tokka.budget_deliveries DROP CONSTRAINT budget_deliveries_channel_check,
  ADD CONSTRAINT budget_deliveries_channel_check CHECK (channel IN ('webhook', 'email'));
-- Dropping the columns drops their column privileges too.
ALTER TABLE tokka.budgets DROP COLUMN slack_url_hint, DROP COLUMN slack_url;
