// A screenshot of the page after one caption query, for README.
//
// usage: node screenshot.mjs BASE_URL QUERY OUT.png
import { writeFileSync } from "node:fs";
import { withBrowser } from "./webdriver.mjs";

const [base, query, out] = process.argv.slice(2);
await withBrowser(async ({ cmd, find, waitFor, go, screenshot }) => {
  await go(base);
  const [box] = await waitFor("#query", "the search box");
  await cmd("POST", `/element/${box}/value`, { text: query });
  await cmd("POST", `/element/${(await find("#search-form button"))[0]}/click`, {});
  await waitFor("#results .result img", "image results");
  await new Promise((r) => setTimeout(r, 1500)); // thumbnails finish loading: a picture, not a check
  writeFileSync(out, await screenshot());
  console.log(`wrote ${out}`);
});
