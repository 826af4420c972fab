// Lifecycle: when a model follows its channel (listeners, pause/resume, a hidden page, the network
// back online, a machine that slept), how it fails and recovers, and that dispose and close leave
// nothing behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelError, MutationError } from '../dist/index.js';
import { newClient, settle, tags, counter } from './fake.mjs';

// A page's document and window, as the client listens to them.
class FakePage {
  constructor() {
    this.document = Object.assign(new EventTarget(), { visibilityState: 'visible' });
    this.window = new EventTarget();
  }
  show(state) {
    this.document.visibilityState = state;
    this.document.dispatchEvent(new Event('visibilitychange'));
  }
}

const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

test('status: initialized until the first listener, syncing while bootstrapping, then ready', async (t) => {
  const { client, transport } = newClient();
  t.after(() => client.close());
  const model = client.models.get(counter());
  assert.equal(model.status, 'initialized');
  assert.equal(transport.links.length, 0, 'nothing happens before a listener');
  const statuses = [];
  model.watch(() => statuses.push(model.current.status));
  assert.equal(model.status, 'syncing');
  const link = transport.current(model.channel);
  assert.equal(link.on, true);
  await link.bootstrap();
  await settle();
  assert.equal(model.status, 'ready');
  assert.deepEqual(statuses.at(-1), 'ready');
  link.h.subscribing(); // the connection dropped: reconnecting
  assert.equal(model.status, 'syncing');
  link.recover();
  assert.equal(model.status, 'ready');
});

test('models.get: one live model per channel; a new one after dispose', async (t) => {
  const { client } = newClient();
  t.after(() => client.close());
  const a = client.models.get(counter());
  assert.equal(client.models.get(counter()), a);
  assert.notEqual(client.models.get(counter({ channel: 'outbox:other' })), a);
  a.dispose();
  assert.equal(a.status, 'disposed');
  const b = client.models.get(counter());
  assert.notEqual(b, a);
  assert.throws(() => a.subscribe(() => {}), (e) => e instanceof ModelError && e.reason === 'disposed');
  await assert.rejects(a.optimistic({ mutationId: 'x', name: 'n', data: {} }), (e) => e instanceof MutationError && e.reason === 'disposed');
});

test('pause keeps pending mutations and the stream position; resume catches up from it', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client, transport } = newClient();
  t.after(() => client.close());
  const model = client.models.get(counter({ optimisticTimeoutMs: 1000 }));
  model.subscribe(() => {});
  const link = transport.current(model.channel);
  await link.bootstrap();
  const [confirmed] = await model.optimistic({ mutationId: 'm1', name: 'add', data: { by: 1 } });
  model.pause();
  assert.equal(model.status, 'paused');
  assert.equal(link.on, false);
  t.mock.timers.tick(5000); // no timeout while paused
  await settle();
  assert.equal(model.current.pending.length, 1);
  model.resume();
  assert.equal(model.status, 'syncing');
  assert.equal(transport.current(model.channel), link, 'the same link: it recovers from its position, no new bootstrap');
  assert.equal(link.starts, 2);
  link.recover();
  link.publish({ by: 1 }, tags(120, { 'mutation-id': 'm1' }));
  assert.equal((await confirmed).xid, '120');
  assert.equal(model.stats.syncs, 1);
  assert.equal(model.stats.recoveries, 1, 'the resubscribe resumed from history: a recovery, not a sync');
});

test('the last listener gone stops following (after the current task); one coming back in the same task keeps it', async (t) => {
  const { client, transport } = newClient();
  t.after(() => client.close());
  const model = client.models.get(counter());
  let off = model.subscribe(() => {});
  const link = transport.current(model.channel);
  await link.bootstrap();
  // React's strict mode: unsubscribe and subscribe again at once.
  off();
  off = model.watch(() => {});
  await settle();
  assert.equal(link.on, true);
  assert.equal(link.starts, 1);
  off();
  off(); // twice does nothing
  await settle();
  assert.equal(link.on, false);
  assert.equal(model.status, 'paused');
  model.subscribe(() => {});
  assert.equal(link.on, true);
  assert.equal(model.status, 'syncing');
});

test('a hidden page pauses every model after pauseWhenHiddenMs; visible again, they catch up', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  const page = new FakePage();
  const { client, transport } = newClient({ environment: page, pauseWhenHiddenMs: 3000 });
  t.after(() => client.close());
  const a = client.models.get(counter());
  const b = client.models.get(counter({ channel: 'outbox:b' }));
  a.subscribe(() => {});
  b.subscribe(() => {});
  await transport.current(a.channel).bootstrap();
  await transport.current(b.channel).bootstrap();
  page.show('hidden');
  t.mock.timers.tick(2999);
  assert.equal(a.status, 'ready', 'a short glance elsewhere changes nothing');
  page.show('visible');
  page.show('hidden');
  t.mock.timers.tick(2999);
  assert.equal(a.status, 'ready', 'the delay starts again');
  t.mock.timers.tick(1);
  assert.equal(a.status, 'paused');
  assert.equal(b.status, 'paused');
  assert.equal(transport.started(), 0, 'no channel followed while hidden');
  b.pause(); // the app's own pause outlasts visibility
  page.show('visible');
  assert.equal(a.status, 'syncing');
  assert.equal(b.status, 'paused');
  transport.current(a.channel).recover();
  assert.equal(a.status, 'ready');
  b.resume();
  assert.equal(b.status, 'syncing');
});

test('a model subscribed while the page is already hidden waits for it to be visible', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  const page = new FakePage();
  page.document.visibilityState = 'hidden';
  const { client, transport } = newClient({ environment: page, pauseWhenHiddenMs: 0 });
  t.after(() => client.close());
  const m = client.models.get(counter());
  m.subscribe(() => {});
  t.mock.timers.tick(0);
  assert.equal(m.status, 'paused');
  assert.equal(transport.started(), 0);
  page.show('visible');
  assert.equal(m.status, 'syncing');
});

test('the network back online, and a machine that slept (a timer gap), reconnect', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval', 'Date'] });
  const page = new FakePage();
  const { client, transport } = newClient({ environment: page });
  t.after(() => client.close());
  const m = client.models.get(counter());
  m.subscribe(() => {});
  page.window.dispatchEvent(new Event('online'));
  assert.equal(transport.reconnects, 1);
  for (let i = 0; i < 30; i++) t.mock.timers.tick(2000); // awake for a minute: no gap
  assert.equal(transport.reconnects, 1);
  // Asleep: the clock jumps without the timer firing in between.
  t.mock.timers.setTime(Date.now() + 30 * 60_000);
  t.mock.timers.tick(2000);
  assert.equal(transport.reconnects, 2);
});

test('repeated failed syncs end in errored with the cause; resume tries again', async (t) => {
  const { client, transport } = newClient();
  t.after(() => client.close());
  let fail = true;
  const m = client.models.get(counter({
    sync: async () => {
      if (fail) throw new Error('502 Bad Gateway');
      return { data: { n: 1 }, bootstrap: { position: { offset: 0, epoch: 'e' }, snapshot: '5:5:' } };
    },
  }));
  const errs = [];
  m.subscribe((err) => err && errs.push(err));
  const link = transport.current(m.channel);
  for (let i = 1; i <= 4; i++) await link.failBootstrap();
  assert.equal(m.status, 'syncing', 'retried with backoff');
  await link.failBootstrap();
  assert.equal(m.status, 'errored');
  await settle();
  assert.equal(errs.length, 1);
  assert.ok(errs[0] instanceof ModelError && errs[0].reason === 'sync');
  assert.match(errs[0].message, /502 Bad Gateway \(5 attempts in a row\)/);
  fail = false;
  m.resume();
  await transport.current(m.channel).bootstrap();
  assert.equal(m.status, 'ready');
  assert.deepEqual(m.current.data, { n: 1 });
});

test('a malformed bootstrap is a failed sync that says what is wrong', async (t) => {
  const { client, transport } = newClient();
  t.after(() => client.close());
  const m = client.models.get(counter({ sync: async () => ({ data: {}, bootstrap: { position: { offset: 0, epoch: 'e' }, snapshot: '9:1:' } }) }));
  m.subscribe(() => {});
  const link = transport.current(m.channel);
  for (let i = 0; i < 5; i++) await link.failBootstrap();
  assert.equal(m.status, 'errored');
  assert.match(m.current.error.message, /sync: parse snapshot "9:1:": xmin 9 is above xmax 1/);
});

test('a refused subscription (no permission) errors the model at once', async (t) => {
  const { client, transport } = newClient();
  t.after(() => client.close());
  const m = client.models.get(counter());
  m.subscribe(() => {});
  const link = transport.current(m.channel);
  await link.bootstrap();
  link.h.refused(new Error('permission denied (103)'));
  assert.equal(m.status, 'errored');
  assert.equal(m.current.error.reason, 'subscribe');
  assert.match(m.current.error.message, /subscribe to outbox:counter: permission denied \(103\)/);
});

test('dispose and close leave no timers and no subscriptions behind', async (t) => {
  const before = timers();
  const page = new FakePage();
  const { client, transport } = newClient({ environment: page });
  const a = client.models.get(counter());
  const b = client.models.get(counter({ channel: 'outbox:b' }));
  a.subscribe(() => {});
  b.subscribe(() => {});
  await transport.current(a.channel).bootstrap();
  await transport.current(b.channel).bootstrap();
  const [ca] = await a.optimistic({ mutationId: 'm1', name: 'add', data: { by: 1 } });
  const [cb] = await b.optimistic({ mutationId: 'm2', name: 'add', data: { by: 1 } });
  page.show('hidden');
  assert.ok(timers() > before, 'pending timeouts, the sleep detector and the hidden delay run');
  a.dispose();
  await assert.rejects(ca, (e) => e.reason === 'disposed');
  assert.equal(transport.links.find((l) => l.channel === a.channel).closed, true);
  client.close();
  await assert.rejects(cb, (e) => e.reason === 'disposed');
  assert.equal(b.status, 'disposed');
  assert.ok(transport.links.every((l) => l.closed), 'every link closed');
  assert.equal(transport.closed, true);
  assert.equal(timers(), before, 'no timer left');
  page.show('visible'); // the client no longer listens
  assert.equal(b.status, 'disposed');
  await settle();
});
