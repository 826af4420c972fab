// One page of the live-models browser tests: a ModelsClient with a model per channel, and
// window.harness, which the driver calls to write, to hide the page, and to read what the page
// holds. The property test (deploy/demo/e2e/models-property.test.mjs) names its channels by
// count (?counters=3&lists=1); the cluster fault tests (deploy/demo/e2e/cluster-pages.mjs) list
// them (?channels=a,b).
import { ModelsClient } from '/models/index.js';

const q = new URLSearchParams(location.search);
const page = q.get('page');
const channels = q.get('channels') ? q.get('channels').split(',') : [
  ...Array.from({ length: Number(q.get('counters')) }, (_, i) => `outbox:ctr-${i}`),
  ...Array.from({ length: Number(q.get('lists')) }, (_, i) => `outbox:list-${i}`),
];

async function api(path, body) {
  const init = { headers: { 'X-Page': page } };
  if (body !== undefined) Object.assign(init, { method: 'POST', body: JSON.stringify(body), headers: { 'X-Page': page, 'Content-Type': 'application/json' } });
  const resp = await fetch(path, init);
  const out = await resp.json();
  if (!resp.ok) throw new Error(`${path}: ${resp.status} ${out.error}`);
  return out;
}

const applied = new Set(); // channel + position of every event applied
const record = { applied: 0, twice: [], gaps: [], errors: [], settled: {}, latencies: [] };

// merge adds: applying an event twice, or missing one, leaves a sum the database does not have.
// 'counter' is the cluster tests' event, {v: the channel's counter after its commit}: it adds 1,
// and a v that does not follow the state's value is recorded when it happens (a gap, or an
// event applied twice), not only in the final sum.
function merge(state, ev) {
  if (ev.name === 'incr') return { value: state.value + ev.data.by };
  if (ev.name === 'counter') {
    if (ev.data.v !== state.value + 1) record.gaps.push(`${ev.channel}: event ${ev.data.v} applied on ${state.value} at ${ev.position}`);
    return { value: state.value + 1 };
  }
  if (ev.name === 'put') {
    const old = state.items[ev.data.id];
    return { items: { ...state.items, [ev.data.id]: { title: ev.data.title, edits: (old?.edits ?? 0) + 1 } } };
  }
  return state;
}

// The page's visibility, as the driver sets it (the SDK takes its environment as an option).
const doc = Object.assign(new EventTarget(), { visibilityState: 'visible' });
const cfg = await api('/config');
const client = new ModelsClient({
  url: cfg.centrifugo,
  getToken: async () => (await api('/api/token')).token,
  getSubscriptionToken: async (channel) => (await api(`/api/subscription-token?channel=${encodeURIComponent(channel)}`)).token,
  pauseWhenHiddenMs: 300,
  environment: { document: doc, window },
});

const models = new Map();
for (const channel of channels) {
  const model = client.models.get({
    channel,
    sync: () => api(`/api/state?channel=${encodeURIComponent(channel)}`),
    merge,
    optimisticTimeoutMs: 180_000,
    onEvent: (ev, decision) => {
      if (decision !== 'apply') return;
      const key = `${channel} ${ev.position}`;
      if (applied.has(key)) record.twice.push(key);
      applied.add(key);
      record.applied++;
    },
  });
  model.subscribe((err) => { if (err) record.errors.push(`${channel}: ${err.message}`); });
  models.set(channel, model);
}

window.harness = {
  // mutate makes one optimistic write and records how it settles (at most once, by construction
  // of a promise; the driver checks that each one did, and as the server's ledger says).
  async mutate(channel, name, data) {
    const t0 = performance.now(); // the click: confirmation latency runs from here
    const mutationId = crypto.randomUUID();
    const m = { mutationId, name, data };
    record.settled[mutationId] = null;
    const [confirmed] = await models.get(channel).optimistic(m, {
      commit: () => api('/api/mutations', { mutationId, name, data: { channel, data } }),
    });
    confirmed.then(() => {
      record.settled[mutationId] = 'confirmed';
      record.latencies.push(performance.now() - t0);
    }, (err) => { record.settled[mutationId] = err.reason; });
    return mutationId;
  },
  hide() { doc.visibilityState = 'hidden'; doc.dispatchEvent(new Event('visibilitychange')); },
  show() { doc.visibilityState = 'visible'; doc.dispatchEvent(new Event('visibilitychange')); },
  // sleep freezes the page's thread, as a machine sleep freezes its timers.
  sleep(ms) { const end = Date.now() + ms; while (Date.now() < end); },
  confirmed() { return Object.fromEntries([...models].map(([c, m]) => [c, m.current.confirmedData])); },
  view() {
    return {
      pending: [...models.values()].reduce((n, m) => n + m.current.pending.length, 0),
      statuses: [...models.values()].map((m) => m.status),
      syncs: [...models.values()].reduce((n, m) => n + m.stats.syncs, 0),
      recoveries: [...models.values()].reduce((n, m) => n + m.stats.recoveries, 0),
      models: models.size,
      visible: [...models.values()].reduce((n, m) => n + m.stats.visible, 0),
      duplicate: [...models.values()].reduce((n, m) => n + m.stats.duplicate, 0),
      ...record,
    };
  },
};
document.getElementById('status').textContent = 'ready';
