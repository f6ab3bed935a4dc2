// A screenshot of the page after one caption query, for README (headless Chromium over the
// WebDriver protocol, as e2e.mjs; no npm packages).
//
// usage: node screenshot.mjs BASE_URL QUERY OUT.png
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";

const [base, query, out] = process.argv.slice(2);
const port = 9600 + Math.floor(Math.random() * 300);
const driver = spawn(process.env.CHROMEDRIVER || "chromedriver", [`--port=${port}`], { stdio: "ignore" });
const wd = `http://127.0.0.1:${port}`;
let session;
async function cmd(method, path, body) {
  const r = await fetch(`${wd}${path}`, { method, headers: { "content-type": "application/json" }, body: body ? JSON.stringify(body) : undefined });
  const json = await r.json();
  if (!r.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value).slice(0, 300)}`);
  return json.value;
}
const s = (path) => `/session/${session}${path}`;
const find = async (css) => (await cmd("POST", s("/elements"), { using: "css selector", value: css })).map((e) => Object.values(e)[0]);
async function waitFor(css) {
  for (let i = 0; i < 300; i++) {
    const found = await find(css);
    if (found.length) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${css}`);
}
try {
  for (let i = 0; ; i++) {
    try { await cmd("GET", "/status"); break; } catch (e) { if (i > 100) throw e; await new Promise((r) => setTimeout(r, 100)); }
  }
  ({ sessionId: session } = await cmd("POST", "/session", { capabilities: { alwaysMatch: {
    browserName: "chrome",
    "goog:chromeOptions": { binary: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"] },
  } } }));
  await cmd("POST", s("/url"), { url: base });
  const [box] = await waitFor("#query");
  await cmd("POST", s(`/element/${box}/value`), { text: query });
  await cmd("POST", s(`/element/${(await find("#search-form button"))[0]}/click`), {});
  await waitFor("#results .result img");
  await new Promise((r) => setTimeout(r, 1500)); // thumbnails finish loading: a picture, not a check
  writeFileSync(out, Buffer.from(await cmd("GET", s("/screenshot")), "base64"));
  console.log(`wrote ${out}`);
} finally {
  if (session) await cmd("DELETE", s("")).catch(() => {});
  driver.kill();
}
