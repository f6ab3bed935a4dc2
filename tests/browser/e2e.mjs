// End-to-end check of the web page in headless Chromium (webdriver.mjs: chromedriver, no npm
// packages).
//
// usage: node e2e.mjs BASE_URL PHOTO_PATH SCREENSHOT_PATH
// Types a caption and expects ranked images; uploads a photo through the file picker and
// expects captions; fails on any browser console error. Writes a screenshot.
import { writeFileSync } from "node:fs";
import { withBrowser } from "./webdriver.mjs";

const [base, photo, screenshotPath] = process.argv.slice(2);

await withBrowser(async ({ cmd, find, waitFor, text, go, screenshot }) => {
  await go(base);

  // caption → images
  const [query] = await waitFor("#query", "the search box");
  await cmd("POST", `/element/${query}/value`, { text: "a tabby cat" });
  await cmd("POST", `/element/${(await find("#search-form button"))[0]}/click`, {});
  const cards = await waitFor("#results .result", "image results");
  const first = await cmd("GET", `/element/${cards[0]}/attribute/data-image-id`);
  const scoreText = await text(cards[0]);
  if (first !== "chelsea") throw new Error(`first image for "a tabby cat" is ${first}`);
  if (!/#1 · 0\.\d{3}/.test(scoreText)) throw new Error(`no rank and score shown: ${scoreText}`);

  // image → captions, through the file picker
  const [file] = await find("#file");
  await cmd("POST", `/element/${file}/value`, { text: photo });
  const captions = await waitFor("#caption-results .caption-result", "caption results");
  const firstCaption = await cmd("GET", `/element/${captions[0]}/attribute/data-image-id`);
  if (firstCaption !== "coffee") throw new Error(`first caption for the coffee photo belongs to ${firstCaption}`);

  // an error is shown, not swallowed
  await cmd("POST", `/element/${query}/clear`, {});
  await cmd("POST", `/element/${(await find("#search-form button"))[0]}/click`, {});
  const [error] = await waitFor("#error", "the error box");
  if (!(await text(error)).includes("Type a caption")) throw new Error("empty query error not shown");

  writeFileSync(screenshotPath, await screenshot());
  const logs = await cmd("POST", "/se/log", { type: "browser" });
  const severe = logs.filter((l) => l.level === "SEVERE");
  if (severe.length) throw new Error(`console errors: ${JSON.stringify(severe)}`);
  console.log(`ok: ${cards.length} images for "a tabby cat" (first ${first}), ${captions.length} captions for the photo (first from ${firstCaption})`);
}, { logging: true });
