package checkpoint

import "errors"

// Every error the Ledger and the Tracker return wraps one of these sentinels, so callers can
// tell them apart with errors.Is. All of them mean the caller broke the ledger's contract (a
// bug, or a replication stream the relay did not expect); the call that returned one changed
// nothing, and the watermark stays behind every unacknowledged row. The relay should log the
// error and stop: after a restart PostgreSQL sends everything after the confirmed position again.
var (
	// ErrUnknownTxn means the id was never returned by Begin, or its transaction is already
	// behind the watermark and forgotten (for example, a second Ack for the same rows).
	ErrUnknownTxn = errors.New("checkpoint: unknown transaction (never begun, or already confirmed)")

	// ErrTxnClosed means Add or Commit named a transaction that is already committed.
	ErrTxnClosed = errors.New("checkpoint: transaction already committed")

	// ErrCommitOrder means Commit named a transaction while an earlier one was still open.
	// Transactions must be committed in the order they began: pgoutput sends each transaction
	// whole, in commit order, so two open transactions mean the stream was misread.
	ErrCommitOrder = errors.New("checkpoint: commit out of order (an earlier transaction is still open)")

	// ErrLSNOrder means Commit's end LSN is above the watermark but not above the end LSN of an
	// earlier transaction. Accepted, it would let the earlier transaction's acknowledgement move
	// the watermark past this one's unacknowledged rows. It happens when a replication
	// connection is restarted while the ledger still holds transactions, and PostgreSQL sends
	// them again.
	ErrLSNOrder = errors.New("checkpoint: end LSN not after the previous transaction's")

	// ErrOverAck means Ack named more rows, or more bytes, than the transaction has in flight.
	ErrOverAck = errors.New("checkpoint: more rows or bytes acknowledged than in flight")

	// ErrInvalidCount means a negative byte count, an Ack of no rows, or a transaction's last
	// Ack whose bytes differ from the bytes still in flight (the window would leak them).
	ErrInvalidCount = errors.New("checkpoint: invalid row or byte count")
)

// Errors of the consumer-side types: text that is not what the relay or PostgreSQL writes.
var (
	// ErrBadSnapshot means a text is not pg_current_snapshot()'s "xmin:xmax:xip,..." form,
	// or breaks its rules (xmin <= xmax, every in-progress id in [xmin, xmax)).
	ErrBadSnapshot = errors.New("checkpoint: malformed snapshot")
)
