//go:build integration

package sink

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pgoutbox/pgoutbox/record"
)

// itSource is the stream identity of the sink's exactly-once integration tests.
var itSource = record.Source{SystemID: "7401286427335794708", Timeline: 1, Slot: "it_slot", Routing: "5f3a09c2", WALEnd: 1 << 40}

// itMessage is message i of stream source, at commit LSN 0x1000*(i+1), keyed over 10 channels.
func itMessage(i int, source string) Message {
	return Message{
		ID: fmt.Sprint(i), Key: []byte(fmt.Sprintf("ch-%d", i%10)), Value: []byte(fmt.Sprint(i)),
		Headers: []record.Header{
			{Key: record.HeaderPosition, Value: []byte(pos(uint64(0x1000*(i+1)), 0))},
			{Key: record.HeaderSource, Value: []byte(source)},
		},
	}
}

func itMessages(from, to int, source string) []Message {
	var out []Message
	for i := from; i < to; i++ {
		out = append(out, itMessage(i, source))
	}
	return out
}

// session publishes msgs in one session of src on p and waits until all are acknowledged.
func session(t *testing.T, p *Publisher, src record.Source, msgs []Message) {
	t.Helper()
	p.BeginSession(src)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	acked := 0
	if err := p.Run(ctx, feed(msgs, true), func(ms []Message) { acked += len(ms) }); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if acked != len(msgs) {
		t.Fatalf("%d of %d messages acknowledged", acked, len(msgs))
	}
}

// counts returns how many times each id is in the topic's partitions.
func counts(t *testing.T, p *Publisher, topic string, partitions int) map[string]int {
	t.Helper()
	out := make(map[string]int)
	for part := range partitions {
		for _, r := range readAll(t, p, topic, part) {
			v, _ := io.ReadAll(r.Value)
			out[string(v)]++
		}
	}
	return out
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func itPublisher(t *testing.T, admin *Publisher, topic string, cfg Config) (*Publisher, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg.Brokers, cfg.Topic = admin.cfg.Brokers, topic
	cfg.BackoffMin, cfg.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
	p, err := New(cfg, zerolog.New(zerolog.MultiLevelWriter(logs, zerolog.NewTestWriter(t))).Level(zerolog.InfoLevel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p, logs
}

// TestPublisher_integration_tailIsOurs restarts a session from an earlier position, as the
// relay does after a crash: what the partitions' tails hold is acknowledged without being
// sent, the rest is sent, and every message is in Kafka exactly once.
func TestPublisher_integration_tailIsOurs(t *testing.T) {
	admin := testPublisher(t)
	topic := testTopic(t, admin, 3)
	var skipped int
	var mu sync.Mutex
	p, logs := itPublisher(t, admin, topic, Config{OnSkipped: func(_ string, ms []Message) {
		mu.Lock()
		skipped += len(ms)
		mu.Unlock()
	}})
	session(t, p, itSource, itMessages(0, 60, "7401286427335794708/1/it_slot/5f3a09c2"))
	// The slot was confirmed only up to message 20: the next session streams 20..59 again,
	// then new ones.
	session(t, p, itSource, itMessages(20, 90, "7401286427335794708/1/it_slot/5f3a09c2"))
	got := counts(t, p, topic, 3)
	for i := range 90 {
		if n := got[fmt.Sprint(i)]; n != 1 {
			t.Errorf("message %d is in kafka %d times, want once", i, n)
		}
	}
	if skipped != 40 {
		t.Errorf("%d messages skipped, want 40 (20..59)", skipped)
	}
	if strings.Contains(logs.String(), "not trusting") {
		t.Errorf("a tail was distrusted:\n%s", logs)
	}
}

// TestPublisher_integration_foreignTail: partitions whose last records come from another slot
// or from a producer without our headers are sent at-least-once, with a warning each.
func TestPublisher_integration_foreignTail(t *testing.T) {
	admin := testPublisher(t)
	topic := testTopic(t, admin, 1)
	p, logs := itPublisher(t, admin, topic, Config{OnSkipped: func(string, []Message) { t.Error("skipped a message") }})
	const ours = "7401286427335794708/1/it_slot/5f3a09c2"
	session(t, p, itSource, itMessages(0, 20, ours))
	// Another relay (slot it_other) writes the same topic, then a producer without headers.
	session(t, p, record.Source{}, itMessages(100, 120, "7401286427335794708/1/it_other/5f3a09c2"))
	foreign := itMessages(200, 320, "") // with the other relay's: more than the 100-record window
	for i := range foreign {
		foreign[i].Headers = nil
	}
	session(t, p, record.Source{}, foreign)
	// Our next session restarts at 0. Our records are beyond the window: the partition is
	// distrusted and sent at-least-once. (Fewer foreign records are stepped over: TestJudgeTail.)
	session(t, p, itSource, itMessages(0, 30, ours))
	got := counts(t, p, topic, 1)
	for i := range 30 {
		if got[fmt.Sprint(i)] < 1 {
			t.Errorf("message %d is missing", i)
		}
	}
	if n := strings.Count(logs.String(), "not trusting the partition's last record"); n != 1 {
		t.Errorf("%d distrust warnings, want 1:\n%s", n, logs)
	}
}

// TestPublisher_integration_ambiguousProduce: the broker writes a request whose answer is lost
// (the client times out); the retry reads the partition's tail first and sends nothing again.
// Whether the muted request reaches the broker before the client gives up is up to timing (kafka-go
// may still be waiting for a muted answer on the connection when the produce times out, and then
// the request is never sent): such an attempt proves nothing, so the scenario runs again, up to
// three times, until the broker wrote a request whose answer was lost. Every attempt checks that
// each message is in Kafka exactly once.
func TestPublisher_integration_ambiguousProduce(t *testing.T) {
	for attempt := 1; attempt <= 3; attempt++ {
		failures, skipped := ambiguousProduceOnce(t)
		t.Logf("attempt %d: %d failed attempts, %d messages found in kafka and not sent again", attempt, failures, skipped)
		if t.Failed() || (failures > 0 && skipped > 0) {
			return
		}
	}
	t.Error("in three attempts the muted request was never written: the test proves nothing")
}

func ambiguousProduceOnce(t *testing.T) (failures, skipped int) {
	t.Helper()
	admin := testPublisher(t)
	topic := testTopic(t, admin, 1)
	proxy := newBrokerProxy(t, admin.cfg.Brokers[0])
	var mu sync.Mutex
	p, _ := itPublisher(t, admin, topic, Config{
		RequestTimeout: 2 * time.Second,
		// No metadata refresh while the answers are muted: a produce waiting for one would time
		// out unsent, and the test would prove nothing.
		MetadataTTL: 5 * time.Minute,
		OnSkipped: func(_ string, ms []Message) {
			mu.Lock()
			skipped += len(ms)
			mu.Unlock()
		},
		OnError: func(kind string, err error) {
			mu.Lock()
			failures++
			first := failures == 1
			mu.Unlock()
			t.Logf("produce failed (%s): %v", kind, err)
			if first {
				go proxy.unmute() // Kafka answers again: the tail read can succeed
			}
		},
	})
	p.kafka.transport.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, proxy.ln.Addr().String())
	}
	const ours = "7401286427335794708/1/it_slot/5f3a09c2"
	// One session: the tail is read at the first message, then the answers are muted.
	p.BeginSession(itSource)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in := make(chan Message, 100)
	acked := make(chan int, 100)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, in, func(ms []Message) { acked <- len(ms) }) }()
	waitAcked := func(n int) {
		t.Helper()
		for n > 0 {
			select {
			case k := <-acked:
				n -= k
			case <-ctx.Done():
				t.Fatalf("%d messages not acknowledged", n)
			}
		}
	}
	for _, m := range itMessages(0, 10, ours) {
		in <- m
	}
	waitAcked(10)
	proxy.mute()
	for _, m := range itMessages(10, 30, ours) {
		in <- m
	}
	waitAcked(20)
	close(in)
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	got := counts(t, admin, topic, 1)
	for i := range 30 {
		if n := got[fmt.Sprint(i)]; n != 1 {
			t.Errorf("message %d is in kafka %d times, want once", i, n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return failures, skipped
}
