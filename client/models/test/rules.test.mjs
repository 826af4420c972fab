// The rules module against the cases of the Go tests of record (position_test.go) and checkpoint
// (cursors_test.go, snapshot_test.go), so that the SDK and Go consumers decide alike.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parsePosition, formatPosition, comparePositions, Cursors, Snapshot, BadTokenError, parseXid, decide, rebase,
} from '../dist/index.js';

// A seeded generator, so that a failing property run can be replayed.
function rng(seed) {
  let s = BigInt(seed);
  return (n) => {
    s = (s * 6364136223846793005n + 1442695040888963407n) & ((1n << 64n) - 1n);
    return Number((s >> 33n) % BigInt(n));
  };
}

// TestParsePosition
test('parsePosition: the header form, and nothing else (TestParsePosition)', () => {
  const ok = [
    ['0000001600B374D8-00000003', 0x1600b374d8n, 3],
    ['0000000000000000-00000000', 0n, 0],
    ['FFFFFFFFFFFFFFFF-FFFFFFFF', (1n << 64n) - 1n, 0xffffffff],
    ['0000001600b374d8-0000000a', 0x1600b374d8n, 10],
  ];
  for (const [text, lsn, index] of ok) {
    assert.deepEqual(parsePosition(text), { lsn, index }, text);
    assert.equal(formatPosition(parsePosition(text)), text.toUpperCase(), `${text} round-trips`);
  }
  const bad = [
    '', '16/B374D848',
    '0000001600B374D8-0000003', // short index
    '0000001600B374D8-000000003', // long index
    '0000001600B374D8_00000003', // wrong separator
    '+000001600B374D8-00000003', // sign
    '0x00001600B374D8-00000003', // prefix
    '0000001600B374D8-0000000G',
    ' 000001600B374D8-00000003', // space
    '0000001600B374D8-+0000003', // sign in the index
    undefined, 42,
  ];
  for (const text of bad) {
    assert.throws(() => parsePosition(text), (e) => e instanceof BadTokenError && e.reason === 'position', String(text));
  }
});

// TestPosition_Compare
test('comparePositions: commit LSN first, then index (TestPosition_Compare)', () => {
  const p = (lsn, index) => ({ lsn, index });
  const a = p(0x100n, 5);
  for (const [q, want] of [
    [p(0x100n, 5), 0],
    [p(0x100n, 6), -1],
    [p(0x100n, 4), 1],
    [p(0xffn, 9), 1], // lower LSN wins over a higher index
    [p(0x101n, 0), -1], // higher LSN wins over a lower index
  ]) {
    assert.equal(comparePositions(a, q), want, `${formatPosition(a)} vs ${formatPosition(q)}`);
  }
  // Past 2^53: BigInt, not Number, or these two would compare equal.
  assert.equal(comparePositions(parsePosition('0020000000000001-00000000'), parsePosition('0020000000000000-00000000')), 1);
});

// TestCursors_Apply
test('Cursors: each position once per channel, in order (TestCursors_Apply)', () => {
  const p = (lsn, index) => ({ lsn: BigInt(lsn), index });
  const c = new Cursors();
  const steps = [
    ['a', p(10, 0), true],
    ['a', p(10, 0), false], // duplicate
    ['a', p(10, 1), true],
    ['b', p(5, 0), true], // channels are independent: older than a's, still new on b
    ['a', p(9, 7), false], // before the last applied: a replay
    ['a', p(11, 0), true],
    ['b', p(5, 0), false],
    ['a', p(10, 1), false],
  ];
  steps.forEach(([ch, pos, want], i) => assert.equal(c.apply(ch, pos), want, `step ${i}`));
  assert.deepEqual(c.last('a'), p(11, 0));
  assert.equal(c.last('c'), undefined, 'a channel never applied has no last position');
  c.set('c', p(20, 0));
  assert.equal(c.apply('c', p(19, 0)), false);
  assert.equal(c.apply('c', p(20, 1)), true);
});

// TestCursors_Property
test('Cursors: every new event applied once, every replay dropped (TestCursors_Property)', () => {
  const r = rng(12);
  for (let run = 0; run < 200; run++) {
    const c = new Cursors();
    const sent = new Map();
    const applied = new Map();
    let lsn = 0n;
    for (let i = 0; i < 300; i++) {
      const ch = 'abcd'[r(4)];
      const past = sent.get(ch) ?? [];
      if (past.length > 0 && r(3) === 0) {
        const old = past[r(past.length)];
        assert.equal(c.apply(ch, old), false, `run ${run}: replay of ${formatPosition(old)} on ${ch} applied`);
        continue;
      }
      lsn += BigInt(1 + r(100));
      const pos = { lsn, index: r(3) };
      sent.set(ch, [...past, pos]);
      assert.equal(c.apply(ch, pos), true, `run ${run}: new event ${formatPosition(pos)} on ${ch} dropped`);
      applied.set(ch, (applied.get(ch) ?? 0) + 1);
    }
    for (const [ch, s] of sent) assert.equal(applied.get(ch), s.length, `run ${run}: channel ${ch}`);
  }
});

// FuzzParsePosition's property, over random texts: positions compare as their texts do.
test('positions compare as their texts do (FuzzParsePosition)', () => {
  const r = rng(5);
  const hex = (n) => Array.from({ length: n }, () => '0123456789ABCDEFabcdef'[r(22)]).join('');
  for (let i = 0; i < 2000; i++) {
    const a = parsePosition(`${hex(16)}-${hex(8)}`);
    const b = r(4) === 0 ? a : parsePosition(`${hex(16)}-${hex(8)}`);
    const ta = formatPosition(a);
    const tb = formatPosition(b);
    assert.deepEqual(parsePosition(ta), a);
    assert.equal(comparePositions(a, b), ta < tb ? -1 : ta > tb ? 1 : 0, `${ta} vs ${tb}`);
  }
});

// TestParseSnapshot
test('Snapshot.parse: what pg_current_snapshot() prints, and nothing else (TestParseSnapshot)', () => {
  const ok = [
    ['10:20:', 10n, 20n, []],
    ['10:10:', 10n, 10n, []],
    ['10:20:10,14,15', 10n, 20n, [10n, 14n, 15n]],
    ['10:20:15,10,15', 10n, 20n, [10n, 15n]],
    ['4294967300:4294967310:4294967301', 4294967300n, 4294967310n, [4294967301n]], // past the first epoch
    ['18446744073709551614:18446744073709551615:', 18446744073709551614n, 18446744073709551615n, []], // the top of the range
  ];
  for (const [text, xmin, xmax, xip] of ok) {
    const s = Snapshot.parse(text);
    assert.deepEqual([s.xmin, s.xmax, [...s.xip]], [xmin, xmax, xip], text);
    assert.equal(Snapshot.parse(s.toString()).toString(), s.toString(), `${text} round-trips`);
  }
  const bad = [
    '', '10:20', '10:20:1:2',
    '20:10:', // xmin above xmax
    '10:20:9', // in-progress below xmin
    '10:20:20', // in-progress at xmax
    '10:20:12,', // empty id
    '-1:20:', // sign
    ' 10:20:', // space
    '10:20:0x11', // not decimal
    '18446744073709551616:18446744073709551617:', // out of range
    undefined,
  ];
  for (const text of bad) {
    assert.throws(() => Snapshot.parse(text), (e) => e instanceof BadTokenError && e.reason === 'snapshot', String(text));
  }
});

// TestSnapshot_Visible
test('Snapshot.visible: below xmin, or below xmax and not in progress (TestSnapshot_Visible)', () => {
  const s = Snapshot.parse('100:110:100,105');
  for (const [xid, want] of [
    [1n, true],
    [99n, true], // below xmin
    [100n, false], // xmin itself, in progress
    [101n, true], // committed between xmin and xmax
    [105n, false], // in progress
    [109n, true],
    [110n, false], // xmax: not yet started when the snapshot was taken
    [1n << 40n, false],
  ]) {
    assert.equal(s.visible(xid), want, `xid ${xid}`);
    assert.equal(s.visible(String(xid)), want, `xid "${xid}"`);
  }
  assert.throws(() => s.visible('1e3'), BadTokenError);
});

// TestSnapshot_Property: ids handed out in order, ending in any order; a snapshot taken at any
// moment must call visible exactly the ids committed before it.
test('Snapshot.visible says "committed before the snapshot" (TestSnapshot_Property)', () => {
  const r = rng(34);
  for (let run = 0; run < 300; run++) {
    let next = (1n << 32n) - 50n + BigInt(r(100)); // around an epoch boundary, for good measure
    const first = next;
    const running = new Set();
    const committed = new Set();
    for (let i = 0; i < 200; i++) {
      if (r(2) === 0 || running.size === 0) running.add(next++);
      else {
        const ids = [...running].sort((a, b) => (a < b ? -1 : 1));
        const x = ids[r(ids.length)];
        running.delete(x);
        committed.add(x);
      }
      if (r(10) !== 0) continue;
      const ids = [...running].sort((a, b) => (a < b ? -1 : 1));
      const s = Snapshot.parse(`${ids.length ? ids[0] : next}:${next}:${ids.join(',')}`);
      for (let x = first; x < next + 5n; x++) assert.equal(s.visible(x), committed.has(x), `run ${run}: xid ${x} in ${s}`);
    }
  }
});

test('parseXid: decimal 64-bit ids only', () => {
  assert.equal(parseXid('0'), 0n);
  assert.equal(parseXid('18446744073709551615'), (1n << 64n) - 1n);
  for (const bad of ['', '-1', '1.5', '0x10', ' 1', '18446744073709551616', undefined, 7]) {
    assert.throws(() => parseXid(bad), (e) => e instanceof BadTokenError && e.reason === 'xid', String(bad));
  }
});

test('decide: visible in the snapshot first, then duplicates, then apply', () => {
  const snap = Snapshot.parse('100:110:105');
  const c = new Cursors();
  assert.equal(decide(snap, c, 'ch', { xid: '101', position: '0000000000000010-00000000' }), 'visible');
  assert.equal(c.last('ch'), undefined, 'a visible event moves no cursor');
  assert.equal(decide(snap, c, 'ch', { xid: '105', position: '0000000000000011-00000000' }), 'apply');
  assert.equal(decide(snap, c, 'ch', { xid: '105', position: '0000000000000011-00000000' }), 'duplicate');
  assert.equal(decide(snap, c, 'ch', { xid: '112', position: '0000000000000012-00000000' }), 'apply');
  assert.equal(decide(snap, c, 'ch', { xid: '113', position: '0000000000000011-00000005' }), 'duplicate', 'before the last applied');
  assert.throws(() => decide(snap, c, 'ch', { xid: 'x', position: '0000000000000013-00000000' }), BadTokenError);
  assert.throws(() => decide(snap, c, 'ch', { xid: '113' }), BadTokenError);
});

test('rebase: events in order over the state; one that throws is left out and reported', () => {
  const merge = (s, e) => {
    if (e.boom) throw new Error('boom');
    return [...s, e.v];
  };
  const base = Object.freeze([0]);
  const r = rebase(base, [{ v: 1 }, { boom: true }, { v: 2 }], merge);
  assert.deepEqual(r.state, [0, 1, 2]);
  assert.equal(r.failed.length, 1);
  assert.equal(r.failed[0].error.message, 'boom');
  assert.deepEqual(base, [0], 'the state itself is untouched');
});
