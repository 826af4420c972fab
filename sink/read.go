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

// Record is one record read back from Kafka.
type Record struct {
	Partition int
	Offset    int64
	Message   // Topic, Key, Value, Headers and Time as stored
}

// ReadTopic returns every record of topic, partition by partition, in offset order: for
// `pgoutbox dlq`, which lists and re-publishes the dead-letter topic.
func (p *Publisher) ReadTopic(ctx context.Context, topic string) ([]Record, error) {
	n, err := p.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	var out []Record
	for part := range n {
		first, err := p.kafka.listOffset(ctx, topic, part, kafka.FirstOffset)
		if err != nil {
			return nil, err
		}
		end, err := p.kafka.listOffset(ctx, topic, part, kafka.LastOffset)
		if err != nil {
			return nil, err
		}
		for from := first; from < end; {
			f, err := p.kafka.client.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: part, Offset: from,
				MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond})
			if err == nil {
				err = f.Error
			}
			if err != nil {
				return nil, fmt.Errorf("read topic %q partition %d from offset %d: %w", topic, part, from, err)
			}
			next := from
			for {
				rec, err := f.Records.ReadRecord()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return nil, fmt.Errorf("read topic %q partition %d: %w", topic, part, err)
				}
				if rec.Offset < from || rec.Offset >= end {
					continue
				}
				r := Record{Partition: part, Offset: rec.Offset, Message: Message{Topic: topic, Time: rec.Time}}
				if r.Key, err = recordBytes(rec.Key); err == nil {
					r.Value, err = recordBytes(rec.Value)
				}
				if err != nil {
					return nil, fmt.Errorf("read topic %q partition %d offset %d: %w", topic, part, rec.Offset, err)
				}
				for _, h := range rec.Headers {
					r.Headers = append(r.Headers, record.Header{Key: h.Key, Value: h.Value})
				}
				out = append(out, r)
				next = rec.Offset + 1
			}
			if next == from {
				break
			}
			from = next
		}
	}
	return out, nil
}

// recordBytes reads a record's key or value; nil (a null key or value) stays nil.
func recordBytes(b kafka.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	defer func() { _ = b.Close() }()
	return io.ReadAll(b)
}
