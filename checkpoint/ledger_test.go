package checkpoint

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// A table test is a script of steps run against one ledger. A step is a call (which must
// succeed, or fail with a given sentinel and change nothing) or a check of what it reports.
type step struct {
	desc string
	run  func(l *Ledger) error
	want error // the sentinel run must return; nil means it must succeed
}

// fails expects the step to return err and leave the ledger unchanged.
func (s step) fails(err error) step {
	s.want = err
	return s
}

// at is the commit time Begin gets for transaction id, so checks can name it by id.
func at(id TxnID) time.Time { return time.Unix(1_700_000_000+int64(id), 0) }

func begin(want TxnID) step {
	return step{desc: fmt.Sprintf("Begin() = %d", want), run: func(l *Ledger) error {
		if got := l.Begin(at(want)); got != want {
			return fmt.Errorf("got id %d", got)
		}
		return nil
	}}
}

func add(id TxnID, bytes int) step {
	return step{desc: fmt.Sprintf("Add(%d, %d)", id, bytes), run: func(l *Ledger) error {
		return l.Add(id, bytes)
	}}
}

func commit(id TxnID, end LSN) step {
	return step{desc: fmt.Sprintf("Commit(%d, %d)", id, end), run: func(l *Ledger) error {
		return l.Commit(id, end)
	}}
}

func ack(id TxnID, rows, bytes int) step {
	return step{desc: fmt.Sprintf("Ack(%d, %d, %d)", id, rows, bytes), run: func(l *Ledger) error {
		return l.Ack(id, rows, bytes)
	}}
}

func idle(lsn LSN) step {
	return step{desc: fmt.Sprintf("Idle(%d)", lsn), run: func(l *Ledger) error {
		l.Idle(lsn)
		return nil
	}}
}

func wantWM(lsn LSN) step {
	return step{desc: fmt.Sprintf("Watermark() = %d", lsn), run: func(l *Ledger) error {
		if got := l.Watermark(); got != lsn {
			return fmt.Errorf("got %d", got)
		}
		return nil
	}}
}

func wantInFlight(rows int, bytes int64) step {
	return step{desc: fmt.Sprintf("InFlight() = %d, %d", rows, bytes), run: func(l *Ledger) error {
		if r, b := l.InFlight(); r != rows || b != bytes {
			return fmt.Errorf("got %d, %d", r, b)
		}
		return nil
	}}
}

func wantPending(n int) step {
	return step{desc: fmt.Sprintf("Pending() = %d", n), run: func(l *Ledger) error {
		if got := l.Pending(); got != n {
			return fmt.Errorf("got %d", got)
		}
		return nil
	}}
}

// wantOldest checks OldestUnacked names transaction id (0: none).
func wantOldest(id TxnID) step {
	return step{desc: fmt.Sprintf("OldestUnacked() is txn %d", id), run: func(l *Ledger) error {
		got, ok := l.OldestUnacked()
		if ok != (id != 0) || (ok && !got.Equal(at(id))) {
			return fmt.Errorf("got %v, %v", got, ok)
		}
		return nil
	}}
}

// state is everything a rejected call must leave as it was.
type state struct {
	wm, lastEnd     LSN
	next, open      TxnID
	rows, pending   int
	bytes           int64
	oldest          time.Time
	hasOldest       bool
	txnRows, txnLen int
}

func snapshot(l *Ledger) state {
	s := state{wm: l.wm, lastEnd: l.lastEnd, next: l.next, open: l.open, rows: l.rows,
		bytes: l.bytes, pending: l.Pending(), txnLen: len(l.held)}
	s.oldest, s.hasOldest = l.OldestUnacked()
	for _, t := range l.held[l.head:] {
		s.txnRows += t.rows
	}
	return s
}

type script struct {
	name  string
	start LSN
	steps []step
}

func runScripts(t *testing.T, scripts []script) {
	t.Helper()
	for _, sc := range scripts {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			l := NewLedger(sc.start)
			for i, s := range sc.steps {
				before := snapshot(l)
				err := s.run(l)
				switch {
				case s.want == nil && err != nil:
					t.Fatalf("step %d %s: %v", i, s.desc, err)
				case s.want != nil && !errors.Is(err, s.want):
					t.Fatalf("step %d %s: error %v, want %v", i, s.desc, err, s.want)
				case s.want != nil && snapshot(l) != before:
					t.Fatalf("step %d %s: rejected call changed the ledger:\n%+v\n%+v", i, s.desc, before, snapshot(l))
				}
			}
		})
	}
}

func TestLSN_String(t *testing.T) {
	t.Parallel()
	for lsn, want := range map[LSN]string{
		0:                   "0/0",
		0x16_B374D848:       "16/B374D848",
		0x1_00000000:        "1/0",
		^LSN(0):             "FFFFFFFF/FFFFFFFF",
		0x0000000A_0000000B: "A/B",
	} {
		if got := lsn.String(); got != want {
			t.Errorf("LSN(%#x).String() = %q, want %q", uint64(lsn), got, want)
		}
	}
}

func TestNewLedger(t *testing.T) {
	runScripts(t, []script{
		{"watermark starts at start", 0x16_B374D848, []step{
			wantWM(0x16_B374D848), wantPending(0), wantInFlight(0, 0), wantOldest(0),
		}},
		{"start 0 works", 0, []step{
			wantWM(0), begin(1), commit(1, 10), wantWM(10), idle(0), wantWM(10),
		}},
	})
}

func TestLedger_Add(t *testing.T) {
	runScripts(t, []script{
		{"rows of an open txn are in flight", 100, []step{
			begin(1), add(1, 10), add(1, 0), add(1, 5), wantInFlight(3, 15), wantPending(1), wantOldest(1),
		}},
		{"unknown id", 100, []step{
			add(0, 1).fails(ErrUnknownTxn), add(1, 1).fails(ErrUnknownTxn),
			begin(1), add(2, 1).fails(ErrUnknownTxn),
		}},
		{"after commit", 100, []step{
			begin(1), add(1, 1), commit(1, 200), add(1, 1).fails(ErrTxnClosed),
			ack(1, 1, 1), add(1, 1).fails(ErrUnknownTxn), // confirmed and forgotten
		}},
		{"negative bytes", 100, []step{
			begin(1), add(1, -1).fails(ErrInvalidCount),
		}},
	})
}

func TestLedger_Commit(t *testing.T) {
	runScripts(t, []script{
		{"txn without rows is acked at commit", 100, []step{
			begin(1), wantWM(100), commit(1, 200), wantWM(200), wantPending(0),
		}},
		{"txn with rows waits for its acks", 100, []step{
			begin(1), add(1, 10), commit(1, 200), wantWM(100), ack(1, 1, 10), wantWM(200),
		}},
		{"txn acked before its commit is done at commit", 100, []step{
			begin(1), add(1, 10), ack(1, 1, 10), wantWM(100), commit(1, 200), wantWM(200),
		}},
		{"end below watermark keeps it", 500, []step{
			begin(1), add(1, 1), commit(1, 300), wantWM(500), ack(1, 1, 1), wantWM(500), wantPending(0),
			begin(2), commit(2, 500), wantWM(500), begin(3), commit(3, 600), wantWM(600),
		}},
		{"end below watermark behind a held txn", 100, []step{
			begin(1), add(1, 1), commit(1, 300), idle(1000), wantWM(100), // kept: txn 1 held
			begin(2), add(2, 1), commit(2, 50), ack(2, 1, 1), wantWM(100), ack(1, 1, 1), wantWM(1000), // drained
		}},
		{"unknown id", 100, []step{
			commit(0, 200).fails(ErrUnknownTxn), commit(1, 200).fails(ErrUnknownTxn),
			begin(1), commit(1, 200), commit(1, 300).fails(ErrUnknownTxn), // confirmed and forgotten
		}},
		{"twice", 100, []step{
			begin(1), add(1, 1), commit(1, 200), commit(1, 300).fails(ErrTxnClosed), wantWM(100),
		}},
		{"out of begin order", 100, []step{
			begin(1), begin(2), add(2, 1), commit(2, 200).fails(ErrCommitOrder),
			commit(1, 150), wantWM(150), commit(2, 200), ack(2, 1, 1), wantWM(200),
		}},
		{"end not after previous end", 100, []step{
			begin(1), add(1, 1), commit(1, 300),
			begin(2), commit(2, 250).fails(ErrLSNOrder), commit(2, 300).fails(ErrLSNOrder),
			ack(1, 1, 1), wantWM(300), wantPending(1), // txn 2 still open: Idle waits
			idle(400), wantWM(300), commit(2, 401), wantWM(401),
		}},
	})
}

func TestLedger_Ack(t *testing.T) {
	runScripts(t, []script{
		{"watermark stops at first unacked txn", 100, []step{
			begin(1), add(1, 1), commit(1, 200),
			begin(2), add(2, 1), commit(2, 300),
			begin(3), commit(3, 400),
			ack(2, 1, 1), wantWM(100), wantPending(3), wantOldest(1),
			ack(1, 1, 1), wantWM(400), wantPending(0), wantOldest(0),
		}},
		{"out of order across txns", 100, []step{
			begin(1), add(1, 1), add(1, 2), commit(1, 200),
			begin(2), add(2, 3), add(2, 4), commit(2, 300),
			begin(3), add(3, 5), commit(3, 400),
			ack(3, 1, 5), ack(2, 1, 4), wantWM(100), wantInFlight(3, 6), wantOldest(1),
			ack(1, 2, 3), wantWM(200), wantOldest(2),
			ack(2, 1, 3), wantWM(400), wantInFlight(0, 0), wantOldest(0),
		}},
		{"partial acks hold the txn", 100, []step{
			begin(1), add(1, 1), add(1, 1), add(1, 1), commit(1, 200),
			ack(1, 1, 1), ack(1, 1, 1), wantWM(100), wantInFlight(1, 1), ack(1, 1, 1), wantWM(200),
		}},
		{"acks of an open txn", 100, []step{
			begin(1), add(1, 7), ack(1, 1, 7), wantInFlight(0, 0), wantWM(100), wantPending(1), wantOldest(0),
			add(1, 8), wantOldest(1), commit(1, 200), wantWM(100), ack(1, 1, 8), wantWM(200),
		}},
		{"more rows than in flight", 100, []step{
			begin(1), add(1, 1), commit(1, 200), ack(1, 2, 1).fails(ErrOverAck), wantWM(100),
		}},
		{"more bytes than in flight", 100, []step{
			begin(1), add(1, 1), add(1, 1), ack(1, 1, 3).fails(ErrOverAck),
		}},
		{"last ack with too few bytes", 100, []step{
			begin(1), add(1, 5), add(1, 5), ack(1, 2, 9).fails(ErrInvalidCount), ack(1, 2, 10),
		}},
		{"zero rows or negative bytes", 100, []step{
			begin(1), add(1, 5), ack(1, 0, 0).fails(ErrInvalidCount), ack(1, -1, 0).fails(ErrInvalidCount),
			ack(1, 1, -5).fails(ErrInvalidCount),
		}},
		{"twice", 100, []step{
			begin(1), add(1, 1), begin(2), commit(1, 200), ack(1, 1, 1), ack(1, 1, 1).fails(ErrUnknownTxn),
		}},
		{"txn without rows", 100, []step{
			begin(1), ack(1, 1, 0).fails(ErrOverAck),
		}},
		{"never begun", 100, []step{
			ack(0, 1, 1).fails(ErrUnknownTxn), ack(1, 1, 1).fails(ErrUnknownTxn),
		}},
	})
}

func TestLedger_Idle(t *testing.T) {
	runScripts(t, []script{
		{"moves when empty", 100, []step{idle(500), wantWM(500)}},
		{"never backwards", 100, []step{idle(500), idle(300), wantWM(500), idle(50), wantWM(500)}},
		// A keepalive during a transaction carries the position before its commit record.
		{"kept while a txn is open, applied when it is confirmed", 100, []step{
			begin(1), idle(150), wantWM(100), commit(1, 200), wantWM(200), idle(500), wantWM(500),
		}},
		// The server sends no further keepalive once idle: the position seen while the last
		// rows were in flight must be confirmed when they are acknowledged.
		{"kept while rows are unacked, applied when they are", 100, []step{
			begin(1), add(1, 1), commit(1, 200), idle(500), wantWM(100),
			ack(1, 1, 1), wantWM(500),
		}},
		{"kept while an acked txn waits behind an unacked one", 100, []step{
			begin(1), add(1, 1), commit(1, 200), begin(2), commit(2, 300), idle(500), wantWM(100),
			ack(1, 1, 1), wantWM(500),
		}},
	})
}

func TestLedger_Pending(t *testing.T) {
	runScripts(t, []script{
		{"counts open, unacked and waiting txns", 100, []step{
			wantPending(0), begin(1), wantPending(1), add(1, 1), commit(1, 200), wantPending(1),
			begin(2), commit(2, 300), wantPending(2), begin(3), wantPending(3),
			ack(1, 1, 1), wantPending(1), commit(3, 400), wantPending(0),
		}},
	})
}

func TestLedger_OldestUnacked(t *testing.T) {
	runScripts(t, []script{
		{"oldest txn with an unacked row", 100, []step{
			begin(1), wantOldest(0), commit(1, 150), // no rows: never reported
			begin(2), add(2, 1), commit(2, 200), begin(3), add(3, 1), wantOldest(2),
			ack(2, 1, 1), wantOldest(3), ack(3, 1, 1), wantOldest(0),
		}},
	})
}

// TestLedger_memory checks that a long stream with a shallow pipeline reuses the ledger's
// array instead of growing it: popping is amortized, not leaked.
func TestLedger_memory(t *testing.T) {
	t.Parallel()
	const depth = 8
	l := NewLedger(1)
	for i := range 20_000 {
		id := l.Begin(time.Time{})
		if err := l.Add(id, 1); err != nil {
			t.Fatal(err)
		}
		if err := l.Commit(id, LSN(i+2)); err != nil {
			t.Fatal(err)
		}
		if id > depth {
			if err := l.Ack(id-depth, 1, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	if c := cap(l.held); c > 4*depth {
		t.Errorf("cap(held) = %d with %d transactions held", c, l.Pending())
	}
	if l.Pending() != depth || l.Watermark() != LSN(20_000-depth+1) {
		t.Errorf("Pending() = %d, Watermark() = %d", l.Pending(), l.Watermark())
	}
}

func BenchmarkLedger(b *testing.B) {
	l := NewLedger(1)
	end := LSN(1)
	for b.Loop() {
		id := l.Begin(time.Time{})
		_ = l.Add(id, 100)
		end++
		_ = l.Commit(id, end)
		if id > 64 {
			_ = l.Ack(id-64, 1, 100)
		}
	}
}
