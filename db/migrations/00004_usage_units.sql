-- Provider fidelity (issue #4): the family-specific units and dimensions of
-- OpenAI's usage families (images, audio, vector stores, tools) and
-- Anthropic's web searches. Counts are never negative, like the token
-- columns; dimensions a family does not have are '' (as everywhere in this
-- table), so they can be part of the natural key.
--
-- No grants: usage_daily is granted table-wide (SELECT to authenticated,
-- SELECT/INSERT/DELETE to tokka_syncer), never column by column, so new
-- columns are covered; RLS policies are per row and unaffected.

-- +goose Up
ALTER TABLE tokka.usage_daily
  ADD COLUMN image_size      text   NOT NULL DEFAULT '',
  ADD COLUMN image_source    text   NOT NULL DEFAULT '',
  ADD COLUMN context_level   text   NOT NULL DEFAULT '',
  ADD COLUMN vector_store_id text   NOT NULL DEFAULT '',
  ADD COLUMN images          bigint NOT NULL DEFAULT 0 CHECK (images >= 0),
  ADD COLUMN characters      bigint NOT NULL DEFAULT 0 CHECK (characters >= 0),
  ADD COLUMN seconds         bigint NOT NULL DEFAULT 0 CHECK (seconds >= 0),
  -- vector_stores: bytes stored on that day, a level rather than a flow, so
  -- summing it over days means nothing; summing over projects does.
  ADD COLUMN bytes           bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
  ADD COLUMN sessions        bigint NOT NULL DEFAULT 0 CHECK (sessions >= 0),
  ADD COLUMN file_searches   bigint NOT NULL DEFAULT 0 CHECK (file_searches >= 0),
  ADD COLUMN web_searches    bigint NOT NULL DEFAULT 0 CHECK (web_searches >= 0);

-- +goose Down
ALTER TABLE tokka.usage_daily
  DROP COLUMN image_size,
  DROP COLUMN image_source,
  DROP COLUMN context_level,
  DROP COLUMN vector_store_id,
  DROP COLUMN images,
  DROP COLUMN characters,
  DROP COLUMN seconds,
  DROP COLUMN bytes,
  DROP COLUMN sessions,
  DROP COLUMN file_searches,
  DROP COLUMN web_searches;
