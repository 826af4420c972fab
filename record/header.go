package record

import "strconv"

// Header is one Kafka record header. A nil Value is a null header value.
type Header struct {
	Key   string
	Value []byte
}

// Lookup returns the value of the first header of hs named key, and whether there is one.
func Lookup(hs []Header, key string) (string, bool) {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// Has reports whether hs holds a header named key.
func Has(hs []Header, key string) bool {
	_, ok := Lookup(hs, key)
	return ok
}

// The header names, in the order a record carries them. Each says who writes it and who may
// rely on it. Keys starting with [HeaderPrefix] are reserved: a row whose headers object uses
// one is a bad row.
const (
	// HeaderPrefix starts every header key reserved for pgoutbox.
	HeaderPrefix = "pgoutbox-"

	// HeaderID holds the row's id column as text (a message's id: its LSN).
	// Written by capture on every record. Consumers may use it to name the row in logs and
	// errors; it is not an ordering or de-duplication key (use HeaderPosition).
	HeaderID = "pgoutbox-id"

	// HeaderName holds the row's event name ("" when NULL).
	// Written by capture on every record. Consumers may dispatch on it.
	HeaderName = "pgoutbox-name"

	// HeaderCommitLSN holds the transaction's commit LSN in PostgreSQL's form: 16/B374D848.
	// Written by capture on every record; for people and tools that compare with
	// pg_replication_slots. Programs order by HeaderPosition, which also holds it.
	HeaderCommitLSN = "pgoutbox-commit-lsn"

	// HeaderCommitIndex holds the row's 0-based index among its transaction's outbox rows, in
	// decimal. Written by capture on every record; HeaderPosition also holds it.
	HeaderCommitIndex = "pgoutbox-commit-index"

	// HeaderPosition holds the record's commit Position as text (see [Position.String]).
	// Written by capture on every record. Consumers order and de-duplicate a channel's records
	// by it (checkpoint.Cursors); the sink reads it back from a partition's tail to tell how far
	// the partition got (exactly-once). Parse it with [ParsePosition] only.
	HeaderPosition = "pgoutbox-position"

	// HeaderXID holds the transaction's full 64-bit id (xid8, the numbering of
	// pg_current_xact_id() and pg_current_snapshot()), in decimal.
	// Written by capture on every record. Consumers that bootstrap from a snapshot rely on it to
	// tell whether the state they read already holds the record (checkpoint.Snapshot).
	HeaderXID = "pgoutbox-xid"

	// HeaderChannel holds the channel, equal to the record key.
	// Written by capture on every record, for fan-out servers that read the channel from a
	// header (Centrifugo's Kafka consumer in publication data mode).
	HeaderChannel = "pgoutbox-channel"

	// HeaderSource names the replication stream the record comes from (see [Source.Header]):
	// "<system id>/<timeline>/<slot>/<routing>".
	// Written by capture on every record when the stream knows its source. The sink relies on it:
	// a later session trusts a partition's last record to say how far the partition got only
	// when it names the same system, timeline lineage, slot and routing.
	HeaderSource = "pgoutbox-source"

	// HeaderMutationID holds the row's mutation id column, when configured and not NULL: the
	// id a client gave its optimistic update.
	// Written by capture. Client SDKs rely on it to settle their optimistic updates.
	HeaderMutationID = "pgoutbox-mutation-id"

	// HeaderRejected holds the row's rejected column, when configured and not NULL: "true" when
	// the server rejected the client's optimistic update, else "false" (a boolean column; any
	// other type gives its text).
	// Written by capture. Client SDKs rely on it to roll an optimistic update back.
	HeaderRejected = "pgoutbox-rejected"

	// HeaderPartitions holds, in decimal, the topic's partition count that the record's key was
	// partitioned with.
	// Written by the sink, last, on every record it sends. The sink relies on it when it reads a
	// partition's tail: a tail written with another count says nothing about the keys that now
	// map to its partition.
	HeaderPartitions = "pgoutbox-partitions"

	// HeaderError holds, on a dead-letter record, why the row could not be published.
	// Written by [DeadLetter] only. For people: its text may change.
	HeaderError = "pgoutbox-error"

	// HeaderOriginalTopic holds, on a dead-letter record, the topic the record was meant for.
	// Written by [DeadLetter] only. Tools that re-publish dead letters rely on it.
	HeaderOriginalTopic = "pgoutbox-original-topic"

	// HeaderDeadLetterStage holds, on a dead-letter record, where the row was refused:
	// [StageDecode] or [StageKafka].
	// Written by [DeadLetter] only. The sink relies on it when it reads a partition's tail
	// (see [IsOutOfOrder]); the metric pgoutbox_dead_lettered_total counts by it.
	HeaderDeadLetterStage = "pgoutbox-dead-letter-stage"

	// HeaderControl marks a control record: no event of the stream, no position, never applied
	// as an event; every reader of the topic steps over a control record whose value it does
	// not act on. With the value [ControlResync], the channel's clients must bootstrap again
	// (the models SDK calls sync): events may have reached Kafka out of commit order.
	// Written by `pgoutbox recover`, with [HeaderChannel], after the events of a recovered
	// publication stretch, once per channel that got some, and by `pgoutbox dlq redrive` after
	// re-published records that their topic held later positions than. Clients rely on it to
	// re-sync.
	// With the value [ControlBarrier] (no other header, no key, no value), see there.
	HeaderControl = "pgoutbox-control"

	// HeaderRepublished marks a record that `pgoutbox recover` republished from the outbox table
	// after the slot was lost, with the value "table": its HeaderPosition (and HeaderCommitLSN,
	// HeaderCommitIndex) is a [RepublishedPosition], not the commit position, which the lost WAL
	// held; HeaderXID is the row's true transaction id (its xmin). Written by recover after the
	// row's other headers. Consumers need not act on it: positions keep their order.
	HeaderRepublished = "pgoutbox-republished"

	// HeaderOriginalMessage holds, on the dead-letter record of a WAL-only event (a message of
	// pgoutbox_send) that could not be published, the message's content exactly as emitted:
	// the event has no other copy, and the record's value and headers hold only what could be
	// read of it. Written by capture. Tools that re-publish dead letters rely on it.
	HeaderOriginalMessage = "pgoutbox-original-message"

	// HeaderOriginalRow holds, on the dead-letter record of an outbox row written while a
	// configured column was missing from the table (dropped, perhaps added back since), the
	// whole row as PostgreSQL sent it: a JSON object of column name to text (null for NULL).
	// The record itself is the event the row makes with the missing columns taken as NULL, so
	// that `pgoutbox dlq redrive` can publish it as it is. Written by capture. For people and
	// tools that want to see what was written.
	HeaderOriginalRow = "pgoutbox-original-row"
)

// ControlResync is the value of [HeaderControl] that asks the channel's clients to re-sync.
const ControlResync = "resync"

// ControlBarrier is the value of [HeaderControl] on the sink's barrier record: written with
// acks=all to a partition before the sink trusts the partition's tail (at a session's first use
// of the partition, and after a produce request whose outcome is unknown). Once Kafka
// acknowledges it, every record before it in the partition's log is final — committed, or
// truncated by a leader change — so the tail read after it is authoritative. It carries no
// channel header (a fan-out server skips it) and means nothing to consumers: skip it.
const ControlBarrier = "barrier"

// IsControl reports whether hs marks a control record (any [HeaderControl] value): not an
// event, never applied or counted as one.
func IsControl(hs []Header) bool { return Has(hs, HeaderControl) }

// Fields are the values of the headers every record starts with.
type Fields struct {
	ID       string   // HeaderID
	Name     string   // HeaderName
	Position Position // HeaderCommitLSN, HeaderCommitIndex and HeaderPosition
	XID      uint64   // HeaderXID: the full 64-bit transaction id
	Channel  string   // HeaderChannel
}

// StandardHeaders returns the headers every record starts with, in their order: HeaderID,
// HeaderName, HeaderCommitLSN, HeaderCommitIndex, HeaderPosition, HeaderXID, HeaderChannel, then
// HeaderSource when source is not nil (its value is shared: never modify it). The slice has
// room for extra more headers. The seven values share one allocation, formatted without fmt:
// capture calls this once per row.
func StandardHeaders(f Fields, source []byte, extra int) []Header {
	buf := make([]byte, 0, len(f.ID)+len(f.Name)+len(f.Channel)+17+20+positionLen+20)
	field := func(start int) []byte { return buf[start:len(buf):len(buf)] }
	s := len(buf)
	buf = append(buf, f.ID...)
	id := field(s)
	s = len(buf)
	buf = append(buf, f.Name...)
	name := field(s)
	s = len(buf)
	buf = f.Position.LSN.Append(buf)
	lsn := field(s)
	s = len(buf)
	buf = strconv.AppendUint(buf, uint64(f.Position.Index), 10)
	index := field(s)
	s = len(buf)
	buf = f.Position.Append(buf)
	pos := field(s)
	s = len(buf)
	buf = strconv.AppendUint(buf, f.XID, 10)
	xid := field(s)
	s = len(buf)
	buf = append(buf, f.Channel...)
	channel := field(s)
	h := make([]Header, 0, 8+extra)
	h = append(h,
		Header{HeaderID, id}, Header{HeaderName, name}, Header{HeaderCommitLSN, lsn},
		Header{HeaderCommitIndex, index}, Header{HeaderPosition, pos}, Header{HeaderXID, xid},
		Header{HeaderChannel, channel})
	if source != nil {
		h = append(h, Header{HeaderSource, source})
	}
	return h
}
