// The bootstrap and apply rules of a page, the JavaScript twin of the checkpoint package's
// Position, Cursors and Snapshot (same texts, same decisions; deploy/demo/test/rules.test.mjs
// runs the Go tests' cases). See the README's "Fan-out to browsers".
//
// Transaction ids and LSNs are 64-bit: they are BigInts here, never Numbers.

/** The error every parse failure throws (checkpoint.ErrBadPosition / ErrBadSnapshot). */
export class BadTokenError extends Error {}

const HEX = /^[0-9A-Fa-f]+$/;
const DEC = /^[0-9]+$/;
const MAX_U64 = (1n << 64n) - 1n;

/**
 * parsePosition reads a pgoutbox-position tag: 16 hex digits of the commit LSN, '-', 8 hex
 * digits of the event's index in its transaction. Exactly that form, so texts sort like positions.
 * @returns {{lsn: bigint, index: number}}
 */
export function parsePosition(s) {
  if (typeof s !== 'string' || s.length !== 25 || s[16] !== '-' || !HEX.test(s.slice(0, 16)) || !HEX.test(s.slice(17))) {
    throw new BadTokenError(`parse position ${JSON.stringify(s)}: want 16 hex digits, '-', 8 hex digits`);
  }
  return { lsn: BigInt('0x' + s.slice(0, 16)), index: parseInt(s.slice(17), 16) };
}

/** comparePositions returns -1, 0 or +1 as a comes before, is, or comes after b in commit order. */
export function comparePositions(a, b) {
  if (a.lsn !== b.lsn) return a.lsn < b.lsn ? -1 : 1;
  if (a.index !== b.index) return a.index < b.index ? -1 : 1;
  return 0;
}

/**
 * Cursors keeps, per channel, the position of the last event applied: an event is applied only
 * if its position is after it (a re-sent or replayed event is at or before it).
 */
export class Cursors {
  #last = new Map();

  /** apply reports whether the event at p on channel is new, and if so records p. */
  apply(channel, p) {
    const last = this.#last.get(channel);
    if (last !== undefined && comparePositions(p, last) <= 0) return false;
    this.#last.set(channel, p);
    return true;
  }

  /** last returns the last applied position on channel, or undefined. */
  last(channel) {
    return this.#last.get(channel);
  }
}

function parseXID(s, what, text) {
  if (!DEC.test(s)) throw new BadTokenError(`parse snapshot ${JSON.stringify(text)}: ${what}: ${JSON.stringify(s)} is not a decimal transaction id`);
  const v = BigInt(s);
  if (v > MAX_U64) throw new BadTokenError(`parse snapshot ${JSON.stringify(text)}: ${what}: ${s} is out of range`);
  return v;
}

/**
 * Snapshot is pg_current_snapshot() as the state endpoint returned it: "xmin:xmax:xip,…".
 * visible(xid) says whether the transaction had committed before the state was read, i.e.
 * whether the state already holds its changes.
 */
export class Snapshot {
  constructor(xmin, xmax, xip) {
    this.xmin = xmin;
    this.xmax = xmax;
    this.xip = xip; // sorted, no repeats
  }

  /** parse reads the text of pg_current_snapshot(), checking xmin <= xmax and xip in [xmin, xmax). */
  static parse(text) {
    const parts = typeof text === 'string' ? text.split(':') : [];
    if (parts.length !== 3) throw new BadTokenError(`parse snapshot ${JSON.stringify(text)}: want xmin:xmax:xip,...`);
    const xmin = parseXID(parts[0], 'xmin', text);
    const xmax = parseXID(parts[1], 'xmax', text);
    if (xmin > xmax) throw new BadTokenError(`parse snapshot ${JSON.stringify(text)}: xmin ${xmin} is above xmax ${xmax}`);
    const xip = [];
    if (parts[2] !== '') {
      for (const f of parts[2].split(',')) {
        const x = parseXID(f, 'in-progress id', text);
        if (x < xmin || x >= xmax) throw new BadTokenError(`parse snapshot ${JSON.stringify(text)}: in-progress id ${x} is outside [xmin, xmax)`);
        xip.push(x);
      }
    }
    xip.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return new Snapshot(xmin, xmax, xip.filter((x, i) => i === 0 || x !== xip[i - 1]));
  }

  /** visible: xid < xmin, or xid < xmax and xid not in progress. xid: a BigInt or its decimal text. */
  visible(xid) {
    const x = typeof xid === 'bigint' ? xid : BigInt(xid);
    if (x < this.xmin) return true;
    if (x >= this.xmax) return false;
    return !this.xip.includes(x);
  }

  toString() {
    return `${this.xmin}:${this.xmax}:${this.xip.join(',')}`;
  }
}

/**
 * decide is the whole apply rule for one publication, given the snapshot of the last bootstrap
 * and the cursors since: 'visible' (already in the state: skip), 'duplicate' (at or before the
 * last applied position: skip) or 'apply'. It records the position when it says 'apply'.
 */
export function decide(snapshot, cursors, channel, tags) {
  const pos = parsePosition(tags.position);
  if (!DEC.test(tags.xid ?? '')) throw new BadTokenError(`tag xid ${JSON.stringify(tags.xid)}: want a decimal transaction id`);
  if (snapshot.visible(BigInt(tags.xid))) return 'visible';
  if (!cursors.apply(channel, pos)) return 'duplicate';
  return 'apply';
}
