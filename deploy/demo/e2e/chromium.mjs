// What the browser tests share: Debian's Chromium launched by playwright-core, and a page of the
// live-models tests (integration/testdata/models-property, served by harness.ServeModelsPage)
// opened and waited for until every model follows its channel.
import { chromium } from 'playwright-core';

/** launchChromium starts a headless Debian Chromium (playwright-core downloads no browser). */
export function launchChromium() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true, // playwright-core passes --headless and a new empty --user-data-dir of its own
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

/**
 * openModelsPage opens url (the models page, with its query) in a context of its own (its own
 * storage and connection, as another person's machine), records its uncaught errors in errors,
 * and waits until every model is 'ready'.
 */
export async function openModelsPage(browser, id, url, errors, timeout = 60_000) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  page.on('pageerror', (e) => errors.push(`page ${id}: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => window.harness?.view().statuses.every((s) => s === 'ready'), null, { timeout });
  return { id, ctx, page };
}

/** canon is v as JSON with every object's keys sorted, so that two states compare as strings. */
export const canon = (v) => JSON.stringify(v, (_, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort()) : x));

/**
 * waitForConfirmed waits until the page's confirmed state (window.harness.confirmed()) equals
 * want, compared with canon; it returns true, or false with the page's state at the timeout.
 */
export async function waitForConfirmed(page, want, timeout) {
  const w = canon(want);
  const deadline = Date.now() + timeout;
  for (;;) {
    const got = canon(await page.evaluate(() => window.harness.confirmed()));
    if (got === w) return { ok: true, got };
    if (Date.now() > deadline) return { ok: false, got };
    await new Promise((r) => setTimeout(r, 200));
  }
}
