package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
	"github.com/segmentio/kafka-go"
)

// consumer reads a topic's partitions independently of the relay and notes, for each record
// committed at or after from, how long after its commit (the record timestamp) it arrived.
type consumer struct {
	mu   sync.Mutex
	from time.Time
	lat  []time.Duration // records committed at or after from
	seen int             // all records
	err  error

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (b *bench) startConsumer(ctx context.Context, topic string) *consumer {
	ctx, cancel := context.WithCancel(ctx)
	c := &consumer{cancel: cancel}
	client := b.kafkaClient()
	for p := range partitions {
		c.wg.Go(func() { c.read(ctx, client, topic, p) })
	}
	return c
}

// read fetches one partition from its start; the broker answers as soon as a byte is there.
func (c *consumer) read(ctx context.Context, client *kafka.Client, topic string, partition int) {
	var next int64
	var failingSince time.Time
	for ctx.Err() == nil {
		res, err := client.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: partition, Offset: next,
			MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 250 * time.Millisecond})
		arrived := time.Now()
		if err == nil && res.Error != nil {
			err = res.Error
		}
		switch {
		case err == nil:
			failingSince = time.Time{}
		case ctx.Err() != nil:
			return
		case failingSince.IsZero() || time.Since(failingSince) < 10*time.Second:
			// A new topic's metadata may take a moment to reach the client.
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			time.Sleep(100 * time.Millisecond)
			continue
		default:
			c.fail(fmt.Errorf("fetch %s/%d: %w", topic, partition, err))
			return
		}
		c.mu.Lock()
		for {
			r, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				c.mu.Unlock()
				c.fail(err)
				return
			}
			if r.Offset < next {
				continue // a fetch may start before the offset asked for
			}
			next = r.Offset + 1
			if harness.IsBarrier(r.Headers) {
				continue // the sink's barrier record: no event
			}
			c.seen++
			if !c.from.IsZero() && !r.Time.Before(c.from) {
				c.lat = append(c.lat, arrived.Sub(r.Time))
			}
		}
		c.mu.Unlock()
	}
}

func (c *consumer) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// measureFrom starts noting latencies of records committed at or after t.
func (c *consumer) measureFrom(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.from = t.Truncate(time.Millisecond) // record timestamps are milliseconds
	c.lat = c.lat[:0]
}

// wait waits until the consumer has seen n records in all, or n measured ones.
func (c *consumer) wait(ctx context.Context, n int, measured bool, timeout time.Duration) error {
	return harness.Eventually(ctx, timeout, 20*time.Millisecond, func(context.Context) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		got := c.seen
		if measured {
			got = len(c.lat)
		}
		switch {
		case c.err != nil:
			return harness.Stop(c.err)
		case got < n:
			return fmt.Errorf("the consumer saw %d of %d records", got, n)
		}
		return nil
	})
}

func (c *consumer) latencies() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.lat...)
}

func (c *consumer) stop() {
	c.cancel()
	c.wg.Wait()
}

// kafkaClient returns a client of its own (harness.KafkaClient): a topic created moments ago
// is not "not found" in a shared client's cached metadata.
func (b *bench) kafkaClient() *kafka.Client { return harness.KafkaClient(b.brokers()) }

// sampleRecordBytes is the mean size of the first n events of partition 0 of topic: key,
// value, header keys and values — what a record carries, without the batch framing.
func (b *bench) sampleRecordBytes(ctx context.Context, topic string, n int) (float64, error) {
	res, err := b.kafkaClient().Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: 0, Offset: 0, MinBytes: 1, MaxBytes: 4 << 20, MaxWait: time.Second})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		return 0, fmt.Errorf("sample %s: %w", topic, err)
	}
	total, count := 0, 0
	for count < n {
		r, err := res.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		if harness.IsBarrier(r.Headers) {
			continue // the relay's barrier record, first in the partition: no event
		}
		for _, part := range []kafka.Bytes{r.Key, r.Value} {
			if part != nil {
				data, err := io.ReadAll(part)
				if err != nil {
					return 0, err
				}
				total += len(data)
			}
		}
		for _, h := range r.Headers {
			total += len(h.Key) + len(h.Value)
		}
		count++
	}
	if count == 0 {
		return 0, fmt.Errorf("sample %s: no records in partition 0", topic)
	}
	return float64(total) / float64(count), nil
}
