// useModel, DOM-free: react-test-renderer renders a component on a model over the fake transport.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createElement, StrictMode } from 'react';
import TestRenderer from 'react-test-renderer';
import { useModel } from '../dist/react.js';
import { newClient, tags, counter } from './fake.mjs';

globalThis.IS_REACT_ACT_ENVIRONMENT = true;
const { act } = TestRenderer;

test('useModel: re-renders with data, confirmedData, pending, status and error; unmount stops following', async (t) => {
  const { client, transport } = newClient();
  t.after(() => client.close());
  const model = client.models.get(counter());
  const renders = [];
  function Counter() {
    const v = useModel(model);
    renders.push(v);
    return createElement('p', null, `${v.status}: ${v.data?.n ?? '–'} (${v.pending.length} pending)`);
  }
  let r;
  await act(async () => {
    r = TestRenderer.create(createElement(StrictMode, null, createElement(Counter)));
  });
  const text = () => r.root.findByType('p').children.join('');
  assert.equal(text(), 'syncing: – (0 pending)');
  const link = transport.current(model.channel);
  assert.equal(link.starts, 1, 'strict mode\'s second mount keeps the one subscription');
  await act(() => link.bootstrap());
  assert.equal(text(), 'ready: 0 (0 pending)');
  await act(async () => {
    await model.optimistic({ mutationId: 'm1', name: 'add', data: { by: 2 } });
  });
  assert.equal(text(), 'ready: 2 (1 pending)');
  const last = renders.at(-1);
  assert.deepEqual([last.data, last.confirmedData, last.pending.map((e) => e.mutationId), last.error], [{ n: 2 }, { n: 0 }, ['m1'], undefined]);
  await act(async () => link.publish({ by: 2 }, tags(300, { 'mutation-id': 'm1' })));
  assert.equal(text(), 'ready: 2 (0 pending)');
  assert.deepEqual(renders.at(-1).confirmedData, { n: 2 });
  await act(async () => link.publish({ by: 1 }, { xid: '1' })); // no position: the model errors
  assert.equal(text(), 'errored: 2 (0 pending)');
  assert.equal(renders.at(-1).error.reason, 'stream');
  await act(async () => model.resume());
  const again = transport.current(model.channel);
  await act(() => again.bootstrap());
  assert.equal(text(), 'ready: 0 (0 pending)');
  await act(async () => r.unmount());
  await act(async () => {});
  assert.equal(again.on, false, 'unmounted: no listener, no subscription');
  assert.equal(model.status, 'paused');
});
