// Drives Tokka with the TypeScript client generated from openapi.yaml
// (openapi-typescript types, openapi-fetch calls), the way a third-party
// app would: add a connection, wait for its first sync, read usage grouped
// by an array of dimensions (openapi-fetch sends group_by=day&group_by=model),
// page through a list, read the CSV as text and the summary. It prints one
// JSON object for e2e's TestTypeScriptClientDrivesTheFlow to check, and
// exits non-zero on the first unexpected answer. Node 20's built-in fetch
// carries the requests. Type-checked with tsc --strict before it runs: the
// annotations below fail to compile if the spec's types drift.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

declare const process: { argv: string[]; exitCode?: number };

type Connection = components["schemas"]["Connection"];
type UsageRow = components["schemas"]["UsageRow"];
type Provider = components["schemas"]["ProviderSummary"]["provider"];

const [baseUrl, token, key] = process.argv.slice(2);
const client = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });

function must<T>(what: string, want: number, r: { data?: T; error?: unknown; response: Response }): T {
  if (r.response.status !== want || r.data === undefined) {
    throw new Error(`${what}: status ${r.response.status}, want ${want}: ${JSON.stringify(r.error)}`);
  }
  return r.data;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const created: Connection = must("create", 201, await client.POST("/v1/connections", {
  params: { header: { "Idempotency-Key": `ts-${key.slice(-12)}` } },
  body: { provider: "openai", label: "TypeScript client", api_key: key },
}));

let conn = created;
for (let i = 0; conn.status !== "active"; i++) {
  if (i >= 300) throw new Error(`not active after 60 s: ${conn.status}`);
  await sleep(200);
  conn = must("get", 200, await client.GET("/v1/connections/{id}", { params: { path: { id: created.id } } }));
}

const today = new Date().toISOString().slice(0, 10);
const from = new Date(Date.now() - 29 * 86400_000).toISOString().slice(0, 10);
const usage = must("usage", 200, await client.GET("/v1/usage", {
  params: { query: { from, to: today, group_by: ["day", "model"] } },
}));
const rows: UsageRow[] = usage.data;

const page = must("connections", 200, await client.GET("/v1/connections", { params: { query: { limit: 1 } } }));
const hasMore: boolean = page.has_more;
const nextCursor: string | null = page.next_cursor;

const csv = await client.GET("/v1/usage/export.csv", {
  params: { query: { from, to: today, group_by: ["day", "model"] } },
  parseAs: "text",
});
if (csv.response.status !== 200 || typeof csv.data !== "string") {
  throw new Error(`export: status ${csv.response.status}`);
}

const summary = must("summary", 200, await client.GET("/v1/usage/summary"));
const overall: Provider = summary.overall.provider;

console.log(JSON.stringify({
  connection: created.id,
  from,
  to: today,
  group_by: usage.group_by,
  rows,
  totals: usage.totals,
  has_more: hasMore,
  next_cursor: nextCursor,
  csv: csv.data,
  month: summary.month,
  overall,
}));
