// The exact-bootstrap promise as a property, on a simulated database and stream: transactions
// take ids in order and commit in any order; the relay publishes commits in commit order with a
// lag, and sometimes re-sends a suffix (an ambiguous produce); the state endpoint reads the stream
// position, then (after more commits) the snapshot and the state; the stream is sometimes lost
// (new epoch) and the model bootstraps again. Whatever the interleaving, the model's confirmed
// state equals the database's, and every event is applied at most once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newClient, settle } from './fake.mjs';

function rng(seed) {
  let s = BigInt(seed) + 1n;
  return (n) => {
    s = (s * 6364136223846793005n + 1442695040888963407n) & ((1n << 64n) - 1n);
    return Number((s >> 33n) % BigInt(n));
  };
}

class World {
  constructor(r) {
    this.r = r;
    this.nextXid = 1000n;
    this.running = new Map(); // xid -> events
    this.state = {}; // key -> count: the database
    this.wal = []; // committed events in commit order: {xid, position, key, by, id}
    this.published = 0; // how many of wal the relay has published
    this.stream = []; // what Centrifugo holds: wal entries, re-sends included
    this.lsn = 0x100n;
    this.ids = 0;
  }
  begin() {
    const xid = this.nextXid++;
    const n = 1 + this.r(3);
    this.running.set(xid, Array.from({ length: n }, () => ({ key: 'k' + this.r(4), by: 1 + this.r(9), id: ++this.ids })));
  }
  commit() {
    const xids = [...this.running.keys()];
    const xid = xids[this.r(xids.length)];
    const events = this.running.get(xid);
    this.running.delete(xid);
    this.lsn += BigInt(1 + this.r(500));
    events.forEach((e, i) => {
      this.state[e.key] = (this.state[e.key] ?? 0) + e.by;
      const position = this.lsn.toString(16).toUpperCase().padStart(16, '0') + '-' + i.toString(16).padStart(8, '0');
      this.wal.push({ ...e, xid, position });
    });
  }
  publish() {
    if (this.published < this.wal.length) this.stream.push(this.wal[this.published++]);
    if (this.published > 0 && this.r(8) === 0) {
      // An ambiguous produce: the relay sends the last few records again.
      const k = 1 + this.r(Math.min(3, this.published));
      for (let i = this.published - k; i < this.published; i++) this.stream.push(this.wal[i]);
    }
  }
  step() {
    const c = this.r(10);
    if (c < 3 || this.running.size === 0) this.begin();
    else if (c < 6) this.commit();
    else this.publish();
  }
  snapshot() {
    const ids = [...this.running.keys()].sort((a, b) => (a < b ? -1 : 1));
    return `${ids.length ? ids[0] : this.nextXid}:${this.nextXid}:${ids.join(',')}`;
  }
}

test('exact bootstrap: the confirmed state equals the database under any interleaving (property)', async (t) => {
  let events = 0;
  let syncs = 0;
  for (let seed = 0; seed < 150; seed++) {
    const r = rng(seed);
    const w = new World(r);
    for (let i = 0; i < r(40); i++) w.step();
    const { client, transport } = newClient();
    const applied = new Set();
    const model = client.models.get({
      channel: 'outbox:sim',
      sync: async () => {
        const offset = w.stream.length; // 1. the stream position
        for (let i = 0; i < r(6); i++) w.step(); // others commit meanwhile
        await Promise.resolve();
        return { data: { ...w.state }, bootstrap: { position: { offset, epoch: 'e' }, snapshot: w.snapshot() } }; // 2. snapshot + state
      },
      merge: (s, e) => {
        assert.ok(!applied.has(e.data.id), `seed ${seed}: event ${e.data.id} applied twice`);
        applied.add(e.data.id);
        return { ...s, [e.data.key]: (s[e.data.key] ?? 0) + e.data.by };
      },
    });
    model.subscribe(() => {});
    let link = transport.current(model.channel);
    let from = (await link.bootstrap()).offset;
    const deliver = () => {
      while (from < w.stream.length) {
        const e = w.stream[from++];
        link.publish({ key: e.key, by: e.by, id: e.id }, { xid: String(e.xid), position: e.position, name: 'inc' });
      }
    };
    for (let i = 0; i < 200; i++) {
      w.step();
      if (r(3) === 0) deliver();
      if (r(60) === 0) {
        // The stream cannot be resumed (Centrifugo restarted): bootstrap again.
        applied.clear();
        model.resync();
        link = transport.current(model.channel);
        from = (await link.bootstrap()).offset;
      }
    }
    while (w.running.size) w.commit();
    while (w.published < w.wal.length) w.publish();
    deliver();
    await settle();
    assert.deepEqual(model.current.confirmedData, w.state, `seed ${seed}`);
    events += w.wal.length;
    syncs += model.stats.syncs;
    client.close();
  }
  t.diagnostic(`150 seeds, ${events} committed events, ${syncs} bootstraps`);
});
