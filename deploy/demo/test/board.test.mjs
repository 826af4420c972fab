// Unit tests of cmd/demo/web/board.js, the board's merge: server events move the confirmed
// board, the page's pending changes show over it (marked pending), nothing is changed in place.
// The rules around it (bootstrap, settling, rebase) are @pgoutbox/models', tested in client/models.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { merge, describe, confirmed } from '../../../cmd/demo/web/board.js';

const board = (open, tasks) => ({ id: 'launch', title: 'Launch', open_limit: 2, task_limit: 10, open_tasks: open, tasks });
const task = (id, seq, done = false) => ({ id, title: `task ${id}`, done, version: 1, by: 'x', seq });
const server = (data) => ({ name: data.kind, data, channel: 'outbox:board-launch', position: '0000000000000100-00000000', xid: '7', headers: {} });
const pending = (name, data) => ({ name, data, mutationId: 'm-' + name, optimistic: true });

test('server events add, update and delete tasks and carry the board\'s counts', () => {
  let s = Object.freeze({ board: board(0, 0), tasks: Object.freeze([]) });
  s = merge(s, server({ kind: 'task.added', board: board(1, 1), task: task('a', 1) }));
  s = merge(s, server({ kind: 'task.added', board: board(2, 2), task: task('b', 2) }));
  s = merge(s, server({ kind: 'task.updated', board: board(1, 2), task: task('a', 1, true) }));
  assert.deepEqual(confirmed(s), [{ id: 'a', title: 'task a', done: true }, { id: 'b', title: 'task b', done: false }]);
  assert.equal(s.board.open_tasks, 1);
  s = merge(s, server({ kind: 'task.deleted', board: board(1, 1), task_id: 'a' }));
  assert.deepEqual(confirmed(s).map((t) => t.id), ['b']);
  const same = merge(s, server({ kind: 'something.else', board: board(9, 9) }));
  assert.equal(same, s, 'an unknown event changes nothing');
});

test('pending changes show over the board, marked pending, without changing it', () => {
  const s = Object.freeze({ board: board(1, 1), tasks: Object.freeze([Object.freeze(task('a', 1))]) });
  const added = merge(s, pending('add', { task_id: 'b', title: 'new one' }));
  assert.deepEqual(added.tasks.map((t) => [t.id, t.title, !!t.pending]), [['a', 'task a', false], ['b', 'new one', true]]);
  const toggled = merge(added, pending('toggle', { task_id: 'a', done: true }));
  assert.deepEqual(toggled.tasks[0], { ...task('a', 1, true), pending: true });
  const deleting = merge(toggled, pending('delete', { task_id: 'b' }));
  assert.equal(deleting.tasks[1].deleting, true);
  assert.deepEqual(confirmed(s), [{ id: 'a', title: 'task a', done: false }], 'the confirmed board is untouched');
  assert.equal(merge(s, pending('add', { task_id: 'a', title: 'dup' })), s, 'an add of an existing id shows nothing new');
  assert.equal(merge(s, pending('toggle', { task_id: 'zz', done: true })).tasks.length, 1, 'a toggle of a task that is gone shows nothing');
});

test('describe names the change for a notice', () => {
  const tasks = [task('a', 1)];
  assert.equal(describe({ name: 'add', data: { task_id: 'n', title: 'One task too many' } }, tasks), 'adding “One task too many”');
  assert.equal(describe({ name: 'toggle', data: { task_id: 'a', done: true } }, tasks), 'finishing “task a”');
  assert.equal(describe({ name: 'toggle', data: { task_id: 'a', done: false } }, tasks), 'reopening “task a”');
  assert.equal(describe({ name: 'delete', data: { task_id: 'gone' } }, tasks), 'deleting “a task”');
});
