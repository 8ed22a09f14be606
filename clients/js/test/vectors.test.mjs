// The JS half of the cross-language vectors (pkg/seal/testdata/vectors.json;
// the Go half is pkg/keyring's TestSealingVectorsOpenInGo). Every blob, sealed
// by Go or by this library, opens here with the recipient seed Go derives
// from the file's ENCRYPTION_KEY, and only for its own binding; the AAD is
// encoded byte for byte as Go encodes it; and a fresh seal by this library
// opens too.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { bindingAAD, fromHex, openKey, sealKey, suite, toHex } from "../dist/tokka-seal.js";

const set = JSON.parse(readFileSync(new URL("../../../pkg/seal/testdata/vectors.json", import.meta.url), "utf8"));
const bindingOf = (v) => ({ teamId: v.team_id, connectionId: v.connection_id, provider: v.provider });
const seed = fromHex(set.recipient_seed);

test("the seed is the key pair whose public key the file names", async () => {
  const hs = suite();
  const pair = await hs.kem.generateKeyPairDerand(seed);
  const pub = new Uint8Array(await hs.kem.serializePublicKey(pair.publicKey));
  assert.equal("tpk2:" + toHex(pub), set.public_key);
});

test("both languages' vectors are there", () => {
  assert.ok(set.vectors.filter((v) => v.sealed_by === "go").length >= 3);
  assert.ok(set.vectors.filter((v) => v.sealed_by === "js").length >= 2);
});

for (const [i, v] of set.vectors.entries()) {
  test(`vector ${i} (sealed by ${v.sealed_by}) opens in JS, only for its binding`, async () => {
    assert.equal(toHex(bindingAAD(set.aad_label, bindingOf(v))), v.aad);
    assert.equal(await openKey(seed, set.info, set.aad_label, v.sealed_key, bindingOf(v)), v.key);
    const moved = { ...bindingOf(v), connectionId: v.connection_id + "x" };
    await assert.rejects(openKey(seed, set.info, set.aad_label, v.sealed_key, moved));
  });
}

test("a fresh seal opens, and names the kid it was sealed to", async () => {
  const params = {
    kid: set.kid, public_key: set.public_key, info: set.info,
    suite: { kem: "MLKEM768-X25519", kem_id: 0x647a, kdf: "HKDF-SHA256", kdf_id: 1, aead: "AES-256-GCM", aead_id: 2 },
    aad: { label: set.aad_label, fields: [], encoding: "" }, sealed_key_format: "",
  };
  const b = { teamId: "u", connectionId: "c", provider: "openai" };
  const blob = await sealKey(params, "sk-admin-FRESHfresh0001", b);
  assert.match(blob, new RegExp("^v2:" + set.kid + ":[0-9a-f]{2240}:[0-9a-f]+$"));
  assert.equal(await openKey(seed, set.info, set.aad_label, blob, b), "sk-admin-FRESHfresh0001");
  await assert.rejects(sealKey({ ...params, suite: { ...params.suite, kem_id: 0x0020 } }, "sk-admin-x", b));
});
