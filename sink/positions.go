package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pgoutbox/pgoutbox/record"
	"github.com/segmentio/kafka-go"
)

// PositionsSince returns the pgoutbox-position of every record of topic written with a
// timestamp at or after since (a record's timestamp is its transaction's commit time), in every
// partition. `pgoutbox recover` publishes only the events whose positions are not there: an
// exact test, unlike the tail's "up to", which would skip events of a stretch that Kafka holds
// later events than.
func (p *Publisher) PositionsSince(ctx context.Context, topic string, since time.Time) (map[string]bool, error) {
	seen := make(map[string]bool)
	err := p.HeadersSince(ctx, topic, since, func(hs []record.Header) {
		if v, ok := record.Lookup(hs, record.HeaderPosition); ok {
			seen[v] = true
		}
	})
	if err != nil {
		return nil, err
	}
	return seen, nil
}

// HeadersSince calls fn with the headers of every record of topic written with a timestamp at
// or after since, in every partition (a zero since reads from each partition's log start). After a
// lost slot, `pgoutbox recover` looks there for the outbox rows Kafka already holds (by id and
// source) and for the channels the stream wrote to.
func (p *Publisher) HeadersSince(ctx context.Context, topic string, since time.Time, fn func([]record.Header)) error {
	n, err := p.Partitions(ctx, topic)
	if err != nil {
		return err
	}
	for part := range n {
		if err := p.kafka.headersSince(ctx, topic, part, since, fn); err != nil {
			return err
		}
	}
	return nil
}

func (c *kafkaClient) headersSince(ctx context.Context, topic string, partition int, since time.Time, fn func([]record.Header)) error {
	end, err := c.listOffset(ctx, topic, partition, kafka.LastOffset)
	if err != nil {
		return err
	}
	// The first offset whose timestamp is at or after since; when the broker names none (or
	// -1: no such record), read from the log start, which can only read more than needed.
	from := int64(-1)
	var res *kafka.ListOffsetsResponse
	if !since.IsZero() {
		if res, err = c.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{
			Topics: map[string][]kafka.OffsetRequest{topic: {kafka.TimeOffsetOf(partition, since)}},
		}); err != nil {
			return fmt.Errorf("list offsets of topic %q partition %d at %s: %w", topic, partition, since, err)
		}
	}
	for _, po := range topicOffsets(res, topic) {
		if po.Partition == partition && po.Error == nil {
			for off := range po.Offsets {
				if off >= 0 && (from < 0 || off < from) {
					from = off
				}
			}
		}
	}
	if from < 0 {
		if from, err = c.listOffset(ctx, topic, partition, kafka.FirstOffset); err != nil {
			return err
		}
	}
	for from < end {
		f, err := c.client.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: partition, Offset: from,
			MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond})
		if err == nil {
			err = f.Error
		}
		if err != nil {
			return fmt.Errorf("read topic %q partition %d from offset %d: %w", topic, partition, from, err)
		}
		next := from
		for {
			rec, err := f.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("read topic %q partition %d: %w", topic, partition, err)
			}
			if rec.Offset < from {
				continue
			}
			hs := make([]record.Header, len(rec.Headers))
			for i, h := range rec.Headers {
				hs[i] = record.Header{Key: h.Key, Value: h.Value}
			}
			fn(hs)
			next = rec.Offset + 1
		}
		if next == from {
			break
		}
		from = next
	}
	return nil
}

// topicOffsets returns the partition offsets of topic in res (none when res is nil).
func topicOffsets(res *kafka.ListOffsetsResponse, topic string) []kafka.PartitionOffsets {
	if res == nil {
		return nil
	}
	return res.Topics[topic]
}

// LastOfStream returns the highest position among the records at the end of topic's partitions
// (the last records of each, as many as a tail read steps back over) that the slot named slot of
// the cluster systemID wrote, on any timeline and under any routing; found is false when there
// is none, and when the topic does not exist. Control and dead-letter records do not count.
// `pgoutbox setup` asks before it creates a slot: a record of a slot of that name means that a
// relay streamed from it before, so the slot was lost since, and what was committed in between
// never reached Kafka.
func (p *Publisher) LastOfStream(ctx context.Context, topic, systemID, slot string) (last record.Position, found bool, err error) {
	n, err := p.Partitions(ctx, topic)
	if errors.Is(err, ErrTopicNotFound) {
		return record.Position{}, false, nil
	}
	if err != nil {
		return record.Position{}, false, err
	}
	for part := range n {
		r, err := p.kafka.readTail(ctx, topic, part)
		if err != nil {
			return record.Position{}, false, err
		}
		for _, rec := range r.records {
			if rec.control || rec.deadLetter || rec.position == "" {
				continue
			}
			src, ok := record.ParseSource(rec.source)
			if !ok || src.SystemID != systemID || src.Slot != slot {
				continue
			}
			pos, err := record.ParsePosition(rec.position)
			if err != nil {
				continue // another producer's header: says nothing of this stream
			}
			if !found || pos.Compare(last) > 0 {
				last, found = pos, true
			}
		}
	}
	return last, found, nil
}
