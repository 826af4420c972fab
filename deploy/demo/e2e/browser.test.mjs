// Browser tests of the demo, in Debian's Chromium driven by playwright-core: two pages on a
// running demo (integration/demo_browser_test.go starts PostgreSQL's outbox, the relay, Kafka's
// topic, Centrifugo and the app, then runs this file).
//
//   DEMO_URL       the app, e.g. http://127.0.0.1:8080
//   DEMO_CONTROL   the Go test's control endpoint: POST /relay/kill, POST /relay/start
//   DEMO_ARTIFACTS where screenshots of failures go
//   DEMO_SCREENSHOT  if set, also write the README's side-by-side screenshot there
//
// The tests act as a user would (locators by role and text) and wait for states, never for time.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launchChromium } from './chromium.mjs';

const URL = process.env.DEMO_URL ?? 'http://127.0.0.1:8080';
const CONTROL = process.env.DEMO_CONTROL;
const ARTIFACTS = process.env.DEMO_ARTIFACTS ?? 'test-results';
const WAIT = { timeout: 60_000 };

let browser, A, B;
const consoleErrors = [];

async function openPage(user) {
  // A context per user: its own storage, as two people on two machines.
  const ctx = await browser.newContext({ viewport: { width: 620, height: 760 } });
  const page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(`${user}: ${m.text()}`); });
  page.on('pageerror', (e) => consoleErrors.push(`${user}: ${e.message}`));
  await page.goto(`${URL}/?user=${user}`);
  await page.getByRole('definition').filter({ hasText: /^ready$/ }).waitFor(WAIT);
  return page;
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await launchChromium();
  await login();
  A = await openPage('alice');
  B = await openPage('bob');
});

after(async () => {
  await browser?.close();
});

// step is a test that saves both pages' screenshots when it fails.
function step(name, fn, opts = {}) {
  test(name, opts, async () => {
    try {
      await fn();
    } catch (err) {
      const slug = name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
      for (const [who, page] of [['A', A], ['B', B]]) {
        await page?.screenshot({ path: join(ARTIFACTS, `${slug}-${who}.png`), fullPage: true }).catch(() => {});
      }
      throw err;
    }
  });
}

// api is the app's HTTP API, used to write as another user would and to read the database's state,
// signed in as carol (the demo's login: its session cookie).
let session = '';
async function api(path, body) {
  const headers = { Cookie: session };
  if (body) headers['Content-Type'] = 'application/json';
  const resp = await fetch(URL + path, body ? { method: 'POST', headers, body: JSON.stringify(body) } : { headers });
  const out = await resp.json();
  if (!resp.ok) throw new Error(`${path}: ${resp.status} ${out.error}`);
  const cookie = resp.headers.get('set-cookie');
  if (cookie) session = cookie.split(';')[0];
  return out;
}
let boardChannel = '';
async function login() {
  await api('/api/login', { user: 'carol' });
  boardChannel = (await api('/api/config')).channel;
}
const mutate = ({ op, ...data }) => api('/api/mutations', { mutationId: crypto.randomUUID(), name: op, data });
const dbState = async () => (await api(`/api/state?channel=${encodeURIComponent(boardChannel)}`)).data;

async function control(what) {
  const resp = await fetch(`${CONTROL}/${what.includes('/') ? what : 'relay/' + what}`, { method: 'POST' });
  if (!resp.ok) throw new Error(`${what}: ${resp.status} ${await resp.text()}`);
}

// clearBoard deletes every task, so each test starts from an empty board.
async function clearBoard() {
  for (const t of (await dbState()).tasks) await mutate({ op: 'delete', task_id: t.id });
  await Promise.all([A, B].map((p) => p.locator('#tasks li').first().waitFor({ state: 'detached', ...WAIT })));
}

// showsDatabase waits until the page shows exactly the database's tasks, none pending. The
// database is read again on every round: a change the page made just before (its request still
// queued behind the page's earlier ones) reaches the database after a first read, and a page that
// shows it correctly must not be compared with a state older than its own change. (Reading the
// database once made the relay-SIGKILL case wait a whole minute for a state the page had rightly
// left behind, on a loaded machine.)
async function showsDatabase(page) {
  const deadline = Date.now() + WAIT.timeout;
  for (;;) {
    const want = (await dbState()).tasks.map(({ id, title, done }) => ({ id, title, done, pending: 'false' }));
    try {
      await page.waitForFunction((want) => {
        const got = [...document.querySelectorAll('#tasks li')].map((li) => ({
          id: li.dataset.id, title: li.querySelector('label').textContent, done: li.querySelector('input').checked, pending: li.dataset.pending,
        }));
        return JSON.stringify(got) === want;
      }, JSON.stringify(want), { timeout: Math.max(1, Math.min(3_000, deadline - Date.now())) });
      return want.length;
    } catch (err) {
      if (Date.now() >= deadline) throw new Error(`the page does not show the database's ${want.length} tasks: ${err.message}`);
    }
  }
}

const task = (page, title) => page.getByRole('listitem').filter({ hasText: title });

async function addOnPage(page, title) {
  await page.getByRole('textbox', { name: 'New task' }).fill(title);
  await page.getByRole('button', { name: 'Add' }).click();
}

const quantile = (xs, q) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1)))]; };

step('a task added on page A appears on page B', async () => {
  await clearBoard();
  const t0 = Date.now();
  await addOnPage(A, 'Write the release notes');
  await task(A, 'Write the release notes').waitFor(WAIT); // at once, before any event
  await task(B, 'Write the release notes').waitFor(WAIT);
  const seen = Date.now() - t0;
  await task(A, 'Write the release notes').filter({ hasNotText: 'saving…' }).waitFor(WAIT);
  await B.getByRole('checkbox', { name: 'Write the release notes' }).check();
  await A.getByRole('checkbox', { name: 'Write the release notes', checked: true }).waitFor(WAIT);
  console.log(`# click on A → task on B: ${seen} ms`);
  await showsDatabase(A);
  await showsDatabase(B);
});

step('a rejected change rolls back on page A, with a notice, and never appears on page B', async () => {
  await clearBoard();
  const { board } = await dbState();
  for (let i = 1; i <= board.open_limit; i++) await mutate({ op: 'add', task_id: crypto.randomUUID(), title: `Open task ${i}` });
  const full = `${board.open_limit} of ${board.open_limit} open`;
  await A.getByText(full).waitFor(WAIT);
  await B.getByText(full).waitFor(WAIT);
  // B records every task title it ever shows from now on.
  await B.evaluate(() => {
    window.seenTitles = new Set();
    new MutationObserver(() => document.querySelectorAll('#tasks label').forEach((l) => window.seenTitles.add(l.textContent)))
      .observe(document.getElementById('tasks'), { subtree: true, childList: true, characterData: true });
  });

  await addOnPage(A, 'One task too many');
  await A.getByRole('alert').getByText(`Rejected: adding “One task too many” — the board allows at most ${board.open_limit} open tasks`).waitFor(WAIT);
  await task(A, 'One task too many').waitFor({ state: 'detached', ...WAIT });
  // Events are in order on the channel: once B shows a later change, it has had the rejection.
  const first = (await dbState()).tasks[0];
  await mutate({ op: 'toggle', task_id: first.id, done: true });
  await B.getByRole('checkbox', { name: first.title, checked: true }).waitFor(WAIT);
  assert.equal(await B.evaluate(() => window.seenTitles.has('One task too many')), false, 'page B showed the rejected task');
  assert.equal(await B.getByText('One task too many').count(), 0);
  assert.equal(await B.getByRole('alert').getByText('Rejected').count(), 0, 'page B got a notice for A\'s change');
  await showsDatabase(A);
  await showsDatabase(B);
});

step('the relay SIGKILLed and restarted while page A edits: both pages end equal to the database', async () => {
  await clearBoard();
  for (let i = 1; i <= 3; i++) await addOnPage(A, `Before the crash ${i}`);
  await task(B, 'Before the crash 3').waitFor(WAIT);
  await control('kill');
  for (let i = 1; i <= 3; i++) await addOnPage(A, `During the outage ${i}`);
  await A.getByRole('checkbox', { name: 'Before the crash 1' }).check();
  // Committed, but no event can arrive while the relay is down: A shows them pending.
  await task(A, 'During the outage 3').filter({ hasText: 'saving…' }).waitFor(WAIT);
  await control('start');
  for (let i = 1; i <= 3; i++) await addOnPage(A, `After the restart ${i}`);
  await A.getByRole('checkbox', { name: 'During the outage 2' }).check();
  const n = await showsDatabase(A);
  await showsDatabase(B);
  assert.equal(n, 9);
});

step('Centrifugo restarted (its history lost, a new epoch): both pages bootstrap again and end equal to the database', async () => {
  await clearBoard();
  const before = await Promise.all([A, B].map((p) => p.evaluate(() => window.demo.stats.bootstraps)));
  await addOnPage(A, 'Before the restart');
  await task(B, 'Before the restart').waitFor(WAIT);
  await control('centrifugo/restart');
  await addOnPage(A, 'After the restart');
  await mutate({ op: 'add', task_id: crypto.randomUUID(), title: 'From another user' });
  for (const [i, p] of [A, B].entries()) {
    await p.waitForFunction((n) => window.demo.stats.bootstraps > n, before[i], WAIT);
    await p.getByRole('definition').filter({ hasText: /^ready$/ }).waitFor(WAIT);
  }
  assert.equal(await showsDatabase(A), 3);
  await showsDatabase(B);
});

step('a page reloaded in the middle of a burst of writes ends equal to the database', async () => {
  await clearBoard();
  const ids = [];
  for (let i = 1; i <= 6; i++) { const id = crypto.randomUUID(); ids.push(id); await mutate({ op: 'add', task_id: id, title: `Burst task ${i}` }); }
  const burst = (async () => {
    for (let i = 0; i < 80; i++) await mutate({ op: 'toggle', task_id: ids[i % ids.length], done: Math.floor(i / ids.length) % 2 === 0 });
  })();
  await B.getByRole('checkbox', { name: 'Burst task 6', checked: true }).waitFor(WAIT); // mid-burst
  await B.reload();
  await burst;
  await showsDatabase(B);
  await showsDatabase(A);
  assert.ok(await B.evaluate(() => window.demo.stats.bootstraps) >= 1);
});

step('commit→screen latency over a few hundred changes', async () => {
  await clearBoard();
  const id = crypto.randomUUID();
  await mutate({ op: 'add', task_id: id, title: 'Flip me' });
  await task(B, 'Flip me').waitFor(WAIT);
  const before = await B.evaluate(() => window.demo.stats.latencies.length);
  const N = 300;
  for (let i = 0; i < N; i++) await mutate({ op: 'toggle', task_id: id, done: i % 2 === 0 });
  await B.waitForFunction((n) => window.demo.stats.latencies.length >= n, before + N, WAIT);
  const l = await B.evaluate((from) => window.demo.stats.latencies.slice(from), before);
  assert.equal(l.length, N);
  console.log(`# commit→screen latency over ${N} changes on page B: p50 ${quantile(l, 0.5)} ms, p99 ${quantile(l, 0.99)} ms, max ${Math.max(...l)} ms`);
  await showsDatabase(B);
});

step('the README screenshot: two pages side by side', async () => {
  await clearBoard();
  for (const title of ['Write the release notes', 'Tag v1.0', 'Announce on the mailing list', 'Update the docs site']) {
    await mutate({ op: 'add', task_id: crypto.randomUUID(), title });
  }
  const { tasks } = await dbState();
  await mutate({ op: 'toggle', task_id: tasks[0].id, done: true });
  await B.getByRole('checkbox', { name: 'Write the release notes', checked: true }).waitFor(WAIT);
  await addOnPage(A, 'Book the launch party');
  for (const page of [A, B]) await task(page, 'Book the launch party').filter({ hasNotText: 'saving…' }).waitFor(WAIT);
  // The two pages' pictures side by side, composed in a third page.
  const shots = await Promise.all([A, B].map(async (p) => (await p.screenshot()).toString('base64')));
  const ctx = await browser.newContext({ viewport: { width: 1244, height: 760 } });
  const page = await ctx.newPage();
  await page.setContent(`<body style="margin:0;display:flex;gap:4px;background:#9aa3b5">${shots.map((b) => `<img src="data:image/png;base64,${b}">`).join('')}</body>`);
  await page.screenshot({ path: process.env.DEMO_SCREENSHOT });
  await ctx.close();
}, { skip: !process.env.DEMO_SCREENSHOT && 'DEMO_SCREENSHOT not set' });

step('the API: a replayed mutation writes nothing, a NUL title is a 400, tokens only after the checks', async () => {
  await clearBoard();
  const body = { mutationId: crypto.randomUUID(), name: 'add', data: { task_id: crypto.randomUUID(), title: 'Once only' } };
  const first = await api('/api/mutations', body);
  const again = await api('/api/mutations', body);
  assert.deepEqual(again, first, 'a replay answers the first outcome');
  assert.equal((await dbState()).tasks.filter((t) => t.title === 'Once only').length, 1);
  const status = async (path, init) => (await fetch(URL + path, init)).status;
  const post = (b, cookie = session) => ({ method: 'POST', headers: { 'Content-Type': 'application/json', Cookie: cookie }, body: JSON.stringify(b) });
  assert.equal(await status('/api/mutations', post({ mutationId: crypto.randomUUID(), name: 'add', data: { task_id: 'x', title: 'a\u0000b' } })), 400);
  assert.equal(await status('/api/mutations', post({ mutationId: crypto.randomUUID(), name: 'add', data: { task_id: 'x', title: 'no session' } }, '')), 401);
  assert.equal(await status('/api/token'), 401, 'a connection token without a session');
  assert.equal(await status(`/api/subscription-token?channel=${encodeURIComponent(boardChannel)}`, { headers: { Cookie: session } }), 200);
  assert.equal(await status('/api/subscription-token?channel=outbox%3Auser-alice', { headers: { Cookie: session } }), 403, 'carol asked for alice\'s channel');
  assert.equal(await status('/api/state?channel=outbox%3Auser-alice', { headers: { Cookie: session } }), 403);
  await showsDatabase(A);
});

step('no console errors on either page', async () => {
  // Chromium itself logs a refused WebSocket while Centrifugo restarts; the page logs nothing.
  const browserOwn = /^\w+: WebSocket connection to 'ws:\/\/127\.0\.0\.1:\d+\/connection\/websocket' failed: .*ERR_CONNECTION_REFUSED$/;
  assert.deepEqual(consoleErrors.filter((e) => !browserOwn.test(e)), []);
});
