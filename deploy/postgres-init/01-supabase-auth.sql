-- What the Supabase Auth server (GoTrue) expects to find before its own
-- migrations run: a login role that owns schema auth. Tokka's migrations
-- never touch schema auth.
CREATE ROLE supabase_auth_admin LOGIN NOINHERIT PASSWORD 'auth-admin-dev';
CREATE SCHEMA auth AUTHORIZATION supabase_auth_admin;
ALTER ROLE supabase_auth_admin SET search_path = auth;
