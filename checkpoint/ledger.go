package checkpoint

import (
	"fmt"
	"time"

	"github.com/pgoutbox/pgoutbox/record"
)

// LSN is a PostgreSQL WAL position: the record contract's (record.LSN), which formats as
// PostgreSQL does ("16/B374D848"). The package imports nothing outside the standard library
// but the driver-free record package.
type LSN = record.LSN

// TxnID identifies a transaction inside one Ledger. Begin assigns ids in WAL order, strictly
// increasing from 1, so the zero TxnID never names a transaction.
type TxnID uint64

// txn is one transaction the ledger still holds.
type txn struct {
	commitTime time.Time
	end        LSN   // set by Commit
	rows       int   // rows added and not yet acknowledged
	bytes      int64 // the bytes of those rows
}

// Ledger tracks the transactions between capture and Kafka and computes the watermark: the
// position the relay may confirm to PostgreSQL. See the package documentation for why.
//
// A Ledger is not safe for concurrent use; Tracker wraps it for the relay's goroutines.
type Ledger struct {
	// held[head:] are the transactions not yet behind the watermark, in WAL order. Ids are
	// dense, so held[head+i] has id first()+i and a lookup is an index, not a map. Popping
	// advances head; the slice is compacted once half of it is dead (amortized O(1)).
	held []txn
	head int

	next    TxnID // the id the next Begin returns
	open    TxnID // the lowest id not yet committed: ids below it are committed, ids from it are open
	wm      LSN   // the watermark
	idleEnd LSN   // the newest Idle position seen while transactions were held: applied on drain
	lastEnd LSN   // the highest end LSN Commit accepted (or the start position)
	rows    int   // rows in flight over all transactions
	bytes   int64 // their bytes
}

// NewLedger returns an empty ledger whose watermark is start. Start from the slot's
// confirmed_flush_lsn read at start-up: pglogrepl.SendStandbyStatusUpdate replaces a zero flush
// position with the write position, so a watermark of 0 would confirm everything received.
// A start of 0 is accepted all the same; the ledger never panics.
func NewLedger(start LSN) *Ledger {
	return &Ledger{next: 1, open: 1, wm: start, lastEnd: start}
}

// Begin opens a transaction (pgoutput's Begin message) and returns its id. commitTime is the
// commit timestamp Begin carries; OldestUnacked reports it. Transactions must begin in WAL
// order; pgoutput (without streaming) sends each one whole, so one is open at a time.
func (l *Ledger) Begin(commitTime time.Time) TxnID {
	id := l.next
	l.next++
	l.held = append(l.held, txn{commitTime: commitTime})
	return id
}

// Add records one more row of the open transaction id as in flight; bytes is its size, for
// the window. Call it before handing the row to Kafka, so that its Ack cannot come first.
func (l *Ledger) Add(id TxnID, bytes int) error {
	t, err := l.addable(id, bytes)
	if err != nil {
		return err
	}
	t.rows++
	t.bytes += int64(bytes)
	l.rows++
	l.bytes += int64(bytes)
	return nil
}

// addable returns the transaction Add(id, bytes) would change, or why it must not. Tracker
// uses it to report a bad call even when the window is full.
func (l *Ledger) addable(id TxnID, bytes int) (*txn, error) {
	t := l.find(id)
	switch {
	case bytes < 0:
		return nil, fmt.Errorf("add row of %d bytes to txn %d: %w", bytes, id, ErrInvalidCount)
	case t == nil:
		return nil, fmt.Errorf("add row to txn %d: %w", id, ErrUnknownTxn)
	case id < l.open:
		return nil, fmt.Errorf("add row to txn %d: %w", id, ErrTxnClosed)
	}
	return t, nil
}

// Commit closes the transaction id with its end LSN (pglogrepl's TransactionEndLSN). A
// transaction whose rows are all acknowledged, or that had none, is acknowledged here.
//
// An end LSN at or below the watermark is accepted and never moves the watermark back: after
// a reconnect PostgreSQL sends again transactions the relay had already confirmed. An end LSN
// above the watermark must be above every earlier one (ErrLSNOrder). On error the transaction
// stays open, so the watermark can never pass it.
func (l *Ledger) Commit(id TxnID, end LSN) error {
	t := l.find(id)
	switch {
	case t == nil:
		return fmt.Errorf("commit txn %d: %w", id, ErrUnknownTxn)
	case id < l.open:
		return fmt.Errorf("commit txn %d: %w", id, ErrTxnClosed)
	case id > l.open:
		return fmt.Errorf("commit txn %d before txn %d: %w", id, l.open, ErrCommitOrder)
	case end > l.wm && end <= l.lastEnd:
		return fmt.Errorf("commit txn %d at %s, previous ends at %s: %w", id, end, l.lastEnd, ErrLSNOrder)
	}
	t.end = end
	l.open++
	l.lastEnd = max(l.lastEnd, end)
	l.advance()
	return nil
}

// Ack records that Kafka acknowledged rows rows of transaction id, bytes in total. Acks may
// arrive in any order across transactions, and before the transaction's Commit.
func (l *Ledger) Ack(id TxnID, rows int, bytes int) error {
	t := l.find(id)
	switch {
	case rows <= 0 || bytes < 0:
		return fmt.Errorf("ack %d rows, %d bytes of txn %d: %w", rows, bytes, id, ErrInvalidCount)
	case t == nil:
		return fmt.Errorf("ack txn %d: %w", id, ErrUnknownTxn)
	case rows > t.rows || int64(bytes) > t.bytes:
		return fmt.Errorf("ack %d rows, %d bytes of txn %d with %d rows, %d bytes in flight: %w",
			rows, bytes, id, t.rows, t.bytes, ErrOverAck)
	case rows == t.rows && int64(bytes) != t.bytes:
		return fmt.Errorf("ack last %d rows of txn %d with %d bytes, %d in flight: %w",
			rows, id, bytes, t.bytes, ErrInvalidCount)
	}
	t.rows -= rows
	t.bytes -= int64(bytes)
	l.rows -= rows
	l.bytes -= int64(bytes)
	if t.rows == 0 {
		l.advance()
	}
	return nil
}

// Idle takes the server's WAL end from a keepalive (or an XLogData header). When the ledger
// holds no transaction, the watermark moves up to it, so that traffic on other tables does not
// pin WAL; otherwise it is kept, and applied once the ledger drains: an idle server sends no
// further keepalive (the relay's status updates keep it from needing one), so a position seen
// while the last rows were in flight would otherwise never be confirmed, and the slot would
// stay at the last commit while other databases' WAL grows. The watermark never moves back.
//
// It is safe because the walsender sends every transaction committed before serverWALEnd
// ahead of the message carrying it: call Idle only after the ledger has seen every message
// received before that one.
func (l *Ledger) Idle(serverWALEnd LSN) {
	if l.Pending() == 0 {
		l.wm = max(l.wm, serverWALEnd)
		return
	}
	l.idleEnd = max(l.idleEnd, serverWALEnd)
}

// Watermark returns the position the relay may confirm: the end LSN of the longest prefix of
// committed transactions, in WAL order, whose rows Kafka acknowledged (or a later Idle
// position). It starts at NewLedger's start and never decreases.
func (l *Ledger) Watermark() LSN { return l.wm }

// InFlight returns the rows added and not yet acknowledged, and their bytes.
func (l *Ledger) InFlight() (rows int, bytes int64) { return l.rows, l.bytes }

// Pending returns how many transactions the ledger holds: those not yet behind the watermark,
// because they are open, have unacknowledged rows, or come after one that does.
func (l *Ledger) Pending() int { return len(l.held) - l.head }

// OldestUnacked returns the commit time of the oldest transaction with a row Kafka has not
// acknowledged, for the "age of the oldest unacknowledged commit" alarm; false when none.
func (l *Ledger) OldestUnacked() (time.Time, bool) {
	// advance pops the front once it is committed with no rows left, so the front either has
	// unacknowledged rows or is open, and everything after an open transaction is open too
	// (commits come in order). With one transaction open at a time, this looks at one element.
	for i := l.head; i < len(l.held); i++ {
		if l.held[i].rows > 0 {
			return l.held[i].commitTime, true
		}
	}
	return time.Time{}, false
}

// first returns the id of the oldest held transaction (== next when none is held).
func (l *Ledger) first() TxnID { return l.next - TxnID(l.Pending()) }

// find returns the held transaction id, or nil.
func (l *Ledger) find(id TxnID) *txn {
	first := l.first()
	if id < first || id >= l.next {
		return nil
	}
	return &l.held[l.head+int(id-first)]
}

// advance pops committed, fully acknowledged transactions from the front and moves the
// watermark to their end. max keeps it from going back when an end LSN was below it.
func (l *Ledger) advance() {
	defer func() {
		if l.Pending() == 0 {
			l.wm = max(l.wm, l.idleEnd) // every transaction received before it is in Kafka
		}
	}()
	for l.Pending() > 0 && l.first() < l.open && l.held[l.head].rows == 0 {
		l.wm = max(l.wm, l.held[l.head].end)
		l.held[l.head] = txn{} // drop the time.Location pointer
		l.head++
		if 2*l.head >= len(l.held) {
			// At most as many live elements as were popped since the last compaction are
			// copied, so each pop costs O(1) amortized, and an empty ledger reuses its array.
			n := copy(l.held, l.held[l.head:])
			l.held, l.head = l.held[:n], 0
		}
	}
}
