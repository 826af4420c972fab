// Package capture reads the outbox table's inserts from PostgreSQL's logical decoding stream
// (plugin pgoutput, protocol version 1) and turns each one into an [Event]; likewise each
// transactional logical decoding message with the configured prefix, which pgoutbox_send emits
// (the WAL-only outbox, see message.go and [SendFunctionsSQL]).
//
// The decoding half is pure: a [Decoder] takes the WALData of each XLogData message, in order, and
// returns a [Begin], a [Row] for every insert into the outbox table and every message with the
// prefix, and a [Commit]; everything else is ignored. It holds no transaction in memory, so a transaction of any size decodes in
// constant space. See https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
// for the message formats.
//
// Every event carries its commit position: the transaction's commit LSN and the row's index among
// the transaction's outbox rows and messages, in WAL order. That position, not the outbox id, is the order in which
// consumers must apply events (see [Event.Position] and [record.HeaderPosition]).
//
// The records it produces follow the contract of package record (headers, position, source);
// capture knows no Kafka topic: a bad row is an [Event] with DeadLetter set, which the sink
// turns into a dead-letter record.
//
// Besides the stream, capture is pgoutbox's only PostgreSQL client (STYLE.md rule 1), so it
// also holds the administrative SQL that runs on a normal connection ([Connect]): setup DDL
// (table, publication, slot, the pgoutbox_send functions), the start-up catalog and privilege
// checks, the publication state the guard reads, the recorded publication stretches, the
// retention DELETE, the slot's figures ([ReadSlot]) and the alarm decided from them
// ([Thresholds.Assess]), connection error classification and URL redaction. Splitting that
// half into a package of its own is the next step (issue 21 §2).
//
// Errors are documented in errors.go: [ErrProtocol] and [ErrUnknownRelation] mean the stream is
// out of sync, [ErrSchema] that the outbox table does not match the configured [Table], and
// [ErrBadRow] that one row cannot be published while the stream itself is fine.
package capture
