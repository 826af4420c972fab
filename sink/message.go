package sink

import (
	"time"

	"github.com/pgoutbox/pgoutbox/record"
)

// Message is one record to publish. The sink hands it back, unchanged, to the acked callback
// once Kafka has acknowledged it.
type Message struct {
	// Topic is the destination topic; "" means Config.Topic.
	Topic string
	// Key is the record key (the outbox channel). It chooses the partition (murmur2); nil is
	// a null key, partitioned like an empty one.
	Key []byte
	// Value is the record value (the payload).
	Value []byte
	// Headers are the record headers, in order.
	Headers []record.Header
	// Time is the record timestamp (the transaction's commit time); zero means "now".
	Time time.Time
	// ID names the message in logs and errors only (the outbox row id).
	ID string
	// Token is opaque to the sink and handed back in acked (the caller's transaction id).
	Token uint64
	// Size is the caller's accounting size, handed back unchanged; the sink does not use it.
	Size int
	// DeadLetter, when not "", says why the message cannot be published (a bad row that capture
	// found): the sink sends its dead-letter record (record.DeadLetter, stage
	// record.StageDecode, original topic = Topic or Config.Topic) to Config.DeadLetterTopic, in
	// order with the other messages routed there. Run stops if there is no dead-letter topic.
	DeadLetter string

	routed int // the partition count the sink partitioned Key with; sent as HeaderPartitions
}

// Upper bounds of the record-batch encoding (Kafka message format v2), used to keep each
// partition's batch under Config.MaxRequestBytes before sending it.
const (
	batchOverhead  = 61 // record batch header
	recordOverhead = 5 + 1 + 10 + 5 + 5 + 5 + 5
	headerOverhead = 5 + 5
)

// recordSize is an upper bound of the message's encoded size inside a record batch
// (uncompressed): length, attributes, timestamp and offset deltas, key, value and headers.
func recordSize(m *Message) int {
	n := recordOverhead + len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += headerOverhead + len(h.Key) + len(h.Value)
	}
	return n
}
