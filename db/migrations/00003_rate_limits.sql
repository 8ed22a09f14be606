-- Rate limits shared by every api replica: fixed-window counters, one row per
-- bucket ("<scope>:user:<uuid>" or "<scope>:ip:<address or IPv6 /64>").
--
-- Who writes them: the api checks the limit in its own short transaction as
-- role authenticated, before the request's real work. Role authenticated has
-- no privilege at all on tokka.rate_limits (it could otherwise read other
-- users' activity or reset its own counter); it may only call
-- tokka.rate_limit_hit, a SECURITY DEFINER function owned by the migrating
-- role that does one atomic upsert per bucket and returns the counts. The
-- function takes the user from the verified claims of the transaction
-- (tokka.uid()), never from an argument, so a caller cannot spend or inspect
-- another user's budget; the client IP is an argument because only the api
-- knows it. Its search_path is fixed and every name in it is qualified, so a
-- caller cannot redirect it to objects of their own.
--
-- Why a fixed window: one row and one statement per bucket, exact under
-- concurrency (the upsert serialises on the row), with a reset time a client
-- can be told. The price is that a client may spend up to twice the limit
-- across a window boundary, which is acceptable for abuse protection.

-- +goose Up
CREATE TABLE tokka.rate_limits (
  bucket_key   text PRIMARY KEY CHECK (length(bucket_key) <= 200),
  window_start timestamptz NOT NULL,
  hit_count    integer NOT NULL CHECK (hit_count >= 0)
);
CREATE INDEX rate_limits_window_idx ON tokka.rate_limits (window_start);

-- Enabled and forced like every table. Only the owner (through the SECURITY
-- DEFINER function) has a policy; no application role has a grant.
ALTER TABLE tokka.rate_limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE tokka.rate_limits FORCE ROW LEVEL SECURITY;
CREATE POLICY rate_limits_owner ON tokka.rate_limits TO CURRENT_USER USING (true) WITH CHECK (true);
REVOKE ALL ON tokka.rate_limits FROM PUBLIC;

-- tokka.rate_limit_hit counts one request against the caller's user bucket
-- (when the transaction carries claims) and the client IP's bucket (when
-- p_ip is not null), both in the fixed window of p_window_seconds that
-- contains now, and returns one row per bucket: its hits so far in the window
-- including this one, its limit, and the seconds until the window resets.
-- IPv6 addresses are counted per /64, the block one subscriber usually holds.
-- +goose StatementBegin
CREATE FUNCTION tokka.rate_limit_hit(p_scope text, p_ip inet, p_user_limit integer, p_ip_limit integer,
                                     p_window_seconds integer)
RETURNS TABLE (bucket text, hits integer, max_hits integer, reset_seconds integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_uid   uuid := tokka.uid();
  v_now   timestamptz := clock_timestamp();
  v_start timestamptz;
  v_seen  timestamptz;
  v_key   text;
  v_limit integer;
BEGIN
  IF p_scope IS NULL OR p_scope !~ '^[a-z][a-z_]{0,31}$' THEN
    RAISE EXCEPTION 'rate_limit_hit: invalid scope' USING ERRCODE = '22023';
  END IF;
  IF p_window_seconds IS NULL OR p_window_seconds NOT BETWEEN 1 AND 86400 THEN
    RAISE EXCEPTION 'rate_limit_hit: window must be 1 to 86400 seconds' USING ERRCODE = '22023';
  END IF;
  IF coalesce(p_user_limit, 0) < 1 OR coalesce(p_ip_limit, 0) < 1 THEN
    RAISE EXCEPTION 'rate_limit_hit: limits must be positive' USING ERRCODE = '22023';
  END IF;
  v_start := to_timestamp(floor(extract(epoch FROM v_now) / p_window_seconds) * p_window_seconds);

  FOR i IN 1..2 LOOP
    IF i = 1 THEN
      CONTINUE WHEN v_uid IS NULL;
      v_key := p_scope || ':user:' || v_uid::text;
      v_limit := p_user_limit;
    ELSE
      CONTINUE WHEN p_ip IS NULL;
      v_key := p_scope || ':ip:' || CASE WHEN family(p_ip) = 6
                                         THEN network(set_masklen(p_ip, 64))::text
                                         ELSE host(p_ip) END;
      v_limit := p_ip_limit;
    END IF;
    -- A row from an older window restarts at 1; a concurrent writer that
    -- computed an older window than the row's is counted in the newer one.
    INSERT INTO tokka.rate_limits AS r (bucket_key, window_start, hit_count)
    VALUES (v_key, v_start, 1)
    ON CONFLICT (bucket_key) DO UPDATE
      SET hit_count = CASE WHEN EXCLUDED.window_start > r.window_start THEN 1 ELSE r.hit_count + 1 END,
          window_start = greatest(r.window_start, EXCLUDED.window_start)
    RETURNING r.hit_count, r.window_start INTO hits, v_seen;
    bucket := CASE WHEN i = 1 THEN 'user' ELSE 'ip' END;
    max_hits := v_limit;
    reset_seconds := greatest(1, ceil(extract(epoch FROM (v_seen + make_interval(secs => p_window_seconds) - v_now)))::integer);
    RETURN NEXT;
  END LOOP;

  -- Housekeeping, now and then: windows are at most a day long, so rows
  -- untouched for two days are dead.
  IF random() < 0.01 THEN
    DELETE FROM tokka.rate_limits WHERE window_start < v_now - interval '2 days';
  END IF;
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION tokka.rate_limit_hit(text, inet, integer, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tokka.rate_limit_hit(text, inet, integer, integer, integer) TO authenticated;

-- +goose Down
DROP FUNCTION tokka.rate_limit_hit(text, inet, integer, integer, integer);
DROP TABLE tokka.rate_limits;
