import { ModelsClient, type CommitResult, type ModelEvent, type SyncResult } from '@pgoutbox/models';

type Item = { id: string; title: string };
const auth = { Authorization: 'Basic ' + btoa('alice:s3cret') }; // the app's own login

async function api<T>(path: string, body?: unknown): Promise<T> {
  const init: RequestInit = body === undefined ? { headers: auth }
    : { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
  const resp = await fetch(path, init);
  const out = await resp.json();
  if (!resp.ok) throw new Error(out.error);
  return out as T;
}

const client = new ModelsClient({
  url: 'ws://127.0.0.1:58000/connection/websocket',
  getToken: async () => (await api<{ token: string }>('/api/token')).token,
  getSubscriptionToken: async (channel: string) =>
    (await api<{ token: string }>(`/api/subscription-token?channel=${encodeURIComponent(channel)}`)).token,
});

const items = client.models.get<Item[], Item>({
  channel: 'outbox:items',
  sync: () => api<SyncResult<Item[]>>('/api/state?channel=outbox:items'),
  // The server's event (item.added) and the page's optimistic one (add) carry the same item.
  merge: (state: Item[], event: ModelEvent<Item>) =>
    state.some((i) => i.id === event.data.id) ? state : [...state, event.data],
});

items.subscribe((err, state) => {
  if (err) return console.error(err);
  document.querySelector('#items')!.replaceChildren(
    ...(state ?? []).map((i) => Object.assign(document.createElement('li'), { textContent: i.title })));
});

export async function add(title: string): Promise<void> {
  const mutation = { mutationId: crypto.randomUUID(), name: 'add', data: { id: crypto.randomUUID(), title } };
  const [confirmed] = await items.optimistic(mutation, { commit: () => api<CommitResult>('/api/mutations', mutation) });
  await confirmed.catch((err) => alert(`Not added: ${err.message}`)); // rolled back: refused, timed out…
}
