// End-to-end check of the web page in headless Chromium (webdriver.mjs: chromedriver, no npm
// packages).
//
// usage: node e2e.mjs BASE_URL PHOTO_PATH SCREENSHOT_PATH
// Types a caption and expects ranked images; uploads a photo through the file picker and
// expects captions; narrows the results with the filter bar's dates; subtracts a photo through a
// query chip; orders by date; fails on any browser
// console error. Writes a screenshot.
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

  // the filter bar: July 2024 keeps only the photo whose EXIF says it was taken then
  await cmd("POST", "/execute/sync", { script: "document.getElementById('taken-from').value = '2024-07-01'; document.getElementById('taken-to').value = '2024-07-31';", args: [] });
  await cmd("POST", `/element/${(await find("#search-form button"))[0]}/click`, {});
  // (waits for the grid to hold that one photo alone: the unfiltered grid held five)
  const filtered = await waitFor('#results .result:only-child[data-image-id="beach"]', "only the July 2024 photo");
  const taken = await text(filtered[0]);
  if (!taken.includes("taken 2024-07-14 16:03:11+02:00")) throw new Error(`taken-at not shown: ${taken}`);
  await cmd("POST", `/element/${(await find("#clear-filters"))[0]}/click`, {});

  // query arithmetic on the page: "a tabby cat" minus the cat photo itself (a chip from its
  // details) no longer ranks the cat first; removing the chip brings it back
  const cat = await waitFor('#results .result:first-child[data-image-id="chelsea"]', "the cat first again");
  await cmd("POST", `/element/${cat[0]}/click`, {});
  await waitFor('#details[data-image-id="chelsea"]', "the cat's details");
  await cmd("POST", `/element/${(await find("#subtract-image-term"))[0]}/click`, {});
  await waitFor('#terms .chip[data-term="chelsea"]', "a chip for the subtracted photo");
  await waitFor('#results .result:first-child:not([data-image-id="chelsea"])', "another image first");
  const title = await text((await find("#results-title"))[0]);
  if (!title.includes("“a tabby cat” − chelsea")) throw new Error(`terms not shown in the title: ${title}`);
  await cmd("POST", `/element/${(await find('#terms .chip[data-term="chelsea"] button'))[0]}/click`, {});
  await waitFor('#results .result:first-child[data-image-id="chelsea"]', "the cat first without the chip");

  // date order: the relevant results by date, with the query's cut-off in the title
  await cmd("POST", "/execute/sync", { script: "const o = document.getElementById('order'); o.value = 'taken_at'; o.dispatchEvent(new Event('change'));", args: [] });
  const [orderedTitle] = await waitFor('#results-title[data-order="date"]', "results in date order");
  const ordered = await text(orderedTitle);
  if (!ordered.includes("by date")) throw new Error(`date order not applied: ${ordered}`);
  await cmd("POST", `/element/${(await find("#clear-filters"))[0]}/click`, {});

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
