// Firefox ESR answers prompts in the page: node tests/web/firefox_answers.mjs URL REQUEST_JSON
// REQUEST_JSON: {"prompts": [...], "maxNewTokens": N}. Prints one JSON line:
// {"backend": {...}, "tokens": [[...], ...]} or {"error": "..."}.
// Drives Debian's /usr/bin/firefox-esr over WebDriver BiDi with puppeteer-core (npm,
// pinned, installed with PUPPETEER_SKIP_DOWNLOAD=1: it never downloads a browser).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

const [url, requestJson] = process.argv.slice(2);
const request = JSON.parse(requestJson);
const profile = mkdtempSync(join(tmpdir(), 'pocketlm-firefox-'));
const browser = await puppeteer.launch({
  browser: 'firefox',
  executablePath: process.env.FIREFOX ?? '/usr/bin/firefox-esr',
  headless: true,
  protocol: 'webDriverBiDi',
  userDataDir: profile,
});
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.waitForFunction(
    "document.body.dataset.ready === 'true' || document.getElementById('status').getAttribute('role') === 'alert'",
    { timeout: 900_000 },
  );
  const ready = await page.evaluate("document.body.dataset.ready === 'true'");
  if (!ready) throw new Error(await page.evaluate("document.getElementById('status').textContent"));
  const answers = await page.evaluate(async ({ prompts, maxNewTokens }) => {
    const engine = window.pocketlm.engine;
    const tokens = [];
    for (const prompt of prompts) {
      await engine.newChat();
      tokens.push((await engine.generate(prompt, { maxNewTokens })).tokens);
    }
    return { backend: engine.backend, tokens, userAgent: navigator.userAgent };
  }, request);
  console.log(JSON.stringify(answers));
} catch (error) {
  console.log(JSON.stringify({ error: error instanceof Error ? error.message : String(error) }));
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
