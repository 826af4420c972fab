// Package record is the contract of the Kafka record pgoutbox publishes: the names of its
// headers and who may rely on each, the commit position (its text, written and parsed here and
// nowhere else), the stream Source a record names, and the dead-letter record.
//
// One record is one outbox row (an insert into the outbox table, or a pgoutbox_send message):
//
//   - key: the row's channel; value: its payload (NULL gives a null value); timestamp: the
//     transaction's commit time;
//   - headers, in this order: pgoutbox-id, pgoutbox-name, pgoutbox-commit-lsn,
//     pgoutbox-commit-index, pgoutbox-position, pgoutbox-xid, pgoutbox-channel, pgoutbox-source
//     (when the stream knows it), then pgoutbox-mutation-id and pgoutbox-rejected (when
//     configured and not NULL), then the row's own headers object in sorted key order, then the
//     extra header columns; the sink appends pgoutbox-partitions last;
//   - a row that cannot be published becomes a dead-letter record (see [DeadLetter]): the same
//     record with pgoutbox-error, pgoutbox-original-topic and pgoutbox-dead-letter-stage
//     appended, on the dead-letter topic.
//
// The package capture produces records (it decodes WAL into them), sink sends them (and reads
// a partition's last records back), checkpoint and the consumers (the demo, the client SDKs)
// read them. A change to anything here is a change to the wire format: record_test.go's golden
// headers fail until it is made on purpose.
//
// The package imports nothing outside the standard library: no database or Kafka driver.
package record
