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
// Errors are documented in errors.go: [ErrProtocol] and [ErrUnknownRelation] mean the stream is
// out of sync, [ErrSchema] that the outbox table does not match the configured [Table], and
// [ErrBadRow] that one row cannot be published while the stream itself is fine.
package capture
