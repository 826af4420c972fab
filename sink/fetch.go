package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/pgoutbox/pgoutbox/record"
)

// tailFetchBytes caps one fetch of a tail read. The broker still returns a whole record batch
// when the first one is larger, so a tail inside a large batch is read in one request.
const tailFetchBytes = 1 << 20

// readTail reads the log start, the high watermark and the last tailWindow records of one
// partition (fewer when the log holds fewer).
func (c *kafkaClient) readTail(ctx context.Context, topic string, partition int) (tailRead, error) {
	first, err := c.listOffset(ctx, topic, partition, kafka.FirstOffset)
	if err != nil {
		return tailRead{}, err
	}
	end, err := c.listOffset(ctx, topic, partition, kafka.LastOffset)
	if err != nil {
		return tailRead{}, err
	}
	r := tailRead{logStart: first, end: end}
	for from := max(first, end-tailWindow); from < end; {
		res, err := c.client.Fetch(ctx, &kafka.FetchRequest{
			Topic: topic, Partition: partition, Offset: from,
			MinBytes: 1, MaxBytes: tailFetchBytes, MaxWait: 100 * time.Millisecond,
		})
		if err != nil {
			return tailRead{}, fmt.Errorf("read the tail of topic %q partition %d: %w", topic, partition, err)
		}
		if res.Error != nil {
			return tailRead{}, fmt.Errorf("read the tail of topic %q partition %d: %w", topic, partition, res.Error)
		}
		next, err := readRecords(res.Records, from, end, &r.records)
		if err != nil {
			return tailRead{}, fmt.Errorf("read the tail of topic %q partition %d: %w", topic, partition, err)
		}
		if next == from {
			break // nothing readable before end (transaction markers, aborted records)
		}
		from = next
	}
	if n := len(r.records); n > tailWindow {
		r.records = r.records[n-tailWindow:]
	}
	return r, nil
}

// readRecords appends the records of rr with offsets in [from, end) to out and returns the
// offset after the last one read (from when none).
func readRecords(rr kafka.RecordReader, from, end int64, out *[]tailRecord) (int64, error) {
	next := from
	for {
		rec, err := rr.ReadRecord()
		if errors.Is(err, io.EOF) {
			return next, nil
		}
		if err != nil {
			return next, err
		}
		if rec.Key != nil {
			_ = rec.Key.Close()
		}
		if rec.Value != nil {
			_ = rec.Value.Close()
		}
		if rec.Offset < from || rec.Offset >= end {
			continue
		}
		t := tailRecord{offset: rec.Offset}
		var dl []record.Header // what tells a dead-letter copy
		for _, h := range rec.Headers {
			switch h.Key {
			case record.HeaderPosition:
				t.position = string(h.Value)
			case record.HeaderSource:
				t.source = string(h.Value)
			case record.HeaderPartitions:
				t.partitions = string(h.Value)
			case record.HeaderControl:
				t.control = true
			case record.HeaderOriginalTopic, record.HeaderDeadLetterStage:
				dl = append(dl, record.Header{Key: h.Key, Value: h.Value})
			}
		}
		t.deadLetter = record.IsOutOfOrder(dl)
		*out = append(*out, t)
		next = rec.Offset + 1
	}
}

// listOffset returns the partition's first offset (kafka.FirstOffset) or its high watermark
// (kafka.LastOffset).
func (c *kafkaClient) listOffset(ctx context.Context, topic string, partition int, which int64) (int64, error) {
	res, err := c.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{topic: {{Partition: partition, Timestamp: which}}},
	})
	if err != nil {
		return 0, fmt.Errorf("list offsets of topic %q partition %d: %w", topic, partition, err)
	}
	for _, p := range res.Topics[topic] {
		if p.Partition != partition {
			continue
		}
		if p.Error != nil {
			return 0, fmt.Errorf("list offsets of topic %q partition %d: %w", topic, partition, p.Error)
		}
		if which == kafka.FirstOffset {
			return p.FirstOffset, nil
		}
		return p.LastOffset, nil
	}
	return 0, fmt.Errorf("list offsets of topic %q partition %d: %w", topic, partition, errNoPartition)
}
