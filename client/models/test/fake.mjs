// A fake Transport for the unit tests: it records what models ask of it, and the tests drive
// its channels by hand (bootstrap, publish, lose the connection, refuse), with no timers of its own.
import { ModelsClient } from '../dist/index.js';

/** settle lets every queued microtask and promise callback run. */
export const settle = () => new Promise((r) => setImmediate(r));

export class FakeLink {
  constructor(transport, channel, h) {
    this.transport = transport;
    this.channel = channel;
    this.h = h;
    this.on = false;
    this.closed = false;
    this.starts = 0;
    this.position = null; // the stream position it would recover from
  }
  start() {
    if (this.closed) throw new Error('start after close');
    this.on = true;
    this.starts++;
  }
  stop() {
    this.on = false;
  }
  close() {
    this.on = false;
    this.closed = true;
  }
  /** bootstrap runs getState as the transport would (first subscribe, unrecoverable position), then subscribes. */
  async bootstrap() {
    const pos = await this.h.getState();
    this.position = pos;
    this.h.subscribed(true, true); // as centrifuge-js: subscribed "recovering" from getState's position
    return pos;
  }
  /** failBootstrap runs getState and reports its rejection as the transport would. */
  async failBootstrap() {
    await this.h.getState().then(
      () => assertFail('getState resolved'),
      (e) => this.h.error(e instanceof Error ? e : new Error(String(e))),
    );
  }
  /** recover: subscribed again from the kept position, without getState. */
  recover(recovered = true) {
    this.h.subscribed(recovered, recovered);
  }
  publish(data, tags) {
    if (!this.on) throw new Error(`publish on ${this.channel}: link not started`);
    this.h.publication({ channel: this.channel, data, tags });
  }
}

function assertFail(m) {
  throw new Error(m);
}

export class FakeTransport {
  constructor() {
    this.links = [];
    this.reconnects = 0;
    this.closed = false;
  }
  link(channel, h) {
    const open = this.links.filter((l) => l.channel === channel && !l.closed);
    if (open.length) throw new Error(`a second open link on ${channel}`);
    const l = new FakeLink(this, channel, h);
    this.links.push(l);
    return l;
  }
  reconnect() {
    this.reconnects++;
  }
  close() {
    this.closed = true;
  }
  /** current is the open link of channel. */
  current(channel) {
    const l = this.links.filter((x) => x.channel === channel && !x.closed).at(-1);
    if (!l) throw new Error(`no open link on ${channel}`);
    return l;
  }
  started() {
    return this.links.filter((l) => l.on).length;
  }
}

/** newClient is a ModelsClient on a FakeTransport, with no page environment unless given. */
export function newClient(options = {}) {
  const transport = new FakeTransport();
  const client = new ModelsClient({ url: 'ws://unused', getToken: async () => 't', transport, environment: false, ...options });
  return { client, transport };
}

let lsn = 0x1000;
/** tags makes a publication's tags: a fresh position after every earlier one, and the given xid. */
export function tags(xid, extra = {}) {
  lsn += 0x10;
  return { name: 'changed', xid: String(xid), position: lsn.toString(16).toUpperCase().padStart(16, '0') + '-00000000', ...extra };
}

/** A counter model: state {n, log}; events add data.by to n. */
export const counter = (extra = {}) => ({
  channel: 'outbox:counter',
  sync: async () => ({ data: { n: 0 }, bootstrap: { position: { offset: 0, epoch: 'e1' }, snapshot: '100:100:' } }),
  merge: (s, e) => ({ n: s.n + e.data.by }),
  ...extra,
});
