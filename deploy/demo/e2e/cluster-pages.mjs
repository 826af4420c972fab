// Real browser pages in the cluster fault tests (integration/cluster) and the lost-slot recovery
// test (TestSlotLost_BrowserPages): Chromium pages, each with an @pgoutbox/models model per
// channel it follows (the live-models test page, integration/testdata/models-property),
// connected through the cluster's haproxy or to a single Centrifugo. The Go test
// (harness.StartCounterPages) serves the page and the app's endpoints, runs this script, and
// drives it through its output and one request:
//
//   PAGES_URL        the app
//   PAGES_CHANNELS   JSON: one list of channels per page
//   PAGES_ARTIFACTS  where screenshots of failures go
//
// It opens the pages one after the other (haproxy balances by least connections, so they land
// on different nodes), prints `PAGES READY` once every model follows its channel, then asks
// GET /control/final, which answers when the test's writers have stopped, with every channel's
// final counter. Every page must reach those values; it prints `PAGES FIGURES {json}`: events
// applied, recoveries (resubscribes resumed from history), re-syncs (syncs after each model's
// first), and the anomalies (a page that did not converge, an event applied twice, a value that
// did not follow the state's, a model error, an uncaught page error). The Go test judges them.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { canon, launchChromium, openModelsPage, waitForConfirmed } from './chromium.mjs';

const URL = process.env.PAGES_URL;
const CHANNELS = JSON.parse(process.env.PAGES_CHANNELS ?? '[]');
const ARTIFACTS = process.env.PAGES_ARTIFACTS ?? 'test-results';
const CONVERGE_MS = 120_000;

const browser = await launchChromium();
try {
  mkdirSync(ARTIFACTS, { recursive: true });
  const errors = [];
  const pages = [];
  for (const [i, channels] of CHANNELS.entries()) {
    const url = `${URL}/?page=p${i}&channels=${encodeURIComponent(channels.join(','))}`;
    pages.push({ ...(await openModelsPage(browser, `p${i}`, url, errors, 90_000)), channels });
  }
  console.log('PAGES READY');

  const resp = await fetch(`${URL}/control/final`);
  if (!resp.ok) throw new Error(`/control/final: ${resp.status} ${await resp.text()}`);
  const final = await resp.json(); // {channel: counter}

  const anomalies = [];
  const figures = { pages: pages.length, models: 0, events: 0, recoveries: 0, resyncs: 0, visible: 0, duplicate: 0, anomalies };
  for (const p of pages) {
    const want = Object.fromEntries(p.channels.map((c) => [c, { value: final[c] }]));
    const { ok, got } = await waitForConfirmed(p.page, want, CONVERGE_MS);
    if (!ok) {
      anomalies.push(`page ${p.id} did not reach the database's counters within ${CONVERGE_MS / 1000} s: ${got} want ${canon(want)}`);
      await p.page.screenshot({ path: join(ARTIFACTS, `cluster-${p.id}.png`) }).catch(() => {});
    }
    const v = await p.page.evaluate(() => window.harness.view());
    for (const k of v.twice) anomalies.push(`page ${p.id} applied ${k} twice`);
    // After one gap or double apply every later value is off too: the first few say enough.
    for (const g of v.gaps.slice(0, 10)) anomalies.push(`page ${p.id}: ${g}`);
    if (v.gaps.length > 10) anomalies.push(`page ${p.id}: ${v.gaps.length - 10} more values that did not follow the state's`);
    for (const e of v.errors) anomalies.push(`page ${p.id}: model error ${e}`);
    figures.models += v.models;
    figures.events += v.applied;
    figures.recoveries += v.recoveries;
    figures.resyncs += v.syncs - v.models; // each model's first sync is its bootstrap
    figures.visible += v.visible;
    figures.duplicate += v.duplicate;
    console.log(`# page ${p.id}: ${v.models} models, ${v.applied} applied, ${v.visible} skipped as in the snapshot, ${v.duplicate} re-sent skipped, ${v.syncs} syncs, ${v.recoveries} recoveries`);
  }
  anomalies.push(...errors);
  console.log(`PAGES FIGURES ${JSON.stringify(figures)}`);
} finally {
  await browser.close();
}
