/**
 * Debian's chromium through playwright-core for the dashboard tests: launched headless, and pages
 * that record every console error or warning, page error and failed request. There is no skip:
 * without /usr/bin/chromium the tests fail and say how to install it.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export async function launchChromium(): Promise<Browser> {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: the dashboard tests need Debian's chromium (apt-get install chromium; CI installs it)`);
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 0 });
}

/** A 1400x1000 page at `url` (status 200 checked) and the problems it reports from then on. */
export async function openPage(browser: Browser, url: string): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.setDefaultTimeout(0);
  const problems: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`console.${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
  const resp = await page.goto(url, { timeout: 0 });
  assert.equal(resp?.status(), 200);
  return { page, problems };
}

/**
 * Waits until `selector` matches, failing at once with what the page reported if it reports a
 * problem first (a page that broke never gets there: no deadline needed).
 */
export async function waitForShown(page: Page, problems: readonly string[], selector: string): Promise<void> {
  for (;;) {
    if (problems.length) throw new Error(`the page reported problems while waiting for ${selector}: ${problems.join('; ')}`);
    if (await page.$(selector)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}
