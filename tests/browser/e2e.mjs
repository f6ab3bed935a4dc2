// End-to-end check of the web page in headless Chromium, driven over the WebDriver protocol
// (chromedriver) with Node's built-in fetch: no npm packages.
//
// usage: node e2e.mjs BASE_URL PHOTO_PATH SCREENSHOT_PATH
// Types a caption and expects ranked images; uploads a photo through the file picker and
// expects captions; fails on any browser console error. Writes a screenshot.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";

const [base, photo, screenshot] = process.argv.slice(2);
const freePort = () => new Promise((resolve) => {
  const srv = createServer();
  srv.listen(0, "127.0.0.1", () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
});

const port = await freePort();
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
async function waitFor(css, what) {
  for (let i = 0; i < 300; i++) {
    const found = await find(css);
    if (found.length) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (${css})`);
}
const text = async (el) => cmd("GET", s(`/element/${el}/text`));

try {
  for (let i = 0; ; i++) {
    try { await cmd("GET", "/status"); break; } catch (e) { if (i > 100) throw e; await new Promise((r) => setTimeout(r, 100)); }
  }
  ({ sessionId: session } = await cmd("POST", "/session", { capabilities: { alwaysMatch: {
    browserName: "chrome",
    "goog:chromeOptions": { binary: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"] },
    "goog:loggingPrefs": { browser: "ALL" },
  } } }));
  await cmd("POST", s("/url"), { url: base });

  // caption → images
  const [query] = await waitFor("#query", "the search box");
  await cmd("POST", s(`/element/${query}/value`), { text: "a tabby cat" });
  await cmd("POST", s(`/element/${(await find("#search-form button"))[0]}/click`), {});
  const cards = await waitFor("#results .result", "image results");
  const first = await cmd("GET", s(`/element/${cards[0]}/attribute/data-image-id`));
  const scoreText = await text(cards[0]);
  if (first !== "chelsea") throw new Error(`first image for "a tabby cat" is ${first}`);
  if (!/#1 · 0\.\d{3}/.test(scoreText)) throw new Error(`no rank and score shown: ${scoreText}`);

  // image → captions, through the file picker
  const [file] = await find("#file");
  await cmd("POST", s(`/element/${file}/value`), { text: photo });
  const captions = await waitFor("#caption-results .caption-result", "caption results");
  const firstCaption = await cmd("GET", s(`/element/${captions[0]}/attribute/data-image-id`));
  if (firstCaption !== "coffee") throw new Error(`first caption for the coffee photo belongs to ${firstCaption}`);

  // an error is shown, not swallowed
  await cmd("POST", s(`/element/${query}/clear`), {});
  await cmd("POST", s(`/element/${(await find("#search-form button"))[0]}/click`), {});
  const [error] = await waitFor("#error", "the error box");
  if (!(await text(error)).includes("Type a caption")) throw new Error("empty query error not shown");

  writeFileSync(screenshot, Buffer.from(await cmd("GET", s("/screenshot")), "base64"));
  const logs = await cmd("POST", s("/se/log"), { type: "browser" });
  const severe = logs.filter((l) => l.level === "SEVERE");
  if (severe.length) throw new Error(`console errors: ${JSON.stringify(severe)}`);
  console.log(`ok: ${cards.length} images for "a tabby cat" (first ${first}), ${captions.length} captions for the photo (first from ${firstCaption})`);
} finally {
  if (session) await cmd("DELETE", s("")).catch(() => {});
  driver.kill();
}
