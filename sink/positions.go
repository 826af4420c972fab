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
