package checkpoint

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Limits bound what is in flight between capture and Kafka: rows added and not yet
// acknowledged, and their bytes. They bound the relay's memory whatever the transaction size
// and however long Kafka is down. There are no defaults here: the configuration sets both.
type Limits struct {
	// MaxEvents is the most rows in flight. Must be > 0.
	MaxEvents int
	// MaxBytes is the most bytes in flight. Must be > 0. A single row larger than this is
	// still admitted when nothing else is in flight.
	MaxBytes int64
}

// Validate reports every limit that is not above zero, all at once.
func (l Limits) Validate() error {
	var errs []error
	if l.MaxEvents <= 0 {
		errs = append(errs, fmt.Errorf("in-flight event limit is %d; set it above 0", l.MaxEvents))
	}
	if l.MaxBytes <= 0 {
		errs = append(errs, fmt.Errorf("in-flight byte limit is %d; set it above 0", l.MaxBytes))
	}
	return errors.Join(errs...)
}

// Tracker is the Ledger the relay shares between its capture loop (Begin, TryAdd, Commit, Idle,
// Confirmed) and the Kafka sink's ack callback (Ack). It also enforces the in-flight window.
// All methods are safe for concurrent use.
type Tracker struct {
	mu     sync.Mutex
	ledger *Ledger
	lim    Limits
	room   chan struct{}
}

// NewTracker returns a Tracker whose watermark starts at start (see NewLedger). It does not
// validate lim (the configuration calls Validate): with a limit at or below zero, the window
// admits one row at a time, which is slow but can neither deadlock nor grow without bound.
func NewTracker(start LSN, lim Limits) *Tracker {
	return &Tracker{ledger: NewLedger(start), lim: lim, room: make(chan struct{}, 1)}
}

// Begin opens a transaction; see Ledger.Begin.
func (t *Tracker) Begin(commitTime time.Time) TxnID {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ledger.Begin(commitTime)
}

// TryAdd records one row of transaction id as in flight if the window has room, and reports
// whether it did. When it returns false, wait on Room and try again. When nothing is in flight
// it always admits: a row larger than MaxBytes must pass, or the relay would wait for ever.
// A call the ledger would reject returns its error even when the window is full.
func (t *Tracker) TryAdd(id TxnID, bytes int) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.ledger.addable(id, bytes); err != nil {
		return false, err
	}
	rows, inBytes := t.ledger.InFlight()
	if rows > 0 && (rows >= t.lim.MaxEvents || inBytes+int64(bytes) > t.lim.MaxBytes) {
		return false, nil
	}
	if err := t.ledger.Add(id, bytes); err != nil {
		return false, err
	}
	return true, nil
}

// Room returns a channel that receives a value after an Ack frees room in the window. It is
// meant for a single waiter, the capture loop, which selects on it together with its context
// and status-update timer.
//
// A wake-up cannot be lost: Ack changes the window under the mutex and only then sends, without
// blocking, into a buffer of one. If TryAdd saw a full window, the Ack that frees it sends after
// that, so a value is in the buffer when the waiter looks, either this one or an older one that
// nobody took. A stale value is harmless: the waiter calls TryAdd again and, if the window is
// still full, waits again.
func (t *Tracker) Room() <-chan struct{} { return t.room }

// Commit closes a transaction; see Ledger.Commit.
func (t *Tracker) Commit(id TxnID, end LSN) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ledger.Commit(id, end)
}

// Ack records Kafka's acknowledgement of rows rows (bytes in total) of transaction id, and
// signals Room; see Ledger.Ack.
func (t *Tracker) Ack(id TxnID, rows int, bytes int) error {
	t.mu.Lock()
	err := t.ledger.Ack(id, rows, bytes)
	t.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case t.room <- struct{}{}:
	default: // a wake-up is already pending
	}
	return nil
}

// Idle offers the server's WAL end; see Ledger.Idle.
func (t *Tracker) Idle(serverWALEnd LSN) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ledger.Idle(serverWALEnd)
}

// Confirmed returns the watermark: the flush and apply position for the next status update.
func (t *Tracker) Confirmed() LSN {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ledger.Watermark()
}

// InFlight returns the rows added and not yet acknowledged, and their bytes.
func (t *Tracker) InFlight() (rows int, bytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ledger.InFlight()
}

// Pending returns how many transactions are not yet behind the watermark; see Ledger.Pending.
// Capture reconnects only when it is zero (see the package documentation).
func (t *Tracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ledger.Pending()
}

// OldestUnacked returns the commit time of the oldest transaction with an unacknowledged row;
// see Ledger.OldestUnacked.
func (t *Tracker) OldestUnacked() (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ledger.OldestUnacked()
}
