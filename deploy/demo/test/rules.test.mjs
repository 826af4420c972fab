// Unit tests of cmd/demo/web/rules.js: the cases of the checkpoint package's Go tests
// (position_test.go, snapshot_test.go), so that the page and Go consumers decide alike.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePosition, comparePositions, Cursors, Snapshot, BadTokenError, decide } from '../../../cmd/demo/web/rules.js';

test('parsePosition reads the header form, and nothing else', () => {
  assert.deepEqual(parsePosition('0000001600B374D8-00000003'), { lsn: 0x1600b374d8n, index: 3 });
  assert.deepEqual(parsePosition('ffffffffffffffff-ffffffff'), { lsn: (1n << 64n) - 1n, index: 0xffffffff });
  for (const bad of ['', '0000001600B374D8', '0000001600B374D8-0000003', '0000001600B374D8_00000003',
    '+000001600B374D8-00000003', '0x00001600B374D8-00000003', '0000001600B374D8-0000000g', ' 000001600B374D8-00000003', undefined]) {
    assert.throws(() => parsePosition(bad), BadTokenError, String(bad));
  }
});

test('comparePositions orders by commit LSN, then index', () => {
  const p = (s) => parsePosition(s);
  assert.equal(comparePositions(p('0000000000000010-00000000'), p('0000000000000010-00000001')), -1);
  assert.equal(comparePositions(p('0000000000000011-00000000'), p('0000000000000010-00000005')), 1);
  assert.equal(comparePositions(p('0000000000000010-00000002'), p('0000000000000010-00000002')), 0);
  // Past 2^53: BigInt, not Number, or these two would compare equal.
  assert.equal(comparePositions(p('0020000000000001-00000000'), p('0020000000000000-00000000')), 1);
});

test('Cursors applies each position once per channel, in order', () => {
  const c = new Cursors();
  const p = (s) => parsePosition(s);
  assert.equal(c.apply('a', p('0000000000000010-00000000')), true);
  assert.equal(c.apply('a', p('0000000000000010-00000000')), false, 'the same event again');
  assert.equal(c.apply('a', p('000000000000000F-00000007')), false, 'an earlier one');
  assert.equal(c.apply('b', p('0000000000000001-00000000')), true, 'channels are independent');
  assert.equal(c.apply('a', p('0000000000000010-00000001')), true);
  assert.deepEqual(c.last('a'), p('0000000000000010-00000001'));
  assert.equal(c.last('z'), undefined);
});

test('Snapshot.parse accepts what pg_current_snapshot() prints, rejects the rest', () => {
  const cases = [
    ['10:20:', 10n, 20n, []],
    ['10:10:', 10n, 10n, []],
    ['10:20:10,14,15', 10n, 20n, [10n, 14n, 15n]],
    ['10:20:15,10,15', 10n, 20n, [10n, 15n]],
    ['4294967300:4294967310:4294967301', 4294967300n, 4294967310n, [4294967301n]],
  ];
  for (const [text, xmin, xmax, xip] of cases) {
    const s = Snapshot.parse(text);
    assert.deepEqual([s.xmin, s.xmax, s.xip], [xmin, xmax, xip], text);
  }
  for (const bad of ['', '10:20', '10:20:1:2', '20:10:', '10:20:9', '10:20:20', '10:20:12,', '-1:20:', ' 10:20:', '10:20:0x11',
    '18446744073709551616:18446744073709551617:']) {
    assert.throws(() => Snapshot.parse(bad), BadTokenError, bad);
  }
});

test('Snapshot.visible: below xmin, or below xmax and not in progress', () => {
  const s = Snapshot.parse('100:110:100,105');
  for (const [xid, want] of [[1n, true], [99n, true], [100n, false], [101n, true], [105n, false], [109n, true], [110n, false], [1n << 40n, false]]) {
    assert.equal(s.visible(xid), want, `xid ${xid}`);
    assert.equal(s.visible(String(xid)), want, `xid "${xid}"`);
  }
});

// The model of TestSnapshot_Property: ids handed out in order, ending in any order; a snapshot
// taken at any moment must call visible exactly the ids committed before it.
test('Snapshot.visible says "committed before the snapshot" (property)', () => {
  let seed = 7;
  const rand = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
  for (let run = 0; run < 200; run++) {
    let next = (1n << 32n) - 50n + BigInt(rand(100));
    const first = next;
    const running = new Set();
    const committed = new Set();
    for (let i = 0; i < 150; i++) {
      if (rand(2) === 0 || running.size === 0) running.add(next++);
      else { const ids = [...running]; const x = ids[rand(ids.length)]; running.delete(x); committed.add(x); }
      if (rand(10) === 0) {
        const ids = [...running].sort((a, b) => (a < b ? -1 : 1));
        const xmin = ids.length ? ids[0] : next;
        const s = Snapshot.parse(`${xmin}:${next}:${ids.join(',')}`);
        for (let x = first; x < next + 3n; x++) assert.equal(s.visible(x), committed.has(x), `run ${run}: xid ${x} in ${s}`);
      }
    }
  }
});

test('decide: visible events are skipped, then duplicates, then applied', () => {
  const snap = Snapshot.parse('100:110:105');
  const c = new Cursors();
  assert.equal(decide(snap, c, 'ch', { xid: '101', position: '0000000000000010-00000000' }), 'visible');
  assert.equal(decide(snap, c, 'ch', { xid: '105', position: '0000000000000011-00000000' }), 'apply');
  assert.equal(decide(snap, c, 'ch', { xid: '105', position: '0000000000000011-00000000' }), 'duplicate');
  assert.equal(decide(snap, c, 'ch', { xid: '112', position: '0000000000000012-00000000' }), 'apply');
  assert.throws(() => decide(snap, c, 'ch', { xid: 'x', position: '0000000000000013-00000000' }), BadTokenError);
  assert.throws(() => decide(snap, c, 'ch', { xid: '113' }), BadTokenError);
});
