// The board's logic, all of it: one merge function for @pgoutbox/models, and how to describe a
// change in a notice. Pure: no DOM, no network (unit-tested in deploy/demo/test/board.test.mjs).
//
// The state is the state endpoint's data, { board, tasks } (tasks in the board's order). merge
// receives the server's events — data is the app's event: { kind, board, task?, task_id } — and
// the page's own optimistic events — name 'add' | 'toggle' | 'delete', data { task_id, title?,
// done? }, what the page sends to POST /api/mutations. A row changed by a pending event is marked
// pending (and deleting, for a delete): the page shows it as "saving…".

/** merge returns the board after event; it never changes state. */
export function merge(state, event) {
  if (event.optimistic) return mergePending(state, event);
  const d = event.data;
  let tasks = state.tasks;
  switch (d.kind) {
    case 'task.added':
    case 'task.updated':
      tasks = tasks.some((t) => t.id === d.task.id) ? tasks.map((t) => (t.id === d.task.id ? d.task : t)) : [...tasks, d.task];
      break;
    case 'task.deleted':
      tasks = tasks.filter((t) => t.id !== d.task_id);
      break;
    default:
      return state; // an event this page does not know changes nothing here
  }
  return { board: d.board, tasks };
}

function mergePending(state, { name, data }) {
  const has = state.tasks.some((t) => t.id === data.task_id);
  const change = (f) => ({ ...state, tasks: state.tasks.map((t) => (t.id === data.task_id ? { ...f(t), pending: true } : t)) });
  switch (name) {
    case 'add':
      return has ? state : { ...state, tasks: [...state.tasks, { id: data.task_id, title: data.title, done: false, pending: true }] };
    case 'toggle':
      return change((t) => ({ ...t, done: data.done }));
    case 'delete':
      return change((t) => ({ ...t, deleting: true }));
    default:
      return state;
  }
}

/** describe says what a mutation was doing, for a notice: 'adding “Tag v1.0”'. */
export function describe(m, tasks) {
  const title = m.data.title ?? tasks.find((t) => t.id === m.data.task_id)?.title ?? 'a task';
  switch (m.name) {
    case 'add':
      return `adding “${title}”`;
    case 'toggle':
      return `${m.data.done ? 'finishing' : 'reopening'} “${title}”`;
    default:
      return `deleting “${title}”`;
  }
}

/** confirmed is the server's tasks as the browser tests compare them with the database's. */
export function confirmed(state) {
  return (state?.tasks ?? []).map(({ id, title, done }) => ({ id, title, done }));
}
