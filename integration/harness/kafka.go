package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/pgoutbox/pgoutbox/record"
)

// KafkaClient returns a client with a Transport of its own: kafka-go's default Transport is
// shared and caches metadata, in which a topic created moments ago is "not found".
func KafkaClient(brokers []string) *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second,
		Transport: &kafka.Transport{MetadataTTL: time.Second}}
}

// NewTopic creates a topic of the given partitions (replication factor 1).
func NewTopic(ctx context.Context, client *kafka.Client, topic string, partitions int) error {
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1,
	}}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

// CreateTopic creates a topic deleted at the end of the test.
func CreateTopic(t testing.TB, brokers []string, topic string, partitions int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := NewTopic(ctx, &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}, topic, partitions); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { DeleteTopicQuietly(brokers, topic) })
}

// DeleteTopic deletes a topic; one that does not exist is fine.
func DeleteTopic(ctx context.Context, brokers []string, topic string) error {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}
	res, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err == nil && !errors.Is(res.Errors[topic], kafka.UnknownTopicOrPartition) {
		err = res.Errors[topic]
	}
	if err != nil {
		return fmt.Errorf("delete topic %s: %w", topic, err)
	}
	return nil
}

// Record is a consumed Kafka record with its headers by key.
type Record struct {
	Partition int
	Offset    int64
	Key       string
	Value     []byte
	Headers   map[string]string
	Time      time.Time
}

// ReadTopic reads every record currently in the topic, partition by partition, in offset order.
func ReadTopic(ctx context.Context, brokers []string, topic string) ([]Record, error) {
	var out []Record
	err := ScanTopic(ctx, brokers, topic, func(r Record) { out = append(out, r) })
	return out, err
}

// WaitRecords polls the topic until it holds at least n records.
func WaitRecords(t *testing.T, brokers []string, topic string, n int, timeout time.Duration) []Record {
	t.Helper()
	var recs []Record
	err := Eventually(context.Background(), timeout, 500*time.Millisecond, func(ctx context.Context) error {
		var err error
		if recs, err = ReadTopic(ctx, brokers, topic); err != nil {
			return err
		}
		if len(recs) < n {
			return fmt.Errorf("topic %s holds %d records, want %d", topic, len(recs), n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// readBytes reads a record's key or value; nil stays empty.
func readBytes(b kafka.Bytes) (string, error) {
	if b == nil {
		return "", nil
	}
	data, err := io.ReadAll(b)
	return string(data), err
}

// EndOffsets returns the end offset of each of the outbox topic's partitions.
func EndOffsets(t *testing.T, e Outbox, partitions int) map[int]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := PartitionEnds(ctx, &kafka.Client{Addr: kafka.TCP(e.Brokers...)}, e.Name, partitions)
	if err != nil {
		t.Fatal(err)
	}
	return ends
}

// PartitionEnds returns the end offset (the next offset to be written) of partitions 0 to
// partitions-1 of the topic, in one request.
func PartitionEnds(ctx context.Context, client *kafka.Client, topic string, partitions int) (map[int]int64, error) {
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {}}}
	for p := range partitions {
		req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p))
	}
	res, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, err
	}
	ends := make(map[int]int64, partitions)
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, po.Error
		}
		ends[po.Partition] = po.LastOffset
	}
	if len(ends) != partitions {
		return nil, fmt.Errorf("offsets of %d of the %d partitions of %s", len(ends), partitions, topic)
	}
	return ends, nil
}

// CountRecords is the number of records in the topic: the sum of its partitions' end offsets.
// It counts the sink's barrier records too (see IsBarrier).
func CountRecords(ctx context.Context, client *kafka.Client, topic string, partitions int) (int64, error) {
	ends, err := PartitionEnds(ctx, client, topic, partitions)
	var n int64
	for _, end := range ends {
		n += end
	}
	return n, err
}

// LastOffset returns the next offset to be written to a partition.
func LastOffset(ctx context.Context, brokers []string, topic string, partition int) (int64, error) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		topic: {kafka.LastOffsetOf(partition)},
	}})
	if err != nil {
		return 0, err
	}
	for _, po := range res.Topics[topic] {
		if po.Partition == partition {
			if po.Error != nil {
				return 0, po.Error
			}
			return po.LastOffset, nil
		}
	}
	return 0, fmt.Errorf("no offsets for %s/%d", topic, partition)
}

// IsBarrier reports whether a record with headers hs is the sink's barrier record
// (record.ControlBarrier): no event; every reader of the topic skips it.
func IsBarrier(hs []kafka.Header) bool {
	for _, h := range hs {
		if h.Key == record.HeaderControl {
			return string(h.Value) == record.ControlBarrier
		}
	}
	return false
}

// ScanTopic reads every record of the topic, partition by partition, in offset order, handing
// each to fn without keeping them. It skips the sink's barrier records (record.ControlBarrier):
// they are no events. End offsets (EndOffsets, TopicEnd, CountRecords) do count them: one per
// partition per relay start and per produce request whose outcome was unknown. Its client has a
// Transport of its own (KafkaClient): the shared one's cached metadata may not know a topic
// created moments ago.
func ScanTopic(ctx context.Context, brokers []string, topic string, fn func(Record)) error {
	client := KafkaClient(brokers)
	defer client.Transport.(*kafka.Transport).CloseIdleConnections()
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return err
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		return fmt.Errorf("metadata of %s: %+v", topic, meta.Topics)
	}
	ends, err := PartitionEnds(ctx, client, topic, len(meta.Topics[0].Partitions))
	if err != nil {
		return err
	}
	for _, p := range meta.Topics[0].Partitions {
		end := ends[p.ID]
		for off := int64(0); off < end; {
			res, err := client.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: p.ID, Offset: off, MaxBytes: 16 << 20})
			if err != nil {
				return err
			}
			if res.Error != nil {
				return res.Error
			}
			for {
				r, err := res.Records.ReadRecord()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return err
				}
				if r.Offset < off {
					continue
				}
				rec := Record{Partition: p.ID, Offset: r.Offset, Time: r.Time, Headers: make(map[string]string, len(r.Headers))}
				if rec.Key, err = readBytes(r.Key); err != nil {
					return err
				}
				v, err := readBytes(r.Value)
				if err != nil {
					return err
				}
				rec.Value = []byte(v)
				for _, h := range r.Headers {
					rec.Headers[h.Key] = string(h.Value)
				}
				off = r.Offset + 1
				if IsBarrier(r.Headers) {
					continue // the sink's barrier: no event (record.ControlBarrier)
				}
				fn(rec)
			}
		}
	}
	return nil
}

// TopicEnd is the number of records in the topic (the sum of its partitions' end offsets).
func TopicEnd(t *testing.T, e Outbox, partitions int) int64 {
	t.Helper()
	var n int64
	for _, end := range EndOffsets(t, e, partitions) {
		n += end
	}
	return n
}

// WaitTopicEnd waits until the topic holds at least n records.
func WaitTopicEnd(t *testing.T, e Outbox, partitions int, n int64, timeout time.Duration) {
	t.Helper()
	err := Eventually(context.Background(), timeout, 200*time.Millisecond, func(context.Context) error {
		if got := TopicEnd(t, e, partitions); got < n {
			return fmt.Errorf("topic %s holds %d records, want %d", e.Name, got, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
