// @tokka/seal seals a provider admin key in the browser to the Tokka
// syncer's public key, so the api only relays a blob it cannot open. The
// suite, info and AAD encoding are exactly the server's (pkg/seal): HPKE
// base mode, KEM MLKEM768-X25519 (X-Wing), HKDF-SHA256, AES-256-GCM.
import { Aes256Gcm, CipherSuite, HkdfSha256 } from "@hpke/core";
import { XWing } from "@hpke/hybridkem-x-wing";
import createFetchClient from "openapi-fetch";
import type { components, paths } from "./api.gen.js";

/** The public sealing parameters, as GET /v1/sealing-key returns them. */
export type SealingKey = components["schemas"]["SealingKey"];

/** The row a sealed key belongs to; the AAD binds the blob to it. */
export interface Binding {
  /**
   * The id of the team the connection is created in (the team_id sent with
   * it), lowercase; for the personal team, the signed-in user's id (the
   * access token's sub).
   */
  teamId: string;
  /** The connection id: chosen by the client for a new connection. */
  connectionId: string;
  provider: components["schemas"]["Provider"];
}

/** The typed client for the api, generated from openapi.yaml. */
export type TokkaClient = ReturnType<typeof createFetchClient<paths>>;

/** createClient returns the typed client for the api at baseUrl, sending token as the bearer. */
export function createClient(baseUrl: string, token: string): TokkaClient {
  return createFetchClient<paths>({ baseUrl, headers: { Authorization: "Bearer " + token } });
}

/** fetchSealingKey reads the current sealing parameters; it throws with the problem's detail on an error. */
export async function fetchSealingKey(client: TokkaClient): Promise<SealingKey> {
  const { data, error } = await client.GET("/v1/sealing-key");
  if (!data) throw new Error("GET /v1/sealing-key failed: " + ((error as { detail?: string } | undefined)?.detail ?? "no body"));
  return data;
}

const KEM_ID = 0x647a;
const KDF_ID = 0x0001;
const AEAD_ID = 0x0002;
const utf8 = new TextEncoder();

/** bindingAAD encodes b as the server does: the label, then each field as a 4-byte big-endian length and its UTF-8 bytes. */
export function bindingAAD(label: string, b: Binding): Uint8Array {
  const parts = [b.teamId, b.connectionId, b.provider].map((f) => utf8.encode(f));
  const head = utf8.encode(label);
  const out = new Uint8Array(head.length + parts.reduce((n, p) => n + 4 + p.length, 0));
  out.set(head, 0);
  let at = head.length;
  const view = new DataView(out.buffer);
  for (const p of parts) {
    view.setUint32(at, p.length, false);
    out.set(p, at + 4);
    at += 4 + p.length;
  }
  return out;
}

function toHex(b: ArrayBuffer | Uint8Array): string {
  return Array.from(b instanceof Uint8Array ? b : new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
}

function fromHex(s: string): Uint8Array {
  if (!/^([0-9a-f]{2})*$/.test(s)) throw new Error("not lowercase hex");
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** suite returns the HPKE suite of v2 blobs. */
export function suite(): CipherSuite {
  return new CipherSuite({ kem: new XWing(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });
}

/**
 * sealKey seals key for the row b with params and returns the sealed_key to
 * send: v2:<kid>:<hex(enc)>:<hex(ciphertext with tag)>. It throws if params
 * name another suite than the one it implements; the key is never part of
 * an error.
 */
export async function sealKey(params: SealingKey, key: string, b: Binding): Promise<string> {
  const s = params.suite;
  if (s.kem_id !== KEM_ID || s.kdf_id !== KDF_ID || s.aead_id !== AEAD_ID) {
    throw new Error("the sealing parameters name a suite this library does not implement");
  }
  if (!params.public_key.startsWith("tpk2:")) throw new Error("the sealing key is not a tpk2: public key");
  const hs = suite();
  const recipientPublicKey = await hs.kem.deserializePublicKey(fromHex(params.public_key.slice(5)).buffer as ArrayBuffer);
  const sender = await hs.createSenderContext({ recipientPublicKey, info: utf8.encode(params.info).buffer as ArrayBuffer });
  const ct = await sender.seal(utf8.encode(key).buffer as ArrayBuffer, bindingAAD(params.aad.label, b).buffer as ArrayBuffer);
  return "v2:" + params.kid + ":" + toHex(sender.enc) + ":" + toHex(ct);
}

/**
 * openKey opens a v2 blob with a recipient's 32-byte X-Wing seed. Browsers
 * never hold one; it exists for the cross-language vector tests only.
 */
export async function openKey(seed: Uint8Array, info: string, label: string, blob: string, b: Binding): Promise<string> {
  const [v, , enc, ct] = blob.split(":");
  if (v !== "v2") throw new Error("not a v2 blob");
  const hs = suite();
  const recipientKey = await hs.kem.deserializePrivateKey(seed.slice().buffer as ArrayBuffer);
  const r = await hs.createRecipientContext({ recipientKey, enc: fromHex(enc).buffer as ArrayBuffer, info: utf8.encode(info).buffer as ArrayBuffer });
  return new TextDecoder().decode(await r.open(fromHex(ct).buffer as ArrayBuffer, bindingAAD(label, b).buffer as ArrayBuffer));
}

export { fromHex, toHex };
