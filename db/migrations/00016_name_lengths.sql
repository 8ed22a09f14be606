-- Labels and names are counted in user-perceived characters (grapheme
-- clusters) by the api, at most 100 of them; one such character may be
-- several code points ("🇫🇷" is two, "👍🏽" two, a letter with accents
-- three), while the columns' CHECKs counted code points, so a 100-character
-- name of flags would have been refused by the database. The CHECKs now
-- allow 400 code points; the api enforces both limits. Every stored value
-- already satisfies the new CHECKs, so nothing is rewritten.

-- +goose Up
ALTER TABLE tokka.connections DROP CONSTRAINT connections_label_check,
  ADD CONSTRAINT connections_label_check CHECK (length(label) BETWEEN 1 AND 400);
ALTER TABLE tokka.budgets DROP CONSTRAINT budgets_name_check,
  ADD CONSTRAINT budgets_name_check CHECK (length(name) BETWEEN 1 AND 400);

-- +goose Down
-- Back to 100 code points: a longer value keeps its first 100. Row-level
-- security is forced and no policy names the migrating role.
ALTER TABLE tokka.connections NO FORCE ROW LEVEL SECURITY;
UPDATE tokka.connections SET label = left(label, 100) WHERE length(label) > 100;
ALTER TABLE tokka.connections FORCE ROW LEVEL SECURITY;
ALTER TABLE tokka.budgets NO FORCE ROW LEVEL SECURITY;
UPDATE tokka.budgets SET name = left(name, 100) WHERE length(name) > 100;
ALTER TABLE tokka.budgets FORCE ROW LEVEL SECURITY;
ALTER TABLE tokka.connections DROP CONSTRAINT connections_label_check,
  ADD CONSTRAINT connections_label_check CHECK (length(label) BETWEEN 1 AND 100);
ALTER TABLE tokka.budgets DROP CONSTRAINT budgets_name_check,
  ADD CONSTRAINT budgets_name_check CHECK (length(name) BETWEEN 1 AND 100);
