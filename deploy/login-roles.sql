-- Login roles for the two processes, for a plain PostgreSQL (on Supabase,
-- create them the same way in the SQL editor). The migrations create the
-- NOLOGIN roles they become; these are the deployer's, so the migrations do
-- not create them. Both are NOINHERIT: outside a transaction that switches
-- role they can do nothing with Tokka's tables, like Supabase's authenticator.
--
--   psql "$ADMIN_URL" -v api_password=… -v syncer_password=… -f deploy/login-roles.sql
--
-- Passwords are optional on a trust-auth development server.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tokka_api') AS create_api \gset
\if :create_api
CREATE ROLE tokka_api LOGIN NOINHERIT;
\endif
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tokka_sync') AS create_sync \gset
\if :create_sync
CREATE ROLE tokka_sync LOGIN NOINHERIT;
\endif
GRANT authenticated TO tokka_api;
GRANT tokka_syncer TO tokka_sync;
\if :{?api_password}
ALTER ROLE tokka_api PASSWORD :'api_password';
\endif
\if :{?syncer_password}
ALTER ROLE tokka_sync PASSWORD :'syncer_password';
\endif
