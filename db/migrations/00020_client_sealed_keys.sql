-- Keys sealed by the client (issue 17). A browser may seal a provider key to
-- the syncer's public key itself, so the api only relays a blob it cannot
-- open. The api then cannot see the key's prefix, show a hint, or compute the
-- keyed fingerprint that refuses the same key twice: the syncer does all
-- three when it first opens the key.
--
-- A connection whose key_hint is '' holds a client-sealed key the syncer has
-- not opened yet (a pasted key always has a hint). On its first open the
-- syncer checks the prefix (a wrong one makes the connection invalid), then
-- records the hint and the fingerprint through tokka.record_sealed_key; a
-- fingerprint another of the user's connections already has makes it
-- duplicate (the unique index of migration 00012 decides).
--
-- The syncer's role still may not write key_hint or key_fingerprint itself:
-- the function below writes them only for a connection it holds the lease of
-- and only while the hint is still empty, so a syncer (or an injection into
-- it) cannot rewrite the hint or fingerprint of any key a user pasted or the
-- syncer already checked.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION tokka.record_sealed_key(p_id uuid, p_lease_owner text, p_key_hint text, p_fingerprint bytea)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_key_hint IS NULL OR p_key_hint = '' OR p_lease_owner IS NULL THEN
    RAISE EXCEPTION 'record_sealed_key: a key hint and a lease owner are required' USING ERRCODE = '22023';
  END IF;
  UPDATE tokka.connections c SET key_hint = p_key_hint, key_fingerprint = p_fingerprint
  WHERE c.id = p_id AND c.key_hint = '' AND c.lease_owner = p_lease_owner AND c.lease_expires_at > now();
  RETURN FOUND;
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION tokka.record_sealed_key(uuid, text, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tokka.record_sealed_key(uuid, text, text, bytea) TO tokka_syncer;

-- +goose Down
DROP FUNCTION tokka.record_sealed_key(uuid, text, text, bytea);
