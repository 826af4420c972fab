// The model: exact bootstrap, apply rules, and the optimistic layer (settled exactly once, rebased
// on every confirmed event), on a fake transport.
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { MutationError, ModelError, CONTROL_TAG, CONTROL_RESYNC } from '../dist/index.js';
import { newClient, settle, tags, counter } from './fake.mjs';

// started returns a model with one listener, bootstrapped from sync.
// The test's client is closed at its end: no model, timer or subscription outlives its test.
async function started(t, opts = {}) {
  const { client, transport } = newClient();
  t.after(() => client.close());
  const model = client.models.get(counter(opts));
  const seen = [];
  const confirmedSeen = [];
  model.subscribe((err, s) => seen.push(err ?? s));
  model.subscribe((err, s) => confirmedSeen.push(err ?? s), { optimistic: false });
  const link = transport.current(model.channel);
  await link.bootstrap();
  await settle();
  return { client, transport, model, link, seen, confirmedSeen };
}

test('bootstrap: the state read, then only the events its snapshot does not hold, each once, in order', async (t) => {
  const snapshot = '100:110:103,107';
  const { model, link, seen } = await started(t, {
    sync: async () => ({ data: { n: 10 }, bootstrap: { position: { offset: 4, epoch: 'e' }, snapshot } }),
  });
  assert.equal(model.status, 'ready');
  assert.deepEqual(seen, [{ n: 10 }]);
  link.publish({ by: 1 }, tags(99)); // committed before the read: in the state already
  link.publish({ by: 1 }, tags(105)); // likewise, between xmin and xmax
  const t103 = tags(103);
  link.publish({ by: 2 }, t103); // in progress at the read: not in the state
  link.publish({ by: 2 }, t103); // the same event again (a re-sent record)
  link.publish({ by: 4 }, tags(110)); // after the read
  link.publish({ by: 100 }, { ...tags(111), position: t103.position }); // at an older position: a replay
  await settle();
  assert.deepEqual(model.current.confirmedData, { n: 16 });
  assert.deepEqual(model.stats, { applied: 2, visible: 2, duplicate: 2, syncs: 1, recoveries: 0 });
  assert.deepEqual(seen.at(-1), { n: 16 });
});

test('listeners are called asynchronously, once per batch of changes, and once at subscribe on a ready model', async (t) => {
  const { model, link, seen } = await started(t);
  link.publish({ by: 1 }, tags(200));
  link.publish({ by: 1 }, tags(201));
  assert.equal(seen.length, 1, 'not synchronously');
  await settle();
  assert.deepEqual(seen, [{ n: 0 }, { n: 2 }]);
  const late = [];
  model.subscribe((err, s) => late.push(s));
  assert.deepEqual(late, []);
  await settle();
  assert.deepEqual(late, [{ n: 2 }]);
});

test('optimistic: shown at once over the confirmed state, confirmed by its own event', async (t) => {
  const { model, link, seen, confirmedSeen } = await started(t);
  const [confirmed] = await model.optimistic({ mutationId: 'm1', name: 'add', data: { by: 5 } });
  await settle();
  assert.deepEqual(model.current.data, { n: 5 });
  assert.deepEqual(model.current.confirmedData, { n: 0 });
  assert.deepEqual(model.current.pending.map((e) => e.mutationId), ['m1']);
  assert.deepEqual(seen.at(-1), { n: 5 });
  assert.deepEqual(confirmedSeen, [{ n: 0 }], 'a confirmed-only listener does not see the optimistic change');
  const tg = tags(300, { 'mutation-id': 'm1' });
  link.publish({ by: 5 }, tg);
  const ev = await confirmed;
  assert.equal(ev.mutationId, 'm1');
  assert.equal(ev.position, tg.position);
  assert.equal(ev.xid, '300');
  assert.deepEqual(ev.headers, tg);
  await settle();
  assert.deepEqual(model.current.data, { n: 5 }, 'no flicker: the confirmed state now holds it');
  assert.deepEqual(model.current.pending, []);
  assert.deepEqual(confirmedSeen.at(-1), { n: 5 });
});

test('rebase: every confirmed event re-runs merge under the pending events, in the order made', async (t) => {
  const order = [];
  const { model, link } = await started(t, {
    merge: (s, e) => {
      if (e.optimistic) order.push(e.mutationId);
      return { n: e.data.times ? s.n * e.data.times : s.n + e.data.by };
    },
  });
  await model.optimistic({ mutationId: 'a', name: 'add', data: { by: 1 } });
  await model.optimistic({ mutationId: 'b', name: 'mul', data: { times: 10 } });
  assert.deepEqual(model.current.data, { n: 10 }, '(0 + 1) * 10');
  order.length = 0;
  link.publish({ by: 2 }, tags(400)); // another page's change, confirmed first
  await settle();
  assert.deepEqual(model.current.confirmedData, { n: 2 });
  assert.deepEqual(model.current.data, { n: 30 }, '(2 + 1) * 10: rebased on the new confirmed state');
  assert.deepEqual(order, ['a', 'b']);
  link.publish({ by: 1 }, tags(401, { 'mutation-id': 'a' }));
  await settle();
  assert.deepEqual(model.current.data, { n: 30 });
  assert.deepEqual(model.current.pending.map((e) => e.mutationId), ['b']);
});

test('a rejected event rolls its optimistic event back with the server\'s reason, and is never merged', async (t) => {
  const merged = [];
  const { model, link } = await started(t, { merge: (s, e) => (merged.push(e.name), { n: s.n + e.data.by }) });
  const [confirmed] = await model.optimistic({ mutationId: 'm1', name: 'add', data: { by: 5 } });
  merged.length = 0;
  link.publish({ by: 5, reason: 'the board is full' }, tags(500, { 'mutation-id': 'm1', rejected: 'true', name: 'rejected' }));
  await assert.rejects(confirmed, (e) => e instanceof MutationError && e.reason === 'rejected' && e.message === 'the board is full' && e.mutationId === 'm1');
  await settle();
  assert.deepEqual(model.current.data, { n: 0 });
  assert.ok(!merged.includes('rejected'), 'merge saw the rejected event');
  // Another page's rejected event changes nothing here.
  link.publish({ reason: 'x' }, tags(501, { 'mutation-id': 'other', rejected: 'true' }));
  await settle();
  assert.deepEqual(model.current.confirmedData, { n: 0 });
});

test('commit: sent in the order made, one at a time; a rejected answer rolls back at once, a throw fails it', async (t) => {
  const { model, link } = await started(t);
  const calls = [];
  let release;
  const gate = new Promise((r) => (release = r));
  const commit = (id, answer) => async () => {
    calls.push(`start ${id}`);
    if (id === 'a') await gate;
    calls.push(`end ${id}`);
    if (answer instanceof Error) throw answer;
    return answer;
  };
  const [ca] = await model.optimistic({ mutationId: 'a', name: 'x', data: { by: 1 } }, { commit: commit('a', { xid: '600' }) });
  const [cb] = await model.optimistic({ mutationId: 'b', name: 'x', data: { by: 2 } }, { commit: commit('b', { xid: '601', rejected: true, reason: 'no' }) });
  const [cc] = await model.optimistic({ mutationId: 'c', name: 'x', data: { by: 4 } }, { commit: commit('c', new Error('network down')) });
  await settle();
  assert.deepEqual(calls, ['start a'], 'b waits for a');
  release();
  await assert.rejects(cb, (e) => e.reason === 'rejected' && e.message === 'no');
  await assert.rejects(cc, (e) => e.reason === 'failed' && e.message === 'network down');
  assert.deepEqual(calls, ['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  await settle();
  assert.deepEqual(model.current.data, { n: 1 }, 'a still pending, b and c rolled back');
  link.publish({ by: 1 }, tags(600, { 'mutation-id': 'a' }));
  assert.equal((await ca).xid, '600');
});

test('a re-sync whose snapshot holds the mutation\'s transaction confirms it; its event is then skipped as visible', async (t) => {
  let snapshot = '700:700:';
  let n = 0;
  const { model, transport } = await started(t, {
    sync: async () => ({ data: { n }, bootstrap: { position: { offset: 1, epoch: 'e2' }, snapshot } }),
  });
  const [confirmed] = await model.optimistic({ mutationId: 'm1', name: 'add', data: { by: 3 } }, { commit: async () => ({ xid: '705' }) });
  await settle();
  assert.equal(model.current.pending.length, 1, 'not visible in the first snapshot: waits');
  // The stream cannot be resumed (new epoch): the transport bootstraps again.
  n = 3;
  snapshot = '706:706:';
  const link = transport.current(model.channel);
  await link.bootstrap();
  assert.equal(await confirmed, undefined);
  await settle();
  assert.deepEqual(model.current.data, { n: 3 });
  link.publish({ by: 3 }, tags(705, { 'mutation-id': 'm1' }));
  await settle();
  assert.deepEqual(model.current.confirmedData, { n: 3 }, 'not applied twice');
  assert.equal(model.stats.visible, 1);
});

test('a rejected mutation already in a re-sync\'s snapshot rolls back with its reason', async (t) => {
  let snapshot = '700:700:';
  const { model, link } = await started(t, { sync: async () => ({ data: { n: 0 }, bootstrap: { position: { offset: 1, epoch: 'e' }, snapshot } }) });
  let answer;
  const [confirmed] = await model.optimistic({ mutationId: 'm1', name: 'add', data: { by: 3 } }, { commit: () => new Promise((r) => (answer = r)) });
  await settle();
  snapshot = '720:720:';
  await link.bootstrap();
  answer({ xid: '710', rejected: false }); // the answer arrives after the re-sync that holds it
  assert.equal(await confirmed, undefined, 'settled by the answer against the current snapshot');
  const [c2] = await model.optimistic({ mutationId: 'm2', name: 'add', data: { by: 3 } }, { commit: async () => ({ xid: '730', rejected: true, reason: 'full' }) });
  await assert.rejects(c2, (e) => e.reason === 'rejected' && e.message === 'full');
});

test('an event skipped as visible still settles the pending mutation it answers (no pending change left behind)', async (t) => {
  const { model, link } = await started(t, {
    sync: async () => ({ data: { n: 3 }, bootstrap: { position: { offset: 1, epoch: 'e' }, snapshot: '800:800:' } }),
  });
  // Made before the state was read, its answer lost (no commit given): only the event can settle it.
  const [confirmed] = await model.optimistic({ mutationId: 'm1', name: 'add', data: { by: 3 } });
  link.publish({ by: 3 }, tags(799, { 'mutation-id': 'm1' }));
  const ev = await confirmed;
  assert.equal(ev.xid, '799');
  await settle();
  assert.deepEqual(model.current.data, { n: 3 });
  assert.equal(model.stats.visible, 1);
});

test('a pending mutation times out and rolls back; cancel rolls back at once', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { model } = await started(t, { optimisticTimeoutMs: 1000 });
  const [c1] = await model.optimistic({ mutationId: 'm1', name: 'add', data: { by: 1 } });
  const [c2, cancel] = await model.optimistic({ mutationId: 'm2', name: 'add', data: { by: 2 } });
  cancel();
  await assert.rejects(c2, (e) => e.reason === 'canceled');
  assert.deepEqual(model.current.data, { n: 1 });
  t.mock.timers.tick(999);
  await settle();
  assert.equal(model.current.pending.length, 1);
  t.mock.timers.tick(1);
  await assert.rejects(c1, (e) => e instanceof MutationError && e.reason === 'timeout');
  assert.deepEqual(model.current.data, { n: 0 });
  cancel(); // a second cancel does nothing
});

test('optimistic before ready: shown once the state arrives; ids must be unique among pending', async (t) => {
  const { client, transport } = newClient();
  t.after(() => client.close());
  const model = client.models.get(counter());
  await model.optimistic({ mutationId: 'm1', name: 'add', data: { by: 2 } });
  await assert.rejects(model.optimistic({ mutationId: 'm1', name: 'add', data: {} }), TypeError);
  await assert.rejects(model.optimistic({ mutationId: '', name: 'add', data: {} }), TypeError);
  assert.equal(model.status, 'initialized');
  assert.equal(model.current.data, undefined);
  model.subscribe(() => {});
  await transport.current(model.channel).bootstrap();
  assert.deepEqual(model.current.data, { n: 2 });
});

test('a merge that throws on an optimistic event fails that mutation only', async (t) => {
  const { model } = await started(t, { merge: (s, e) => { if (e.data.bad) throw new Error('bad input'); return { n: s.n + e.data.by }; } });
  const [bad] = await model.optimistic({ mutationId: 'bad', name: 'x', data: { bad: true } });
  await model.optimistic({ mutationId: 'good', name: 'x', data: { by: 1 } });
  assert.deepEqual(model.current.data, { n: 1 });
  await assert.rejects(bad, (e) => e.reason === 'failed' && /bad input/.test(e.message));
  assert.deepEqual(model.current.pending.map((e) => e.mutationId), ['good']);
});

test('an event without a valid position or xid errors the model (never applied unordered); resume starts over', async (t) => {
  const { model, link, seen, transport } = await started(t);
  link.publish({ by: 1 }, { xid: '900', name: 'x' });
  await settle();
  assert.equal(model.status, 'errored');
  assert.ok(model.current.error instanceof ModelError && model.current.error.reason === 'stream');
  assert.match(model.current.error.message, /tags_header_prefix: pgoutbox-/);
  assert.equal(seen.at(-1), model.current.error, 'listeners get the error');
  assert.equal(link.on, false);
  model.resume();
  const again = transport.current(model.channel);
  assert.notEqual(again, link, 'a new link: bootstrap from scratch');
  await again.bootstrap();
  assert.equal(model.status, 'ready');
  assert.equal(model.current.error, undefined);
});

test('a merge that throws on a server event errors the model', async (t) => {
  const { model, link } = await started(t, { merge: () => { throw new Error('no'); } });
  link.publish({ by: 1 }, tags(950));
  await settle();
  assert.equal(model.status, 'errored');
  assert.equal(model.current.error.reason, 'merge');
});

test(`a control event (${CONTROL_TAG}: ${CONTROL_RESYNC}) and a resumed stream with a gap both re-sync, keeping pending events`, async (t) => {
  let syncs = 0;
  const { model, link, transport } = await started(t, { sync: async () => ({ data: { n: 10 * ++syncs }, bootstrap: { position: { offset: 0, epoch: 'e' }, snapshot: '1:1:' } }) });
  await model.optimistic({ mutationId: 'm1', name: 'add', data: { by: 1 } });
  link.publish(null, { [CONTROL_TAG]: CONTROL_RESYNC });
  assert.equal(link.closed, true);
  assert.equal(model.status, 'syncing');
  const second = transport.current(model.channel);
  await second.bootstrap();
  assert.deepEqual(model.current.data, { n: 21 });
  second.recover(false); // e.g. a server that resumed without the missed publications
  assert.equal(second.closed, true);
  await transport.current(model.channel).bootstrap();
  assert.deepEqual(model.current.data, { n: 31 });
  assert.equal(model.current.pending.length, 1);
  assert.equal(model.stats.recoveries, 0, 'a resume with a gap is a re-sync, not a recovery');
});

test('pgoutbox recover\'s control record (no position, JSON value) re-syncs and is never merged or counted', async (t) => {
  const merged = [];
  const { model, link, transport } = await started(t, { merge: (s, e) => (merged.push(e), { n: s.n + (e.data.by ?? 0) }) });
  link.publish({ control: 'resync', reason: 'publication stretch recovered', from_lsn: '0/1', to_lsn: '0/2' },
    { [CONTROL_TAG]: CONTROL_RESYNC, channel: model.channel });
  assert.deepEqual(merged, []);
  assert.deepEqual(model.stats, { applied: 0, visible: 0, duplicate: 0, syncs: 1, recoveries: 0 });
  await transport.current(model.channel).bootstrap();
  assert.equal(model.stats.syncs, 2);
  assert.equal(model.status, 'ready');
});
