// Rewrites the JS-sealed vectors of pkg/seal/testdata/vectors.json (keeping
// the Go-sealed ones): each is sealed with this library's sealKey to the
// file's public key, for a fixed binding. pkg/keyring's test opens them in Go.
// Run with `npm run vectors` (it builds dist/ first).
import { readFileSync, writeFileSync } from "node:fs";
import { bindingAAD, sealKey, toHex } from "./dist/tokka-seal.js";

const file = new URL("../../pkg/seal/testdata/vectors.json", import.meta.url);
const set = JSON.parse(readFileSync(file, "utf8"));
const params = {
  kid: set.kid, public_key: set.public_key, info: set.info,
  suite: { kem: "MLKEM768-X25519", kem_id: 0x647a, kdf: "HKDF-SHA256", kdf_id: 1, aead: "AES-256-GCM", aead_id: 2 },
  aad: { label: set.aad_label, fields: ["team_id", "connection_id", "provider"], encoding: "" },
  sealed_key_format: "",
};
const jsVectors = [
  { team_id: "6a1f3c2e-0b4d-4e8a-9c77-1d2e3f405162", connection_id: "7d9e0f1a-2b3c-4d5e-8f60-718293a4b5c6", provider: "openai", key: "sk-admin-JSSEALEDjssealed0001" },
  { team_id: "ünïcode-user", connection_id: "conn-ü-js", provider: "anthropic", key: "sk-ant-admin01-JSSEALED-ü-0002" },
];
const out = set.vectors.filter((v) => v.sealed_by !== "js");
for (const v of jsVectors) {
  const b = { teamId: v.team_id, connectionId: v.connection_id, provider: v.provider };
  out.push({
    sealed_by: "js", ...v,
    aad: toHex(bindingAAD(set.aad_label, b)),
    sealed_key: await sealKey(params, v.key, b),
  });
}
set.vectors = out;
writeFileSync(file, JSON.stringify(set, null, 2) + "\n");
