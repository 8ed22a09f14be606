// Opens each URL given on the command line in headless Chromium (Debian's
// /usr/bin/chromium, or $CHROMIUM_PATH), waits for the page to set
// window.__done, and prints one JSON array with each page's window.__results
// (plus its console errors) on stdout. Used by e2e's browser test; it
// downloads nothing: playwright-core only drives the installed browser.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const urls = process.argv.slice(2);
if (urls.length === 0) {
  console.error("usage: node run.mjs URL…");
  process.exit(2);
}

// A fresh profile every run, and nothing in the background that could reach
// the network or change the browser while the test runs.
const userDataDir = mkdtempSync(join(tmpdir(), "tokka-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  timeout: 60_000,
});
const out = [];
try {
  for (const url of urls) {
    const page = await context.newPage();
    const consoleErrors = [];
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    page.on("pageerror", (e) => consoleErrors.push("pageerror: " + e.message));
    await page.goto(url, { waitUntil: "load", timeout: 30_000 });
    await page.waitForFunction(() => window.__done === true, null, { timeout: 30_000 });
    const results = await page.evaluate(() => window.__results);
    out.push({ url: url.split("#")[0], results, consoleErrors });
    await page.close();
  }
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(out) + "\n");
