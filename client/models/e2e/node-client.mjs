// The package in Node against real services: run by integration/models_node_test.go with an app
// (client/modelserver's handlers over a counter table), Centrifugo and the relay. It checks the
// bootstrap, an optimistic change confirmed by its event through Kafka and Centrifugo, a change of
// another writer, a rejected change rolled back with the server's reason, and that close() leaves
// nothing running (the process must exit by itself). Node 20 needs --experimental-websocket.
//
//   APP=http://127.0.0.1:PORT CENTRIFUGO=ws://…/connection/websocket CHANNEL=outbox:… node e2e/node-client.mjs
import assert from 'node:assert/strict';
import { ModelsClient, MutationError } from '../dist/index.js';

const { APP, CENTRIFUGO, CHANNEL } = process.env;
const api = async (path, body) => {
  const resp = await fetch(APP + path, body ? { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) } : {});
  const out = await resp.json();
  if (!resp.ok) throw new Error(`${path}: ${resp.status} ${out.error}`);
  return out;
};
const log = (...a) => console.log('node-client:', ...a);

const client = new ModelsClient({
  url: CENTRIFUGO,
  getToken: async () => (await api('/api/token')).token,
  getSubscriptionToken: async (channel) => (await api(`/api/subscription-token?channel=${encodeURIComponent(channel)}`)).token,
  websocket: globalThis.WebSocket,
});
const model = client.models.get({
  channel: CHANNEL,
  sync: () => api(`/api/state?channel=${encodeURIComponent(CHANNEL)}`),
  merge: (s, e) => ({ value: e.optimistic ? s.value + e.data.by : e.data.value }),
  optimisticTimeoutMs: 60_000,
});

// until resolves once the model's confirmed state satisfies ok.
const until = (ok, what) => new Promise((resolve, reject) => {
  const timer = setTimeout(() => { off(); reject(new Error(`timed out waiting for ${what}; state ${JSON.stringify(model.current)}`)); }, 60_000);
  const off = model.subscribe((err, s) => {
    if (err) { clearTimeout(timer); off(); reject(err); }
    else if (ok(s)) { clearTimeout(timer); queueMicrotask(off); resolve(s); }
  }, { optimistic: false });
});

const add = async (by) => {
  const mutationId = crypto.randomUUID();
  const data = { channel: CHANNEL, by, label: 'node' };
  return model.optimistic({ mutationId, name: 'add', data }, { commit: () => api('/api/mutations', { mutationId, name: 'add', data }) });
};

const keep = model.subscribe(() => {});
await until((s) => s.value === 1, 'the bootstrap (value 1)');
// The state is there once sync() answered; the model is ready once subscribed from its position.
await new Promise((resolve) => {
  const off = model.watch(() => model.status === 'ready' && (queueMicrotask(off), resolve()));
  if (model.status === 'ready') queueMicrotask(() => (off(), resolve()));
});
log('bootstrapped', JSON.stringify(model.current.confirmedData), 'syncs', model.stats.syncs);

const [confirmed] = await add(1);
assert.equal(model.current.data.value, 2, 'shown at once');
const ev = await confirmed;
assert.equal(ev.name, 'counter.changed');
assert.match(ev.position, /^[0-9A-F]{16}-[0-9A-F]{8}$/);
assert.match(ev.xid, /^[0-9]+$/);
assert.deepEqual(model.current.confirmedData, { value: 2 });
assert.deepEqual(model.current.pending, []);
log('confirmed by its event at', ev.position, 'xid', ev.xid);

// Another writer's change arrives as an event.
await api('/api/mutations', { mutationId: crypto.randomUUID(), name: 'add', data: { channel: CHANNEL, by: 1, label: 'other' } });
await until((s) => s.value === 3, 'another writer\'s change (value 3)');

// Refused: the counter stops at 3.
const [refused] = await add(1);
await assert.rejects(refused, (e) => e instanceof MutationError && e.reason === 'rejected' && e.message === 'the counter stops at 3');
assert.deepEqual(model.current.data, { value: 3 }, 'rolled back');
log('rejected and rolled back:', 'the counter stops at 3');

keep();
log('stats', JSON.stringify(model.stats));
assert.equal(model.stats.applied >= 2, true);
client.close();
assert.equal(model.status, 'disposed');
log('closed');
