// Headless Chromium over the WebDriver protocol (chromedriver) with Node's built-in fetch: no
// npm packages. Shared by e2e.mjs (the browser test) and screenshot.mjs (README's picture).
import { spawn } from "node:child_process";
import { createServer } from "node:net";

const freePort = () => new Promise((resolve) => {
  const srv = createServer();
  srv.listen(0, "127.0.0.1", () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
});

// Start chromedriver and a 1280 × 1000 headless session, run `body(browser)`, and always end
// the session and the driver. `browser` offers `cmd` (raw WebDriver calls on the session),
// `find`, `waitFor`, `text`, `go` and `screenshot`; `logging` asks for the browser console log.
export async function withBrowser(body, { logging = false } = {}) {
  const port = await freePort();
  const driver = spawn(process.env.CHROMEDRIVER || "chromedriver", [`--port=${port}`], { stdio: "ignore" });
  const wd = `http://127.0.0.1:${port}`;
  let session;
  async function raw(method, path, payload) {
    const r = await fetch(`${wd}${path}`, { method, headers: { "content-type": "application/json" }, body: payload ? JSON.stringify(payload) : undefined });
    const json = await r.json();
    if (!r.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value).slice(0, 300)}`);
    return json.value;
  }
  const cmd = (method, path, payload) => raw(method, `/session/${session}${path}`, payload);
  const find = async (css) => (await cmd("POST", "/elements", { using: "css selector", value: css })).map((e) => Object.values(e)[0]);
  async function waitFor(css, what = css) {
    for (let i = 0; i < 300; i++) {
      const found = await find(css);
      if (found.length) return found;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what} (${css})`);
  }
  try {
    for (let i = 0; ; i++) {
      try { await raw("GET", "/status"); break; } catch (e) { if (i > 100) throw e; await new Promise((r) => setTimeout(r, 100)); }
    }
    ({ sessionId: session } = await raw("POST", "/session", { capabilities: { alwaysMatch: {
      browserName: "chrome",
      "goog:chromeOptions": { binary: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"] },
      ...(logging ? { "goog:loggingPrefs": { browser: "ALL" } } : {}),
    } } }));
    return await body({
      cmd,
      find,
      waitFor,
      text: (el) => cmd("GET", `/element/${el}/text`),
      go: (url) => cmd("POST", "/url", { url }),
      screenshot: async () => Buffer.from(await cmd("GET", "/screenshot"), "base64"),
    });
  } finally {
    if (session) await raw("DELETE", `/session/${session}`).catch(() => {});
    driver.kill();
  }
}
