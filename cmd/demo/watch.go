package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/pgoutbox/pgoutbox/record"
)

// runWatch is `demo watch`, the terminal view: it prints every record arriving from Kafka on
// the demo's topic, with its channel, mutation id and commit-to-arrival latency, and a summary
// when interrupted. The page shows the same events; this shows the Kafka side of them.
func runWatch(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo watch", flag.ExitOnError)
	brokers := fs.String("brokers", env("PGOUTBOX_KAFKA_BROKERS", "127.0.0.1:59092"), "Kafka (PGOUTBOX_KAFKA_BROKERS)")
	topic := fs.String("topic", env("PGOUTBOX_TOPIC", "demo_outbox"), "the relay's topic (PGOUTBOX_TOPIC)")
	_ = fs.Parse(args)

	arrivals := make(chan arrival, 1024)
	readers, err := startReaders(ctx, strings.Split(*brokers, ","), *topic, arrivals)
	if err != nil {
		return err
	}
	defer readers.Wait()
	fmt.Printf("-- watching %s; edit the board in a browser (Ctrl-C to stop)\n", *topic)
	var latencies []time.Duration
	for {
		select {
		case <-ctx.Done():
			summarize(latencies)
			return ctx.Err()
		case a := <-arrivals:
			latencies = append(latencies, a.latency)
			fmt.Printf("%-20s %-18s mutation=%-36s rejected=%-5t partition=%d offset=%-6d latency=%s\n",
				a.channel, a.name, a.mutation, a.rejected, a.partition, a.offset, a.latency.Round(time.Millisecond))
		}
	}
}

type arrival struct {
	channel, name, mutation string
	rejected                bool
	partition               int
	offset                  int64
	latency                 time.Duration
}

// startReaders reads every partition of the topic from its current end.
func startReaders(ctx context.Context, brokers []string, topic string, out chan<- arrival) (*sync.WaitGroup, error) {
	conn, err := kafka.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return nil, fmt.Errorf("connect to Kafka: %w", err)
	}
	parts, err := conn.ReadPartitions(topic)
	_ = conn.Close()
	if err != nil {
		return nil, fmt.Errorf("read partitions of %s (did `pgoutbox setup --partitions N` run?): %w", topic, err)
	}
	var wg sync.WaitGroup
	for _, p := range parts {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: brokers, Topic: topic, Partition: p.ID,
			StartOffset: kafka.LastOffset, MaxWait: 50 * time.Millisecond,
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { _ = r.Close() }()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				if isControl(m.Headers) {
					continue // a barrier or re-sync record: no event, nothing arrived
				}
				a := arrival{channel: string(m.Key), partition: m.Partition, offset: m.Offset, latency: time.Since(m.Time)}
				for _, h := range m.Headers {
					switch h.Key {
					case record.HeaderName:
						a.name = string(h.Value)
					case record.HeaderMutationID:
						a.mutation = string(h.Value)
					case record.HeaderRejected:
						a.rejected = string(h.Value) == "true"
					}
				}
				select {
				case out <- a:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return &wg, nil
}

// isControl reports whether a record is a control record (record.HeaderControl).
func isControl(hs []kafka.Header) bool {
	for _, h := range hs {
		if h.Key == record.HeaderControl {
			return true
		}
	}
	return false
}

func summarize(l []time.Duration) {
	if len(l) == 0 {
		fmt.Println("-- no events arrived")
		return
	}
	slices.Sort(l)
	q := func(f float64) time.Duration { return l[int(f*float64(len(l)-1))].Round(time.Millisecond) }
	fmt.Printf("-- %d events arrived; commit-to-arrival latency p50 %s, p99 %s, max %s\n", len(l), q(0.5), q(0.99), l[len(l)-1].Round(time.Millisecond))
}
