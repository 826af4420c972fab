// The board as a page sees it: the server's state (bootstrapped, then moved by events) with the
// page's own pending changes laid over it. Pure: no DOM, no network (unit-tested in
// deploy/demo/test/board.test.mjs).
//
// A pending change is settled exactly once, by whichever comes first:
// - its event (tags mutation-id = its id): applied like any other page's, or, when the event
//   says rejected, dropped with a notice — the rollback;
// - a bootstrap whose snapshot shows its transaction as committed (its xid is known from the
//   mutation's answer): the state read already holds its outcome, and its event will be skipped
//   as visible, so it must not wait for it;
// - a failed request (no answer): dropped with a notice.

import { Snapshot, Cursors, decide } from './rules.js';

export class BoardModel {
  constructor() {
    this.board = null;
    this.tasks = new Map(); // id -> task, the server's state
    this.pending = []; // {mutation_id, op, task_id, title, done, xid, rejected, reason}, in the order made
    this.snapshot = null;
    this.cursors = new Cursors();
    this.channel = '';
  }

  /** load replaces the state with a bootstrap's; returns the notices of changes it settles. */
  load(st) {
    this.board = st.board;
    this.channel = st.channel;
    this.tasks = new Map(st.tasks.map((t) => [t.id, t]));
    this.snapshot = Snapshot.parse(st.snapshot);
    this.cursors = new Cursors();
    const notices = [];
    for (const p of [...this.pending]) {
      if (p.xid !== undefined && this.snapshot.visible(p.xid)) notices.push(...this.#settle(p.mutation_id, p.rejected, p.reason));
    }
    return notices;
  }

  /**
   * onPublication applies one event if the rules say so. Returns {decision, notices}.
   * data is the outbox row's data, tags the publication's tags.
   */
  onPublication(data, tags) {
    const decision = decide(this.snapshot, this.cursors, this.channel, tags);
    if (decision !== 'apply') return { decision, notices: [] };
    // A rejected event changes nothing; its data is {reason}: it only settles its mutation.
    if (tags.rejected === 'true') return { decision, notices: tags['mutation-id'] ? this.#settle(tags['mutation-id'], true, data.reason) : [] };
    switch (data.kind) {
      case 'task.added':
      case 'task.updated':
        this.tasks.set(data.task.id, data.task);
        break;
      case 'task.deleted':
        this.tasks.delete(data.task_id);
        break;
    }
    this.board = data.board;
    const notices = tags['mutation-id'] ? this.#settle(tags['mutation-id'], tags.rejected === 'true', data.reason) : [];
    return { decision, notices };
  }

  /** propose records a change the page made, to show at once. */
  propose(m) {
    this.pending.push({ ...m });
  }

  /** answered records the mutation request's answer; settles it if the state already holds it. */
  answered(mutationId, outcome) {
    const p = this.pending.find((x) => x.mutation_id === mutationId);
    if (!p) return [];
    p.xid = BigInt(outcome.xid);
    p.rejected = outcome.rejected;
    p.reason = outcome.reason;
    return this.snapshot && this.snapshot.visible(p.xid) ? this.#settle(mutationId, p.rejected, p.reason) : [];
  }

  /** failed drops a change whose request got no answer. */
  failed(mutationId, why) {
    const p = this.pending.find((x) => x.mutation_id === mutationId);
    if (!p || p.xid !== undefined) return [];
    this.pending = this.pending.filter((x) => x !== p);
    return [{ kind: 'failed', text: `Not saved: ${describe(p, this.tasks)} (${why})` }];
  }

  #settle(mutationId, rejected, reason) {
    const p = this.pending.find((x) => x.mutation_id === mutationId);
    if (!p) return [];
    this.pending = this.pending.filter((x) => x !== p);
    return rejected ? [{ kind: 'rejected', text: `Rejected: ${describe(p, this.tasks)} — ${reason || 'refused by the server'}. Rolled back.` }] : [];
  }

  /** view is what the page shows: the server's tasks in order, with pending changes over them. */
  view() {
    const rows = new Map([...this.tasks.values()].sort((a, b) => a.seq - b.seq).map((t) => [t.id, { ...t, pending: false }]));
    for (const p of this.pending) {
      const t = rows.get(p.task_id);
      if (p.op === 'add' && !t) rows.set(p.task_id, { id: p.task_id, title: p.title, done: false, pending: true });
      else if (p.op === 'toggle' && t) rows.set(p.task_id, { ...t, done: p.done, pending: true });
      else if (p.op === 'delete' && t) rows.set(p.task_id, { ...t, deleting: true, pending: true });
    }
    return [...rows.values()];
  }

  /** confirmed is the server's state alone, in order: what must equal the database's. */
  confirmed() {
    return [...this.tasks.values()].sort((a, b) => a.seq - b.seq).map(({ id, title, done }) => ({ id, title, done }));
  }
}

function describe(p, tasks) {
  const title = p.title ?? tasks.get(p.task_id)?.title ?? 'a task';
  switch (p.op) {
    case 'add':
      return `adding “${title}”`;
    case 'toggle':
      return `${p.done ? 'finishing' : 'reopening'} “${title}”`;
    default:
      return `deleting “${title}”`;
  }
}
