// Package checkpoint decides which WAL position the relay may confirm to PostgreSQL.
//
// Confirming a position (the slot's confirmed_flush_lsn) lets PostgreSQL recycle the WAL
// before it and, after a restart, skip every transaction that committed before it. So the
// relay may confirm a transaction only once Kafka has acknowledged all of its outbox rows, and
// those of every transaction committed before it: a confirmed position is a single point in
// the WAL, not a set. Confirming on receipt, as the pglogrepl demo does, loses the rows that
// were in flight when the relay stops.
//
// A Ledger records transactions in WAL (commit) order as capture decodes them, counts their
// rows in flight, and takes Kafka's acknowledgements, which arrive in any order across
// partitions. Its watermark is the end LSN of the longest prefix of committed transactions
// whose rows are all acknowledged. The end LSN (pglogrepl's TransactionEndLSN) is the right
// value: PostgreSQL skips a transaction on restart only if its commit lies before the confirmed
// position, and confirming one transaction's end skips no later one.
//
// Three more rules keep the position both safe and moving:
//   - The watermark starts at the slot's confirmed_flush_lsn read at start-up, never at 0:
//     pglogrepl.SendStandbyStatusUpdate replaces a zero flush position with the write
//     position, which would confirm everything received.
//   - A transaction with no outbox rows (it touched other tables) is acknowledged at Commit.
//   - When the ledger holds no transaction, a keepalive's ServerWALEnd may be confirmed (Idle),
//     so that traffic on other tables does not pin WAL. The walsender sends every transaction
//     that commits before that position ahead of the keepalive, so none can be in flight.
//
// Wrong calls (an unknown id, more rows acknowledged than sent, commits out of order) return
// an error wrapping a sentinel from errors.go and change nothing. The ledger never panics and
// never lets the watermark pass a row Kafka has not acknowledged.
//
// A Ledger belongs to one replication stream. After a reconnect PostgreSQL sends again every
// transaction after the slot's confirmed position: those at or below the watermark are
// accepted, but one the ledger still holds comes back with an end LSN it has seen, and Commit
// refuses it (ErrLSNOrder). So reconnect only when Pending is zero, or restart the pipeline.
//
// A Tracker wraps a Ledger for the two goroutines that share it (capture and the Kafka sink's
// ack callback) and bounds the rows and bytes in flight (Limits), so memory stays bounded
// whatever the transaction size and however long Kafka is down.
//
// For consumers downstream of Kafka (a fan-out server's clients, any Go reader of the topic) the
// package holds the two rules they need, with no relay code: Cursors applies each channel's
// events once, in commit order of their positions (record.Position parses and orders the
// pgoutbox-position header);
// Snapshot parses pg_current_snapshot() and tells whether an event's transaction (its
// pgoutbox-xid header) was already visible to a state read in that snapshot, so that a client
// that bootstraps from the database applies exactly the events its state lacks.
//
// The package is pure logic: no I/O, the standard library and the driver-free record package
// (the record contract) only.
package checkpoint
