// The page: bootstraps from the app's state endpoint, follows the board's Centrifugo channel
// with the official client (its getState runs the bootstrap on the first subscribe and again
// whenever Centrifugo cannot recover the position, e.g. a new epoch), and shows every change at
// once, pending until its event confirms it or rolls it back.

import { Centrifuge } from './vendor/centrifuge.js';
import { BoardModel } from './board.js';

const $ = (id) => document.getElementById(id);
// The page's name, kept across reloads of this tab (the demo has no login).
let user = new URLSearchParams(location.search).get('user') ?? sessionStorage.getItem('user');
if (!user) user = 'guest-' + crypto.randomUUID().slice(0, 4);
sessionStorage.setItem('user', user);
const model = new BoardModel();
// stats: the corner's figures; window.demo lets the browser tests read them.
const stats = { applied: 0, visible: 0, duplicate: 0, bootstraps: 0, latencies: [], connection: 'starting' };
window.demo = { model, stats };

async function fetchJSON(url, init) {
  const resp = await fetch(url, init);
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || `${resp.status} ${resp.statusText}`);
  return body;
}

let stateURL = ''; // /api/state?channel=<the board's channel>, once /api/config said it

// bootstrap loads state + snapshot + position and returns the position to subscribe from.
let prefetched = null;
async function bootstrap() {
  const st = prefetched ?? (await fetchJSON(stateURL));
  prefetched = null;
  notify(model.load({ ...st.data, snapshot: st.bootstrap.snapshot, channel: model.channel || config.channel }));
  stats.bootstraps++;
  render();
  return st.bootstrap.position;
}

function onPublication(ctx) {
  const { decision, notices } = model.onPublication(ctx.data, ctx.tags ?? {});
  stats[decision === 'apply' ? 'applied' : decision]++;
  if (decision === 'apply') {
    render(); // synchronous: the DOM holds the change when the latency is taken
    stats.latencies.push(Date.now() - ctx.data.at);
  }
  notify(notices);
  renderFigures();
}

// mutate shows the change at once (pending) and sends it; the event settles it.
async function mutate(m) {
  const mutation = { mutation_id: crypto.randomUUID(), user, ...m };
  model.propose(mutation);
  render();
  const data = { task_id: m.task_id };
  if (m.op === 'add') data.title = m.title;
  if (m.op === 'toggle') data.done = m.done;
  const body = { mutationId: mutation.mutation_id, name: m.op, data };
  // One request at a time, in the order made: a page's own changes must not overtake each other
  // (a toggle sent before the add of its task would be refused).
  sending = sending.then(async () => {
    try {
      const out = await fetchJSON('/api/mutations', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(15000),
      });
      notify(model.answered(mutation.mutation_id, out));
    } catch (err) {
      notify(model.failed(mutation.mutation_id, err.message));
    }
    render();
  });
}
let sending = Promise.resolve();

function notify(notices) {
  for (const n of notices) {
    const p = document.createElement('p');
    p.textContent = n.text;
    p.dataset.kind = n.kind;
    $('notices').prepend(p);
    setTimeout(() => p.remove(), 12000);
  }
}

function render() {
  const ul = $('tasks');
  const rows = model.view();
  const keep = new Set(rows.map((r) => r.id));
  for (const li of [...ul.children]) if (!keep.has(li.dataset.id)) li.remove();
  let prev = null;
  for (const r of rows) {
    let li = ul.querySelector(`li[data-id="${CSS.escape(r.id)}"]`);
    if (!li) li = newRow(r.id);
    const box = li.querySelector('input');
    box.checked = r.done;
    li.querySelector('label').textContent = r.title;
    li.querySelector('button').setAttribute('aria-label', `Delete ${r.title}`);
    li.querySelector('.state').textContent = r.pending ? (r.deleting ? 'deleting…' : 'saving…') : '';
    li.dataset.done = r.done;
    li.dataset.pending = r.pending;
    li.dataset.deleting = !!r.deleting;
    const want = prev ? prev.nextSibling : ul.firstChild;
    if (li !== want) ul.insertBefore(li, want);
    prev = li;
  }
  const b = model.board;
  if (b) $('counts').textContent = `${b.open_tasks} of ${b.open_limit} open · ${b.tasks} of ${b.task_limit} tasks`;
  renderFigures();
}

function newRow(id) {
  const li = document.createElement('li');
  li.dataset.id = id;
  const box = document.createElement('input');
  box.type = 'checkbox';
  box.id = 'task-' + id;
  const label = document.createElement('label');
  label.htmlFor = box.id;
  const state = document.createElement('span');
  state.className = 'state';
  const del = document.createElement('button');
  del.type = 'button';
  del.textContent = '×';
  box.addEventListener('change', () => {
    const t = model.view().find((r) => r.id === id);
    mutate({ op: 'toggle', task_id: id, done: box.checked, title: t?.title });
  });
  del.addEventListener('click', () => {
    const t = model.view().find((r) => r.id === id);
    mutate({ op: 'delete', task_id: id, title: t?.title });
  });
  li.append(box, label, state, del);
  return li;
}

function renderFigures() {
  $('connection').textContent = stats.connection;
  $('connection').dataset.state = stats.connection;
  $('applied').textContent = String(stats.applied);
  const last = stats.latencies.at(-1);
  $('latency').textContent = last === undefined ? '–' : `${last} ms`;
  $('bootstraps').textContent = String(stats.bootstraps);
}

$('add').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('new-title');
  const title = input.value.trim();
  if (!title) return;
  input.value = '';
  mutate({ op: 'add', task_id: crypto.randomUUID(), title });
});

let config = null;
async function start() {
  $('user').textContent = user;
  // The demo's login (any name): the session cookie, not the URL, says who asks for tokens.
  await fetchJSON('/api/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user }) });
  config = await fetchJSON('/api/config');
  stateURL = `/api/state?channel=${encodeURIComponent(config.channel)}`;
  prefetched = await fetchJSON(stateURL);
  const centrifuge = new Centrifuge(config.centrifugo, {
    getToken: async () => (await fetchJSON('/api/token')).token,
  });
  centrifuge.on('state', (ctx) => {
    stats.connection = ctx.newState;
    renderFigures();
  });
  // The board's channel is private: a subscription token, issued after the app's check.
  const sub = centrifuge.newSubscription(config.channel, {
    getState: bootstrap,
    getToken: async () => (await fetchJSON(`/api/subscription-token?channel=${encodeURIComponent(config.channel)}`)).token,
  });
  sub.on('publication', onPublication);
  sub.on('error', (ctx) => console.warn('subscription:', ctx.error?.message ?? ctx));
  sub.subscribe();
  centrifuge.connect();
  window.demo.centrifuge = centrifuge;
}

start().catch((err) => {
  stats.connection = 'error';
  notify([{ kind: 'failed', text: `Cannot load the board: ${err.message}` }]);
  renderFigures();
});
