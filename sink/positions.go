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
	n, err := p.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool)
	for part := range n {
		if err := p.kafka.positionsSince(ctx, topic, part, since, seen); err != nil {
			return nil, err
		}
	}
	return seen, nil
}

func (c *kafkaClient) positionsSince(ctx context.Context, topic string, partition int, since time.Time, seen map[string]bool) error {
	end, err := c.listOffset(ctx, topic, partition, kafka.LastOffset)
	if err != nil {
		return err
	}
	res, err := c.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{topic: {kafka.TimeOffsetOf(partition, since)}},
	})
	if err != nil {
		return fmt.Errorf("list offsets of topic %q partition %d at %s: %w", topic, partition, since, err)
	}
	// The first offset whose timestamp is at or after since; when the broker names none (or
	// -1: no such record), read from the log start, which can only read more than needed.
	from := int64(-1)
	for _, po := range res.Topics[topic] {
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
			for _, h := range rec.Headers {
				if h.Key == record.HeaderPosition {
					seen[string(h.Value)] = true
				}
			}
			next = rec.Offset + 1
		}
		if next == from {
			break
		}
		from = next
	}
	return nil
}
