-- Keys sealed by the client (issue 17). A browser may seal a provider key to
-- the syncer's public key itself, so the api only relays a blob it cannot
-- open. The api then cannot see the key's prefix, show a hint, or compute the
-- keyed fingerprint that refuses the same key twice: the syncer does all
-- three when it first opens the key.
--
-- A connection whose key_hint is '' holds a client-sealed key the syncer has
-- not opened yet (a pasted key always has a hint). On its first open the
-- syncer checks the prefix (a wrong one makes the connection invalid), then
-- writes the hint and the fingerprint; a fingerprint another of the user's
-- connections already has makes it duplicate (the unique index of migration
-- 00012 decides). So the syncer's role may now write those two columns,
-- and nothing else new: it still cannot touch labels, ids or owners.

-- +goose Up
GRANT UPDATE (key_hint, key_fingerprint) ON tokka.connections TO tokka_syncer;

-- +goose Down
REVOKE UPDATE (key_hint, key_fingerprint) ON tokka.connections FROM tokka_syncer;
