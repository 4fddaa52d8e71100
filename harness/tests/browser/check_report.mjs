// Loads a netpolc HTML report in headless Chromium and checks what a reader relies on:
// no console errors (CSP violations included), no network request but the file itself, distinct
// colours per outcome, that hovering / clicking a mismatched cell shows the oracle's
// explanation in the side panel, and that large matrices the page draws on demand come out
// complete, with the same cells and the same side panel as the ones drawn up front.
//
// usage: node check_report.mjs REPORT.html [EXPECTED_EXPLANATION_TEXT]
// env:   CHROMIUM (default /usr/bin/chromium), SCREENSHOT=FILE.png to keep a screenshot.
// exit:  0 all checks passed, 1 a check failed, 2 usage or the browser could not start.

import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

const [file, expectText] = process.argv.slice(2);
if (!file || !existsSync(file)) {
  console.error(`usage: node check_report.mjs REPORT.html [EXPECTED_TEXT] (${file ?? "no file"} not found)`);
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!existsSync(executablePath)) {
  console.error(`${executablePath} not found: apt-get install -y chromium chromium-driver`);
  process.exit(2);
}

const url = pathToFileURL(resolve(file)).href;
const problems = [];
const requests = [];
let lazyChecked = 0;
const userDataDir = mkdtempSync(join(tmpdir(), "netpolc-chromium-"));
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1400, height: 1000 },
  });
} catch (e) {
  rmSync(userDataDir, { recursive: true, force: true });
  console.error(`could not start ${executablePath}: ${e.message}`);
  process.exit(2);
}

try {
  // Every request the page makes is recorded; anything but the report itself is refused, so a
  // regression fails here and never reaches the network.
  context.on("request", (r) => requests.push(r.url()));
  await context.route("**/*", (route) =>
    route.request().url() === url ? route.continue() : route.abort("blockedbyclient"),
  );
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("dialog", async (d) => {
    problems.push(`a dialog opened (injected script?): ${d.message()}`);
    await d.dismiss();
  });
  page.on("websocket", (w) => problems.push(`websocket opened: ${w.url()}`));

  const response = await page.goto(url, { waitUntil: "load" });
  if (!response || !response.ok()) problems.push(`loading ${url} failed`);
  await page.waitForTimeout(300); // let late requests (favicon, prefetch) show up

  const title = await page.title();
  if (!title.includes("NetworkPolicy conformance")) problems.push(`unexpected title ${JSON.stringify(title)}`);

  // Nothing in the page may be an active element smuggled in through a name or a command.
  const active = await page.evaluate(() => ({
    scripts: document.scripts.length,
    embeds: document.querySelectorAll("img, iframe, object, embed, link[rel=stylesheet], form").length,
  }));
  if (active.scripts !== 1) problems.push(`expected exactly 1 script element, found ${active.scripts}`);
  if (active.embeds !== 0) problems.push(`found ${active.embeds} img/iframe/object/embed/stylesheet/form elements`);

  // Each outcome class looks different (colour or pattern).
  const looks = await page.evaluate(() => {
    const out = {};
    for (const sel of ["pass.allowed", "pass.blocked", "fail", "flaky", "unsupported", "error"]) {
      const el = document.querySelector(`table.matrix td.cell.${sel}`);
      if (el) {
        const s = getComputedStyle(el);
        out[sel] = `${s.backgroundColor} ${s.backgroundImage}`;
      }
    }
    return out;
  });
  const kinds = Object.keys(looks);
  if (!looks.fail) problems.push("no mismatched (td.cell.fail) cell in the page");
  if (new Set(Object.values(looks)).size !== kinds.length) {
    problems.push(`outcome classes are not visually distinct: ${JSON.stringify(looks)}`);
  }
  const rgb = /rgb\((\d+), (\d+), (\d+)\)/.exec(looks.fail ?? "");
  if (!rgb || !(Number(rgb[1]) > Number(rgb[2]) + 60 && Number(rgb[1]) > Number(rgb[3]) + 60)) {
    problems.push(`a mismatched cell is not highlighted in red: ${looks.fail}`);
  }

  const panel = page.locator("#panel-body");
  const fails = page.locator("table.matrix td.cell.fail");
  const n = await fails.count();
  let target = null;
  for (let i = 0; i < n; i++) {
    const cell = fails.nth(i);
    await cell.hover();
    const text = await panel.innerText();
    const cellTitle = (await cell.getAttribute("title")) ?? "";
    const head = cellTitle.split(" ").slice(0, 3).join(" "); // "ns/a → ns/b"
    if (!text.includes(head) || !text.includes("why the oracle expects this")) {
      problems.push(`hovering fail cell ${JSON.stringify(cellTitle)} showed ${JSON.stringify(text.slice(0, 200))}`);
    }
    if (target === null && (!expectText || text.includes(expectText))) target = i;
  }
  if (expectText && target === null) {
    problems.push(`no mismatched cell's explanation contains ${JSON.stringify(expectText)}`);
  }
  if (target !== null) {
    const cell = fails.nth(target);
    await cell.click();
    const pinnedText = await panel.innerText();
    if (!(await cell.evaluate((el) => el.classList.contains("selected")))) {
      problems.push("clicking a mismatched cell did not select it");
    }
    // While pinned, hovering another cell must not replace the explanation.
    await page.locator("table.matrix td.cell.pass").first().hover();
    if ((await panel.innerText()) !== pinnedText) problems.push("hover replaced a pinned cell's details");
    await page.keyboard.press("Escape");
    if (await cell.evaluate((el) => el.classList.contains("selected"))) {
      problems.push("Escape did not unpin the cell");
    }
    await cell.click();
  }

  // Matrices drawn on demand: the button draws every cell; a failing cell shows its details (or
  // its summary), a passing one the summary with the explain command.
  await page.keyboard.press("Escape"); // unpin whatever the checks above pinned
  const lazy = page.locator(".probe-matrix.lazy");
  const lazyCount = await lazy.count();
  for (let i = 0; i < lazyCount; i++) {
    const m = lazy.nth(i);
    if ((await m.locator("table.matrix").count()) !== 0) problems.push(`lazy matrix ${i} drawn before it was asked for`);
    const expectCells = await m.evaluate((el) => (el.getAttribute("data-codes") || "").replace(/-/g, "").length);
    await m.locator("button.draw-matrix").click();
    await page.waitForFunction((el) => el.getAttribute("data-rendered") === "true", await m.elementHandle(), { timeout: 20000 });
    const drawn = await m.locator("table.matrix td.cell[data-detail]").count();
    if (drawn !== expectCells) problems.push(`lazy matrix ${i}: ${drawn} cells drawn, ${expectCells} expected`);
    if ((await m.locator("button.draw-matrix").count()) !== 0) problems.push(`lazy matrix ${i}: button still there`);
    const lazyFails = m.locator("td.cell.fail");
    const nf = await lazyFails.count();
    for (let k = 0; k < nf; k++) {
      const cell = lazyFails.nth(k);
      await cell.hover();
      const text = await panel.innerText();
      const head = ((await cell.getAttribute("title")) ?? "").split(" ").slice(0, 3).join(" ");
      // These cells are detailed in the page: the panel must show that entry (matched by id).
      if (!text.includes(head) || !text.includes("why the oracle expects this") || !text.includes("reproduce with")) {
        problems.push(`lazy matrix ${i}: hovering fail cell ${head} showed ${JSON.stringify(text.slice(0, 200))}`);
      }
    }
    if (nf === 0) problems.push(`lazy matrix ${i}: no failing cell drawn`);
    const pass = m.locator("td.cell.pass").last();
    await pass.hover();
    const passText = await panel.innerText();
    const passHead = ((await pass.getAttribute("title")) ?? "").split(" ").slice(0, 3).join(" ");
    if (!passText.includes(passHead) || !passText.includes("netpolc explain") || !passText.includes("pass: observed what the oracle expects")) {
      problems.push(`lazy matrix ${i}: hovering a pass cell showed ${JSON.stringify(passText.slice(0, 300))}`);
    }
    lazyChecked += 1;
  }

  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });

  const foreign = requests.filter((r) => r !== url);
  if (foreign.length) problems.push(`requests besides the report itself: ${foreign.join(", ")}`);
  if (!requests.includes(url)) problems.push(`the report's own request was not seen (${requests.join(", ")})`);

  if (problems.length) {
    console.error(`check_report: ${problems.length} problem(s) in ${file}`);
    for (const p of problems) console.error(`  - ${p}`);
    process.exitCode = 1;
  } else {
    console.log(
      `check_report: ok: ${requests.length} request (the file), ${n} mismatched cells explained, ` +
        `${kinds.length} outcome styles distinct, ${lazyChecked} lazy matrices drawn and checked, no console errors`,
    );
  }
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
