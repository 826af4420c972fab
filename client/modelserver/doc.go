// Package modelserver is the server half of live models (`@pgoutbox/models` is the browser
// half): what an application's HTTP handlers call so that a page can turn an outbox channel into
// a live model.
//
//   - [ReadState] builds a bootstrap: the channel's Centrifugo stream position first, then one
//     REPEATABLE READ, read-only transaction whose first statement is pg_current_snapshot(), then
//     the application's own read function. The page subscribes from that position and drops every
//     event whose transaction the snapshot already shows.
//   - [Mutations.Apply] runs one mutation in the application's transaction, writes its outbox
//     event with the mutation id (and the rejected flag when the application refuses it), and
//     answers the transaction's xid. It is idempotent: the mutation id and its outcome are
//     recorded in the same transaction, and a replayed request gets the first outcome back
//     without writing anything.
//   - [Tokens] signs Centrifugo connection and subscription tokens (HS256 or RS256), which the
//     handlers issue only after the application's own checks ([UserFunc], [AuthorizeFunc]).
//   - [Centrifugo] is a small client of Centrifugo's server API (stream position, publish).
//   - [Handlers] wires these into four HTTP endpoints with JSON the SDK reads; every error is an
//     HTTP status with a short reason, never a raw database error.
//
// The package never assumes a schema of the application's: the application passes its read and
// write functions, which run in the transaction this package opens. The only table it owns is the
// mutation ledger, created by [Mutations.Setup] or by the application's own migration
// ([Mutations.SetupSQL]).
//
// docs/models.md describes the whole chain; docs/build-a-live-model.md builds a live list.
package modelserver
