// The page: a live model of the board (@pgoutbox/models, the package in client/models, loaded from
// its build through the import map in index.html) rendered into the DOM, and the user's changes
// made as optimistic updates: shown at once, confirmed or rolled back by the server's events.
// The board's logic is board.js's merge; everything else here is DOM.

import { ModelsClient } from '@pgoutbox/models';
import { merge, describe, confirmed } from './board.js';

const $ = (id) => document.getElementById(id);
// The page's name, kept across reloads of this tab (the demo's login takes any name).
let user = new URLSearchParams(location.search).get('user') ?? sessionStorage.getItem('user');
if (!user) user = 'guest-' + crypto.randomUUID().slice(0, 4);
sessionStorage.setItem('user', user);

async function fetchJSON(url, init) {
  const resp = await fetch(url, init);
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || `${resp.status} ${resp.statusText}`);
  return body;
}
const post = (url, body) => fetchJSON(url, {
  method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(15000),
});

// The corner's figures; window.demo lets the browser tests read them.
let model = null;
const arrived = []; // commit times of events applied since the last render
const stats = {
  latencies: [], // commit → screen, one per applied event
  get bootstraps() { return model?.stats.syncs ?? 0; },
  get applied() { return model?.stats.applied ?? 0; },
};
window.demo = { stats, confirmed: () => confirmed(model?.current.confirmedData) };

// mutate shows the change at once and sends it; the model settles it.
async function mutate(name, data) {
  const mutationId = crypto.randomUUID();
  const before = model.current.data?.tasks ?? [];
  const [done] = await model.optimistic({ mutationId, name, data }, { commit: () => post('/api/mutations', { mutationId, name, data }) });
  done.catch((err) => {
    const what = describe({ name, data }, before);
    if (err.reason === 'rejected') notify('rejected', `Rejected: ${what} — ${err.message}. Rolled back.`);
    else notify('failed', `Not saved: ${what} (${err.reason}: ${err.message})`);
  });
}

function notify(kind, text) {
  const p = document.createElement('p');
  p.textContent = text;
  p.dataset.kind = kind;
  $('notices').prepend(p);
  setTimeout(() => p.remove(), 12000);
}

function render() {
  const { data, status, error } = model.current;
  const rows = data?.tasks ?? [];
  const ul = $('tasks');
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
    li.dataset.pending = !!r.pending;
    li.dataset.deleting = !!r.deleting;
    const want = prev ? prev.nextSibling : ul.firstChild;
    if (li !== want) ul.insertBefore(li, want);
    prev = li;
  }
  const b = data?.board;
  if (b) $('counts').textContent = `${b.open_tasks} of ${b.open_limit} open · ${b.tasks} of ${b.task_limit} tasks`;
  // The DOM holds the events applied since the last render: their commit → screen latency.
  const now = Date.now();
  for (const at of arrived.splice(0)) stats.latencies.push(now - at);
  $('status').textContent = status;
  $('status').dataset.state = status;
  $('status').title = error?.message ?? '';
  $('applied').textContent = String(stats.applied);
  const last = stats.latencies.at(-1);
  $('latency').textContent = last === undefined ? '–' : `${last} ms`;
  $('bootstraps').textContent = String(stats.bootstraps);
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
  box.addEventListener('change', () => mutate('toggle', { task_id: id, done: box.checked }));
  del.addEventListener('click', () => mutate('delete', { task_id: id }));
  li.append(box, label, state, del);
  return li;
}

$('add').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('new-title');
  const title = input.value.trim();
  if (!title || !model) return;
  input.value = '';
  mutate('add', { task_id: crypto.randomUUID(), title });
});

async function start() {
  $('user').textContent = user;
  // The demo's login (any name): the session cookie, not the URL, says who asks for tokens.
  await post('/api/login', { user });
  const config = await fetchJSON('/api/config');
  const client = new ModelsClient({
    url: config.centrifugo,
    getToken: async () => (await fetchJSON('/api/token')).token,
    // The board's channel is private: a subscription token, issued after the app's check.
    getSubscriptionToken: async (channel) => (await fetchJSON(`/api/subscription-token?channel=${encodeURIComponent(channel)}`)).token,
  });
  model = client.models.get({
    channel: config.channel,
    sync: () => fetchJSON(`/api/state?channel=${encodeURIComponent(config.channel)}`),
    merge,
    onEvent: (event, decision) => {
      if (decision === 'apply' && event.data?.at) arrived.push(event.data.at);
    },
  });
  model.watch(render);
  render();
}

start().catch((err) => {
  $('status').textContent = 'error';
  notify('failed', `Cannot load the board: ${err.message}`);
});
