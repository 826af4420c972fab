// Command demo shows the pipeline at work, for `make demo`: it writes outbox events across a
// few channels (each in a transaction, as an application would) and prints them as they arrive
// from Kafka, with the commit-to-arrival latency. It runs until interrupted.
//
// It reads the same PGOUTBOX_DATABASE_URL, PGOUTBOX_KAFKA_BROKERS, PGOUTBOX_TOPIC and
// PGOUTBOX_TABLE variables as pgoutbox.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
)

func main() {
	events := flag.Int("events", 300, "events to write")
	channels := flag.Int("channels", 8, "channels to spread them over")
	rate := flag.Int("rate", 100, "events per second")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *events, *channels, *rate); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, events, channels, rate int) error {
	dbURL := env("PGOUTBOX_DATABASE_URL", "postgres://pgoutbox:pgoutbox@127.0.0.1:55432/pgoutbox")
	brokers := strings.Split(env("PGOUTBOX_KAFKA_BROKERS", "127.0.0.1:59092"), ",")
	topic := env("PGOUTBOX_TOPIC", "outbox")
	table := env("PGOUTBOX_TABLE", "public.outbox")

	arrivals := make(chan arrival, 1024)
	readers, err := startReaders(ctx, brokers, topic, arrivals)
	if err != nil {
		return err
	}
	defer readers.Wait()

	go func() {
		if err := write(ctx, dbURL, table, events, channels, rate); err != nil && ctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "demo: writer:", err)
		} else if err == nil {
			fmt.Printf("-- wrote %d events over %d channels; waiting for arrivals (Ctrl-C to stop)\n", events, channels)
		}
	}()

	var latencies []time.Duration
	for {
		select {
		case <-ctx.Done():
			summarize(latencies)
			return ctx.Err()
		case a := <-arrivals:
			latencies = append(latencies, a.latency)
			fmt.Printf("%-8s id=%-8s partition=%d offset=%-6d latency=%s\n", a.channel, a.id, a.partition, a.offset, a.latency.Round(time.Millisecond))
		}
	}
}

// write commits one outbox row per transaction, in the same transaction as a business row would be.
func write(ctx context.Context, dbURL, table string, events, channels, rate int) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	schema, name, _ := strings.Cut(table, ".")
	if name == "" {
		schema, name = "public", schema
	}
	insert := fmt.Sprintf(`INSERT INTO %s (channel, name, data) VALUES ($1, 'demo.event', $2)`, pgx.Identifier{schema, name}.Sanitize())
	tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
	defer tick.Stop()
	for i := range events {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		data, _ := json.Marshal(map[string]any{"n": i, "text": "hello from the outbox"})
		if _, err := conn.Exec(ctx, insert, fmt.Sprintf("user-%d", i%channels), data); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
	}
	return nil
}

type arrival struct {
	channel, id string
	partition   int
	offset      int64
	latency     time.Duration
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
				a := arrival{channel: string(m.Key), partition: m.Partition, offset: m.Offset, latency: time.Since(m.Time)}
				for _, h := range m.Headers {
					if h.Key == "pgoutbox-id" {
						a.id = string(h.Value)
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

func summarize(l []time.Duration) {
	if len(l) == 0 {
		fmt.Println("-- no events arrived")
		return
	}
	slices.Sort(l)
	q := func(f float64) time.Duration { return l[int(f*float64(len(l)-1))].Round(time.Millisecond) }
	fmt.Printf("-- %d events arrived; commit-to-arrival latency p50 %s, p99 %s, max %s\n", len(l), q(0.5), q(0.99), l[len(l)-1].Round(time.Millisecond))
}
