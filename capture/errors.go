package capture

import (
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// Sentinel errors returned (wrapped) by [Decoder.Decode]. Test for them with [errors.Is].
var (
	// ErrProtocol means the bytes do not follow pgoutput protocol version 1 as the relay requests
	// it (text format, no streaming): a truncated or unknown message, a value in binary format, an
	// Insert outside a transaction. The stream is out of sync; the caller should stop, and
	// reconnect with a new [Decoder].
	ErrProtocol = errors.New("capture: pgoutput protocol violation")

	// ErrUnknownRelation means an Insert names a relation id for which no Relation message was
	// received on this connection. The server always sends the Relation first, so the stream is
	// out of sync (or the Decoder was reused across connections).
	ErrUnknownRelation = errors.New("capture: insert into a relation not described by a Relation message")

	// ErrSchema means the outbox table lacks a configured column. The concrete error is a
	// [*SchemaError].
	ErrSchema = errors.New("capture: outbox table does not match the configuration")

	// ErrBadRow means one outbox row cannot be published (for example its channel is NULL). The
	// concrete error is a [*BadRowError]; the Decoder stays usable.
	ErrBadRow = errors.New("capture: bad outbox row")
)

// Sentinel errors of the catalog checks and of the stream. Each concrete error says what is
// wrong and how to fix it; test for the class with [errors.Is].
var (
	// ErrServer means the server cannot serve the relay at all (too old).
	ErrServer = errors.New("capture: unsupported server")
	// ErrWALLevel means wal_level is not logical.
	ErrWALLevel = errors.New("capture: wal_level is not logical")
	// ErrNotReplicationRole means the role lacks the REPLICATION attribute.
	ErrNotReplicationRole = errors.New("capture: role lacks REPLICATION")
	// ErrNoTable means the outbox table does not exist.
	ErrNoTable = errors.New("capture: outbox table missing")
	// ErrNoPublication means the publication is missing or does not cover the outbox inserts.
	ErrNoPublication = errors.New("capture: publication missing or incomplete")
	// ErrNoSlot means the replication slot does not exist.
	ErrNoSlot = errors.New("capture: replication slot missing")
	// ErrSlotPlugin means the slot exists but cannot be used (another plugin or database).
	ErrSlotPlugin = errors.New("capture: replication slot unusable")
	// ErrSlotLost means the slot was invalidated: WAL it needed is gone, events may be missing.
	ErrSlotLost = errors.New("capture: replication slot lost")
	// ErrSlotInUse means another process streams from the slot. Retrying makes this process a
	// hot standby: it takes over when the other one stops.
	ErrSlotInUse = errors.New("capture: replication slot in use")
	// ErrConnection means the replication connection failed or was closed; a reconnect may help.
	ErrConnection = errors.New("capture: PostgreSQL connection failed")
	// ErrPrivilege means the role lacks a privilege that `pgoutbox setup` needs to create an
	// object; the concrete error names the privilege and who can grant it.
	ErrPrivilege = errors.New("capture: missing privilege")
)

// SchemaError reports a configured column missing from the outbox table's Relation message. It
// matches [ErrSchema] with [errors.Is]. Several missing columns come joined with [errors.Join].
type SchemaError struct {
	Table  string // the outbox table, quoted: "public"."outbox"
	Column string // the configured column name that the table lacks
	Role   string // what the column is configured as: "id", "channel", "payload", ...
	flag   string // the command-line flag that sets it
}

// Error names the table, the column, its role, and how to fix it.
func (e *SchemaError) Error() string {
	return fmt.Sprintf("capture: outbox table %s has no column %q (configured as the %s column): add it or set %s; "+
		"rows written while it was missing cannot be decoded as configured even once it is back: run with --on-bad-row=dead-letter, "+
		"which sets each aside on the dead-letter topic as its event with that column taken as NULL and goes on; "+
		"then `pgoutbox dlq redrive` shows them and `pgoutbox dlq redrive --apply` publishes them, in commit order, each once",
		e.Table, e.Column, e.Role, e.flag)
}

// Is reports whether target is [ErrSchema].
func (e *SchemaError) Is(target error) bool { return target == ErrSchema }

// BadRowError reports an outbox row that cannot be published as an [Event]. It matches [ErrBadRow]
// with [errors.Is]. The row still consumed its Index, so positions of the later rows of its
// transaction do not depend on the policy; the caller decides whether to stop or to route the row
// to a dead-letter topic.
type BadRowError struct {
	ID        string        // the row's id column as text; "" when NULL
	CommitLSN pglogrepl.LSN // commit LSN of the row's transaction
	Index     int           // the row's index among the transaction's outbox rows
	Reason    string        // what is wrong with the row

	// MessageLSN is, when the bad row is a logical decoding message with the prefix (see
	// [Decoder.SetMessages]) rather than an outbox insert, the message's LSN; 0 otherwise.
	MessageLSN pglogrepl.LSN
	// Outside reports a non-transactional message: it belongs to no transaction, CommitLSN is
	// its LSN, Index is 0 and Event.CommitTime is zero.
	Outside bool

	// Event holds what could be read of the row, for a dead-letter record: the position fields
	// and the pgoutbox-* headers are always set; ID, Channel, Name and Topic hold their text;
	// Payload holds the column's text as received when it could not be decoded; headers that
	// could not be read are missing.
	Event Event
}

// Error names the row, its commit position, the reason and what to do.
func (e *BadRowError) Error() string {
	if e.MessageLSN != 0 {
		where := fmt.Sprintf("at commit %s index %d", e.CommitLSN, e.Index)
		if e.Outside {
			where = "outside any transaction"
		}
		return fmt.Sprintf("capture: cannot publish logical decoding message at %s %s: %s: "+
			"fix the application that emits it; to go on, route bad rows to a dead-letter topic",
			e.MessageLSN, where, e.Reason)
	}
	id := e.ID
	if id == "" {
		id = "NULL"
	}
	return fmt.Sprintf("capture: cannot publish outbox row id=%s at commit %s index %d: %s: "+
		"fix the application that writes the outbox; to go on, route bad rows to a dead-letter topic",
		id, e.CommitLSN, e.Index, e.Reason)
}

// Is reports whether target is [ErrBadRow].
func (e *BadRowError) Is(target error) bool { return target == ErrBadRow }

// protocolError wraps ErrProtocol with what was wrong.
func protocolError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}
