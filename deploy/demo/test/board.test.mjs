// Unit tests of cmd/demo/web/board.js: optimistic changes, settled once by their event, a
// bootstrap that already holds them, or a failed request.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BoardModel } from '../../../cmd/demo/web/board.js';

const board = (open, tasks) => ({ id: 'launch', title: 'Launch', open_limit: 2, task_limit: 10, open_tasks: open, tasks });
const task = (id, seq, done = false) => ({ id, title: `task ${id}`, done, version: 1, by: 'x', seq });
let lsn = 0x100;
const tags = (xid, extra = {}) => ({ xid: String(xid), position: (lsn++).toString(16).toUpperCase().padStart(16, '0') + '-00000000', ...extra });
const state = (snapshot, tasks) => ({ channel: 'outbox:board-launch', snapshot, board: board(tasks.filter((t) => !t.done).length, tasks.length), tasks });

test('a change shows at once as pending, and its event confirms it', () => {
  const m = new BoardModel();
  m.load(state('50:50:', [task('a', 1)]));
  m.propose({ mutation_id: 'm1', op: 'add', task_id: 'b', title: 'task b' });
  assert.deepEqual(m.view().map((r) => [r.id, r.pending]), [['a', false], ['b', true]]);
  const { decision, notices } = m.onPublication({ kind: 'task.added', task: task('b', 2), board: board(2, 2) }, tags(60, { 'mutation-id': 'm1' }));
  assert.equal(decision, 'apply');
  assert.deepEqual(notices, []);
  assert.deepEqual(m.view().map((r) => [r.id, r.pending]), [['a', false], ['b', false]]);
  assert.equal(m.pending.length, 0);
});

test('a rejected event rolls the change back with a notice', () => {
  const m = new BoardModel();
  m.load(state('50:50:', [task('a', 1), task('b', 2)]));
  m.propose({ mutation_id: 'm1', op: 'add', task_id: 'c', title: 'one too many' });
  assert.equal(m.view().length, 3);
  const { notices } = m.onPublication({ kind: 'mutation.rejected', reason: 'the board allows at most 2 open tasks', board: board(2, 2) },
    tags(61, { 'mutation-id': 'm1', rejected: 'true' }));
  assert.equal(notices.length, 1);
  assert.match(notices[0].text, /Rejected: adding “one too many” — the board allows at most 2 open tasks/);
  assert.deepEqual(m.view().map((r) => r.id), ['a', 'b']);
});

test('another page\'s rejected event changes nothing here', () => {
  const m = new BoardModel();
  m.load(state('50:50:', [task('a', 1)]));
  const { decision, notices } = m.onPublication({ kind: 'mutation.rejected', reason: 'full', board: board(1, 1) }, tags(62, { 'mutation-id': 'other', rejected: 'true' }));
  assert.equal(decision, 'apply');
  assert.deepEqual(notices, []);
  assert.deepEqual(m.confirmed(), [{ id: 'a', title: 'task a', done: false }]);
});

test('a bootstrap whose snapshot holds a pending change settles it (its event will be skipped as visible)', () => {
  const m = new BoardModel();
  m.load(state('50:50:', []));
  m.propose({ mutation_id: 'm1', op: 'add', task_id: 'a', title: 'task a' });
  assert.deepEqual(m.answered('m1', { xid: '70', rejected: false }), [], 'not visible in the first snapshot: wait for the event');
  assert.equal(m.pending.length, 1);
  m.load(state('71:71:', [task('a', 1)]));
  assert.equal(m.pending.length, 0);
  assert.equal(m.onPublication({ kind: 'task.added', task: task('a', 1), board: board(1, 1) }, tags(70, { 'mutation-id': 'm1' })).decision, 'visible');
  assert.deepEqual(m.confirmed(), [{ id: 'a', title: 'task a', done: false }]);
});

test('a pending change whose transaction is in progress at the bootstrap waits for its event', () => {
  const m = new BoardModel();
  m.load(state('50:50:', []));
  m.propose({ mutation_id: 'm1', op: 'add', task_id: 'a', title: 'task a' });
  m.answered('m1', { xid: '70', rejected: false });
  m.load(state('70:72:70', []));
  assert.equal(m.pending.length, 1);
  assert.equal(m.onPublication({ kind: 'task.added', task: task('a', 1), board: board(1, 1) }, tags(70, { 'mutation-id': 'm1' })).decision, 'apply');
  assert.equal(m.pending.length, 0);
});

test('a rejected change already in the bootstrapped snapshot is rolled back with its notice', () => {
  const m = new BoardModel();
  m.load(state('50:50:', []));
  m.propose({ mutation_id: 'm1', op: 'add', task_id: 'a', title: 'task a' });
  m.answered('m1', { xid: '70', rejected: true, reason: 'full' });
  const notices = m.load(state('80:80:', []));
  assert.equal(notices.length, 1);
  assert.match(notices[0].text, /Rejected: adding “task a” — full/);
  assert.equal(m.view().length, 0);
});

test('a failed request drops its change with a notice; one with an answer waits for its event', () => {
  const m = new BoardModel();
  m.load(state('50:50:', [task('a', 1)]));
  m.propose({ mutation_id: 'm1', op: 'toggle', task_id: 'a', done: true, title: 'task a' });
  assert.equal(m.view()[0].done, true);
  assert.match(m.failed('m1', 'network down')[0].text, /Not saved: finishing “task a” \(network down\)/);
  assert.equal(m.view()[0].done, false);
  m.propose({ mutation_id: 'm2', op: 'delete', task_id: 'a', title: 'task a' });
  m.answered('m2', { xid: '90', rejected: false });
  assert.deepEqual(m.failed('m2', 'late'), []);
  assert.equal(m.view()[0].deleting, true);
});

test('events are applied once, in position order, skipping re-sent ones', () => {
  const m = new BoardModel();
  m.load(state('50:50:', []));
  const t1 = tags(60);
  assert.equal(m.onPublication({ kind: 'task.added', task: task('a', 1), board: board(1, 1) }, t1).decision, 'apply');
  assert.equal(m.onPublication({ kind: 'task.deleted', task_id: 'a', board: board(0, 0) }, t1).decision, 'duplicate');
  assert.deepEqual(m.confirmed().map((t) => t.id), ['a']);
});
