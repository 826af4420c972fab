//go:build integration

package sink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/pgoutbox/pgoutbox/record"
)

// testPublisher returns a Publisher on the integration tests' broker. When none answers, it
// fails the test under CI=true (a missing service must never pass as a skip), and skips it
// otherwise.
func testPublisher(t *testing.T) *Publisher {
	t.Helper()
	addr := os.Getenv("PGOUTBOX_TEST_KAFKA_BROKERS")
	if addr == "" {
		addr = "127.0.0.1:59092"
	}
	p, err := New(Config{Brokers: []string{addr}, Topic: "unused", BackoffMin: 20 * time.Millisecond, BackoffMax: 500 * time.Millisecond},
		zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.Partitions(ctx, "pgoutbox-probe"); errors.Is(err, ErrUnreachable) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kafka at %s (PGOUTBOX_TEST_KAFKA_BROKERS): %v", addr, err)
		}
		t.Skipf("no kafka at %s (set PGOUTBOX_TEST_KAFKA_BROKERS, or run deploy/local/kafka.sh start): %v", addr, err)
	}
	return p
}

var illegalTopicChars = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// testTopic creates a topic of its own for the test, deleted at the end.
func testTopic(t *testing.T, p *Publisher, partitions int) string {
	t.Helper()
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	topic := "it-" + illegalTopicChars.ReplaceAllString(t.Name(), "-") + "-" + hex.EncodeToString(suffix[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	created, err := p.CreateTopic(ctx, topic, partitions, 1)
	if err != nil || !created {
		t.Fatalf("CreateTopic(%s) = %v, %v", topic, created, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := p.kafka.client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
		if err == nil {
			err = res.Errors[topic]
		}
		if err != nil {
			t.Errorf("delete test topic %s: %v", topic, err)
		}
	})
	return topic
}

// isBarrierRecord reports whether a record is the sink's barrier (record.ControlBarrier).
func isBarrierRecord(hs []kafka.Header) bool {
	for _, h := range hs {
		if h.Key == record.HeaderControl {
			return string(h.Value) == record.ControlBarrier
		}
	}
	return false
}

// readAll reads a partition from offset 0 to its high watermark, skipping the sink's barriers.
func readAll(t *testing.T, p *Publisher, topic string, partition int) []kafka.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []kafka.Record
	for offset := int64(0); ; {
		res, err := p.kafka.client.Fetch(ctx, &kafka.FetchRequest{
			Topic: topic, Partition: partition, Offset: offset, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 100 * time.Millisecond,
		})
		if err != nil {
			t.Fatalf("fetch %s/%d at %d: %v", topic, partition, offset, err)
		}
		if res.Error != nil {
			t.Fatalf("fetch %s/%d at %d: %v", topic, partition, offset, res.Error)
		}
		for {
			r, err := res.Records.ReadRecord()
			if err != nil {
				break // io.EOF at the end of the response
			}
			if r.Offset < offset {
				continue // a batch may start before the offset asked for
			}
			offset = r.Offset + 1
			if isBarrierRecord(r.Headers) {
				continue // the sink's barrier (barrier.go): no event
			}
			key, _ := kafka.ReadAll(r.Key)
			value, _ := kafka.ReadAll(r.Value)
			out = append(out, kafka.Record{Offset: r.Offset, Time: r.Time, Key: kafka.NewBytes(key), Value: kafka.NewBytes(value), Headers: r.Headers})
		}
		if offset >= res.HighWatermark {
			return out
		}
	}
}

func TestPublisher_integration(t *testing.T) {
	p := testPublisher(t)
	const partitions, keys, total = 3, 50, 5000
	topic := testTopic(t, p, partitions)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("CreateTopic is idempotent", func(t *testing.T) {
		if created, err := p.CreateTopic(ctx, topic, partitions, 1); created || err != nil {
			t.Errorf("CreateTopic again = %v, %v; want false, nil", created, err)
		}
		_, err := p.CreateTopic(ctx, topic, partitions+1, 1)
		if !errors.Is(err, ErrPartitionMismatch) || !regexp.MustCompile(`has 3 partitions, not 4`).MatchString(err.Error()) {
			t.Errorf("CreateTopic with another count = %v", err)
		}
		if n, err := p.Partitions(ctx, topic); n != partitions || err != nil {
			t.Errorf("Partitions = %d, %v", n, err)
		}
	})

	t.Run("Partitions of a missing topic", func(t *testing.T) {
		// Not the configured topic (one a row's topic column names): setup cannot create it,
		// so the fix is to create it in Kafka.
		_, err := p.Partitions(ctx, topic+"-missing")
		if !errors.Is(err, ErrTopicNotFound) || !regexp.MustCompile("create it in Kafka with the partition count").MatchString(err.Error()) {
			t.Errorf("Partitions = %v, want ErrTopicNotFound naming the fix", err)
		}
	})

	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	msgs := make([]Message, total)
	for i := range msgs {
		msgs[i] = Message{
			Topic:   topic,
			Key:     []byte(fmt.Sprintf("channel-%d", i%keys)),
			Value:   []byte(fmt.Sprintf(`{"n":%d}`, i)),
			Headers: []record.Header{{Key: "id", Value: []byte(strconv.Itoa(i))}, {Key: "name", Value: []byte("e")}},
			Time:    base.Add(time.Duration(i) * time.Millisecond),
			ID:      strconv.Itoa(i),
			Token:   uint64(i / 10),
		}
	}
	in := make(chan Message, 512)
	go func() {
		for _, m := range msgs {
			in <- m
		}
		close(in)
	}()
	acked := make(map[string]int)
	if err := p.Run(ctx, in, func(ms []Message) {
		for _, m := range ms {
			acked[m.ID]++
		}
	}); err != nil {
		t.Fatalf("Run = %v", err)
	}
	for _, m := range msgs {
		if acked[m.ID] != 1 {
			t.Fatalf("message %s acked %d times", m.ID, acked[m.ID])
		}
	}

	var h murmur2
	seen := make(map[int]bool)
	lastOfKey := make(map[string]int)
	for part := range partitions {
		for _, r := range readAll(t, p, topic, part) {
			key, _ := kafka.ReadAll(r.Key)
			value, _ := kafka.ReadAll(r.Value)
			// The message's headers, in order, then the partition count the sink routed with.
			if len(r.Headers) != 3 || r.Headers[0].Key != "id" || r.Headers[1].Key != "name" || string(r.Headers[1].Value) != "e" ||
				r.Headers[2].Key != record.HeaderPartitions || string(r.Headers[2].Value) != strconv.Itoa(partitions) {
				t.Fatalf("record %d of partition %d: headers %v", r.Offset, part, r.Headers)
			}
			i, err := strconv.Atoi(string(r.Headers[0].Value))
			if err != nil || i < 0 || i >= total {
				t.Fatalf("record %d of partition %d: id header %q", r.Offset, part, r.Headers[0].Value)
			}
			m := msgs[i]
			if seen[i] {
				t.Fatalf("message %d is in the topic twice", i)
			}
			seen[i] = true
			if string(key) != string(m.Key) || string(value) != string(m.Value) {
				t.Fatalf("message %d: key %q value %q", i, key, value)
			}
			if !r.Time.Equal(m.Time) {
				t.Fatalf("message %d: time %s, want %s", i, r.Time, m.Time)
			}
			if want := h.partition(key, partitions); want != part {
				t.Fatalf("key %q is in partition %d, murmur2 says %d", key, part, want)
			}
			if last, ok := lastOfKey[string(key)]; ok && last > i {
				t.Fatalf("key %q: message %d after %d", key, i, last)
			}
			lastOfKey[string(key)] = i
		}
	}
	if len(seen) != total {
		t.Fatalf("the topic holds %d of %d messages", len(seen), total)
	}
	if len(lastOfKey) != keys {
		t.Errorf("%d keys in the topic, want %d", len(lastOfKey), keys)
	}
	if byPart := slices.Collect(func(yield func(int) bool) {
		for k := range lastOfKey {
			if !yield(h.partition([]byte(k), partitions)) {
				return
			}
		}
	}); !slices.Contains(byPart, 0) || !slices.Contains(byPart, 1) || !slices.Contains(byPart, 2) {
		t.Errorf("keys do not spread over the 3 partitions")
	}
}

func TestPublisher_integration_rejectsTooLarge(t *testing.T) {
	p := testPublisher(t)
	topic := testTopic(t, p, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// One message above max.message.bytes (1 MiB by default) is rejected, naming it; the one
	// before it is acknowledged, the one after it is never sent.
	msgs := []Message{
		{Topic: topic, Key: []byte("k"), Value: []byte("before"), ID: "1"},
		{Topic: topic, Key: []byte("k"), Value: make([]byte, 2<<20), ID: "2", Token: 9},
		{Topic: topic, Key: []byte("k"), Value: []byte("after"), ID: "3"},
	}
	in := feed(msgs, true)
	var acked []string
	err := p.Run(ctx, in, func(ms []Message) { acked = append(acked, ids(ms)...) })
	var rerr *RejectedError
	if !errors.As(err, &rerr) || !errors.Is(err, kafka.MessageSizeTooLarge) {
		t.Fatalf("Run = %v, want a RejectedError for a too large message", err)
	}
	if rerr.ID != "2" || rerr.Token != 9 || rerr.Topic != topic || rerr.Partition != 0 {
		t.Errorf("RejectedError = %+v", rerr)
	}
	if !slices.Equal(acked, []string{"1"}) {
		t.Errorf("acked %v, want [1]", acked)
	}
	recs := readAll(t, p, topic, 0)
	if len(recs) != 1 {
		t.Errorf("the topic holds %d records, want only the one before the rejected message", len(recs))
	}
}

// TestPublisher_integration_outage takes the broker away while Run publishes: Run keeps
// retrying, acknowledges nothing that was not written, and goes on when the broker is back.
func TestPublisher_integration_outage(t *testing.T) {
	admin := testPublisher(t)
	topic := testTopic(t, admin, 2)
	proxy := newBrokerProxy(t, admin.cfg.Brokers[0])

	var logs strings.Builder
	var logMu sync.Mutex
	logw := zerolog.SyncWriter(writerFunc(func(b []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(b)
	}))
	p, err := New(Config{Brokers: admin.cfg.Brokers, Topic: topic, BackoffMin: 20 * time.Millisecond,
		BackoffMax: 200 * time.Millisecond, RequestTimeout: 3 * time.Second},
		zerolog.New(zerolog.MultiLevelWriter(logw, zerolog.NewTestWriter(t))))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	// Every connection, to the bootstrap address and to the advertised broker, goes through
	// the proxy (a single-node cluster).
	p.kafka.transport.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, proxy.ln.Addr().String())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	in := make(chan Message, 1000) // sending never blocks, also while Run waits for Kafka
	var mu sync.Mutex
	acked := make(map[string]int)
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	done := make(chan error, 1)
	go func() {
		done <- p.Run(ctx, in, func(ms []Message) {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range ms {
				acked[m.ID]++
			}
		})
	}()
	var msgs []Message
	send := func(n int) {
		for range n {
			i := len(msgs)
			m := Message{Key: []byte(fmt.Sprintf("ch-%d", i%10)), Value: []byte(strconv.Itoa(i)), ID: strconv.Itoa(i)}
			msgs = append(msgs, m)
			in <- m
		}
	}
	waitAcked := func(n int, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for ackedCount() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d messages acknowledged after %s", ackedCount(), n, within)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	send(100)
	waitAcked(100, 30*time.Second)

	proxy.setDown(true)
	send(100) // Run takes them, and cannot write them
	time.Sleep(3 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("Run returned during the outage: %v", err)
	default:
	}
	if n := ackedCount(); n != 100 {
		t.Fatalf("%d messages acknowledged while the broker was away, want 100", n)
	}

	proxy.setDown(false)
	waitAcked(200, 60*time.Second)
	close(in)
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	for _, m := range msgs {
		if acked[m.ID] != 1 {
			t.Errorf("message %s acknowledged %d times", m.ID, acked[m.ID])
		}
	}

	// Everything is in Kafka, in order per key once repeats are dropped (a request cut off
	// mid-way may have been written before it was re-sent).
	seen := make(map[string]bool)
	for part := range 2 {
		last := make(map[string]int)
		for _, r := range readAll(t, admin, topic, part) {
			key, _ := kafka.ReadAll(r.Key)
			value, _ := kafka.ReadAll(r.Value)
			if seen[string(value)] {
				continue
			}
			seen[string(value)] = true
			i, _ := strconv.Atoi(string(value))
			if l, ok := last[string(key)]; ok && l > i {
				t.Fatalf("key %s: message %d after %d", key, i, l)
			}
			last[string(key)] = i
		}
	}
	if len(seen) != len(msgs) {
		t.Errorf("the topic holds %d of %d messages", len(seen), len(msgs))
	}

	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), "succeeded again") {
		t.Errorf("the outage and the recovery were not logged:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
