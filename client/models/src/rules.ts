// The rules of a live model, pure (no I/O, no timers): the position order, the cursors and the
// snapshot rule of the Go packages record and checkpoint (record/position.go,
// checkpoint/cursors.go, checkpoint/snapshot.go: same texts, same decisions, and
// test/rules.test.mjs runs their Go tests' cases), the apply decision built on them, and the
// optimistic layer's rebase.
//
// Transaction ids and LSNs are 64-bit: they are BigInts here, never Numbers.

/** Thrown when a position, a transaction id or a snapshot text is malformed. */
export class BadTokenError extends Error {
  /** Which text was malformed. */
  readonly reason: 'position' | 'xid' | 'snapshot';
  constructor(reason: 'position' | 'xid' | 'snapshot', message: string) {
    super(message);
    this.name = 'BadTokenError';
    this.reason = reason;
  }
}

const HEX = /^[0-9A-Fa-f]+$/;
const DEC = /^[0-9]+$/;
const MAX_U64 = (1n << 64n) - 1n;
const q = JSON.stringify;

/**
 * Position is where an event stands in the commit order of one replication stream: the commit
 * LSN of its transaction and its index among that transaction's outbox rows (record.Position).
 */
export interface Position {
  readonly lsn: bigint;
  readonly index: number;
}

/**
 * parsePosition reads a pgoutbox-position header: 16 hex digits of the commit LSN, '-', 8 hex
 * digits of the index ("0000001600B374D8-00000003"), upper or lower case. Exactly that form and
 * nothing else, so that texts sort like positions (record.ParsePosition).
 */
export function parsePosition(s: unknown): Position {
  if (typeof s !== 'string' || s.length !== 25 || s[16] !== '-') {
    throw new BadTokenError('position', `parse position ${q(s)}: want 16 hex digits, '-', 8 hex digits`);
  }
  const lsn = s.slice(0, 16);
  const index = s.slice(17);
  if (!HEX.test(lsn)) throw new BadTokenError('position', `parse position ${q(s)}: commit LSN`);
  if (!HEX.test(index)) throw new BadTokenError('position', `parse position ${q(s)}: index`);
  return { lsn: BigInt('0x' + lsn), index: parseInt(index, 16) };
}

/** formatPosition writes p in the header's form (upper-case hex). */
export function formatPosition(p: Position): string {
  return p.lsn.toString(16).toUpperCase().padStart(16, '0') + '-' + p.index.toString(16).toUpperCase().padStart(8, '0');
}

/** comparePositions returns -1, 0 or +1 as a comes before, is, or comes after b in commit order. */
export function comparePositions(a: Position, b: Position): -1 | 0 | 1 {
  if (a.lsn !== b.lsn) return a.lsn < b.lsn ? -1 : 1;
  if (a.index !== b.index) return a.index < b.index ? -1 : 1;
  return 0;
}

/**
 * Cursors keeps, per channel, the position of the last event applied: an event is applied only
 * if its position is after it; a re-sent or replayed event is at or before it (checkpoint.Cursors).
 */
export class Cursors {
  #last = new Map<string, Position>();

  /** apply reports whether the event at p on channel is new, and if so records p. */
  apply(channel: string, p: Position): boolean {
    const last = this.#last.get(channel);
    if (last !== undefined && comparePositions(p, last) <= 0) return false;
    this.#last.set(channel, p);
    return true;
  }

  /** last returns the last applied position on channel, or undefined. */
  last(channel: string): Position | undefined {
    return this.#last.get(channel);
  }

  /** set makes p the last applied position of channel. */
  set(channel: string, p: Position): void {
    this.#last.set(channel, p);
  }
}

/** parseXid reads a full 64-bit transaction id in decimal (the pgoutbox-xid header). */
export function parseXid(s: unknown, what = 'xid'): bigint {
  if (typeof s !== 'string' || !DEC.test(s)) throw new BadTokenError('xid', `${what}: ${q(s)} is not a decimal transaction id`);
  const v = BigInt(s);
  if (v > MAX_U64) throw new BadTokenError('xid', `${what}: ${s} is out of range`);
  return v;
}

/**
 * Snapshot is pg_current_snapshot() as the state endpoint returned it, "xmin:xmax:xip,…"
 * (checkpoint.Snapshot). visible(xid) says whether the transaction had committed before the
 * state was read, that is whether the state already holds its changes.
 */
export class Snapshot {
  /** Every transaction below it had ended. */
  readonly xmin: bigint;
  /** Every transaction at or above it had not started. */
  readonly xmax: bigint;
  /** The transactions in [xmin, xmax) still in progress, sorted, without repeats. */
  readonly xip: readonly bigint[];

  constructor(xmin: bigint, xmax: bigint, xip: readonly bigint[]) {
    this.xmin = xmin;
    this.xmax = xmax;
    this.xip = xip;
  }

  /** parse reads the text of pg_current_snapshot(), checking xmin <= xmax and each xip in [xmin, xmax). */
  static parse(text: unknown): Snapshot {
    const parts = typeof text === 'string' ? text.split(':') : [];
    const bad = (why: string) => new BadTokenError('snapshot', `parse snapshot ${q(text)}: ${why}`);
    if (parts.length !== 3) throw bad('want xmin:xmax:xip,...');
    const xid = (s: string, what: string) => {
      try {
        return parseXid(s, what);
      } catch (e) {
        throw bad((e as Error).message);
      }
    };
    const xmin = xid(parts[0]!, 'xmin');
    const xmax = xid(parts[1]!, 'xmax');
    if (xmin > xmax) throw bad(`xmin ${xmin} is above xmax ${xmax}`);
    const xip: bigint[] = [];
    if (parts[2] !== '') {
      for (const f of parts[2]!.split(',')) {
        const x = xid(f, 'in-progress id');
        if (x < xmin || x >= xmax) throw bad(`in-progress id ${x} is outside [xmin, xmax)`);
        xip.push(x);
      }
    }
    xip.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return new Snapshot(xmin, xmax, xip.filter((x, i) => i === 0 || x !== xip[i - 1]));
  }

  /** visible: xid < xmin, or xid < xmax and not in progress. xid: a BigInt or its decimal text. */
  visible(xid: bigint | string): boolean {
    const x = typeof xid === 'bigint' ? xid : parseXid(xid);
    if (x < this.xmin) return true;
    if (x >= this.xmax) return false;
    return !this.xip.includes(x);
  }

  /** toString returns the snapshot in pg_current_snapshot()'s text form. */
  toString(): string {
    return `${this.xmin}:${this.xmax}:${this.xip.join(',')}`;
  }
}

/** What the apply rule decided about one event. */
export type Decision = 'apply' | 'visible' | 'duplicate';

/**
 * decide is the whole apply rule for one event, given the snapshot of the last bootstrap and
 * the cursors since: 'visible' (its transaction is in the state already: skip), 'duplicate' (at
 * or before the last applied position: skip) or 'apply'. It records the position when it says
 * 'apply'. It throws BadTokenError when the event's position or xid is malformed.
 */
export function decide(snapshot: Snapshot, cursors: Cursors, channel: string, tags: { position?: string; xid?: string }): Decision {
  const pos = parsePosition(tags.position);
  if (snapshot.visible(parseXid(tags.xid, 'tag xid'))) return 'visible';
  return cursors.apply(channel, pos) ? 'apply' : 'duplicate';
}

/**
 * rebase lays events over state in order with merge, the optimistic layer's view: the confirmed
 * state with every pending event applied on top. An event whose merge throws is left out, and
 * returned in failed with the error, so one bad optimistic event cannot hide the others.
 */
export function rebase<S, E>(state: S, events: readonly E[], merge: (state: S, event: E) => S): { state: S; failed: { event: E; error: unknown }[] } {
  const failed: { event: E; error: unknown }[] = [];
  for (const e of events) {
    try {
      state = merge(state, e);
    } catch (error) {
      failed.push({ event: e, error });
    }
  }
  return { state, failed };
}
