package sink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/pgoutbox/pgoutbox/record"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// call is one produce request seen by fakeKafka.
type call struct {
	topicPartition
	ids []string
	err error
}

// fakeKafka stands in for the broker: it records every produce request, fails the ones that
// fail says to fail, and keeps what it "wrote" per partition.
type fakeKafka struct {
	partitions int
	// fail decides the outcome of the n-th request (from 0) to a partition.
	fail func(tp topicPartition, n int, ids []string) error
	// countErr decides the outcome of the n-th metadata read (from 0) of a topic.
	countErr func(topic string, n int) error

	mu       sync.Mutex
	calls    []call
	perTP    map[topicPartition]int
	inFlight map[topicPartition]bool // a request is being answered
	overlaps []topicPartition        // partitions that had two requests in flight at once
	reads    map[string]int
	written  map[topicPartition][]Message
	ackable  map[string]bool // ids written
}

func newFake(partitions int) *fakeKafka {
	return &fakeKafka{
		partitions: partitions,
		perTP:      make(map[topicPartition]int),
		inFlight:   make(map[topicPartition]bool),
		reads:      make(map[string]int),
		written:    make(map[topicPartition][]Message),
		ackable:    make(map[string]bool),
	}
}

func (f *fakeKafka) produce(ctx context.Context, topic string, partition int, msgs []Message) error {
	tp := topicPartition{topic: topic, partition: partition}
	f.mu.Lock()
	n := f.perTP[tp]
	f.perTP[tp]++
	fail := f.fail
	if f.inFlight[tp] {
		f.overlaps = append(f.overlaps, tp)
	}
	f.inFlight[tp] = true
	f.mu.Unlock()
	err := ctx.Err()
	if err == nil && fail != nil {
		err = fail(tp, n, ids(msgs))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inFlight[tp] = false
	f.calls = append(f.calls, call{topicPartition: tp, ids: ids(msgs), err: err})
	if err == nil {
		f.written[tp] = append(f.written[tp], msgs...)
		for _, m := range msgs {
			f.ackable[m.ID] = true
		}
	}
	return err
}

func (f *fakeKafka) partitionCount(_ context.Context, topic string) (int, error) {
	f.mu.Lock()
	n := f.reads[topic]
	f.reads[topic]++
	f.mu.Unlock()
	if f.countErr != nil {
		if err := f.countErr(topic, n); err != nil {
			return 0, err
		}
	}
	return f.partitions, nil
}

func (f *fakeKafka) snapshot() ([]call, map[topicPartition][]Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	written := make(map[topicPartition][]Message, len(f.written))
	for tp, msgs := range f.written {
		written[tp] = slices.Clone(msgs)
	}
	return slices.Clone(f.calls), written
}

func newTestPublisher(t *testing.T, fake *fakeKafka, cfg Config) *Publisher {
	t.Helper()
	cfg.Brokers = []string{"127.0.0.1:1"} // never dialed: the fake answers
	if cfg.Topic == "" {
		cfg.Topic = "outbox"
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 4*time.Millisecond
	}
	p, err := New(cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel))
	if err != nil {
		t.Fatal(err)
	}
	p.prod, p.meta = fake, fake
	p.tailSettle = time.Millisecond
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// ackLog records acked calls and checks that each message was written before its ack.
type ackLog struct {
	t     *testing.T
	fake  *fakeKafka
	mu    sync.Mutex
	calls [][]string
	count map[string]int
}

func newAckLog(t *testing.T, fake *fakeKafka) *ackLog {
	return &ackLog{t: t, fake: fake, count: make(map[string]int)}
}

func (a *ackLog) acked(msgs []Message) {
	a.fake.mu.Lock()
	for _, m := range msgs {
		if !a.fake.ackable[m.ID] {
			a.t.Errorf("message %s acked but never written", m.ID)
		}
	}
	a.fake.mu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, ids(msgs))
	for _, m := range msgs {
		a.count[m.ID]++
	}
}

func (a *ackLog) ackedOnce(t *testing.T, want []string) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range want {
		if a.count[id] != 1 {
			t.Errorf("message %s acked %d times, want once", id, a.count[id])
		}
	}
	if len(a.count) != len(want) {
		t.Errorf("acked %d distinct messages, want %d: %v", len(a.count), len(want), a.count)
	}
}

// feed returns a channel holding msgs, closed when close is true.
func feed(msgs []Message, closeIt bool) chan Message {
	in := make(chan Message, len(msgs)+1)
	for _, m := range msgs {
		in <- m
	}
	if closeIt {
		close(in)
	}
	return in
}

var errRefused = fmt.Errorf("kafka.(*Client).Produce: dial tcp 127.0.0.1:9092: %w", syscall.ECONNREFUSED)

// TestPublisher_Run_orderUnderFailure: a partition's failed request is re-sent, the same
// records in the same order, before its next one; the other partitions do not wait for it.
func TestPublisher_Run_orderUnderFailure(t *testing.T) {
	t.Parallel()
	fake := newFake(2)
	k0, k1 := keyFor(t, 0, 2), keyFor(t, 1, 2)
	// The publisher holds 4 messages at most: a0 b1 c0 d1 first, then e1 f0 g1 as room frees.
	msgs := []Message{
		{ID: "a", Key: k0}, {ID: "b", Key: k1}, {ID: "c", Key: k0}, {ID: "d", Key: k1},
		{ID: "e", Key: k1}, {ID: "f", Key: k0}, {ID: "g", Key: k1},
	}
	p0second := make(chan struct{})
	fake.fail = func(tp topicPartition, n int, _ []string) error {
		switch {
		case tp.partition == 0 && n == 1:
			close(p0second)
		case tp.partition == 1 && n == 0:
			// Partition 1's first request stays unanswered until partition 0 has sent its second:
			// partition 0 does not wait for partition 1.
			select {
			case <-p0second:
			case <-time.After(10 * time.Second):
				t.Error("partition 0 waited for partition 1 before sending its next request")
			}
			return &produceError{err: kafka.NotLeaderForPartition}
		case tp.partition == 1 && n == 1:
			return errRefused
		}
		return nil
	}
	p := newTestPublisher(t, fake, Config{MaxBatchMessages: 4})
	acks := newAckLog(t, fake)
	if err := p.Run(context.Background(), feed(msgs, true), acks.acked); err != nil {
		t.Fatalf("Run = %v", err)
	}

	calls, written := fake.snapshot()
	perPartition := map[int][]string{}
	for _, c := range calls {
		perPartition[c.partition] = append(perPartition[c.partition], fmt.Sprintf("%s:%v", strings.Join(c.ids, ","), c.err == nil))
	}
	if got, want := perPartition[0], []string{"a,c:true", "f:true"}; !slices.Equal(got, want) {
		t.Errorf("partition 0 requests = %v, want %v", got, want)
	}
	// Partition 1's request is re-sent until it succeeds; e and g go only after.
	if got, want := perPartition[1], []string{"b,d:false", "b,d:false", "b,d:true", "e,g:true"}; !slices.Equal(got, want) {
		t.Errorf("partition 1 requests = %v, want %v", got, want)
	}
	if w := ids(written[topicPartition{"outbox", 1}]); !slices.Equal(w, []string{"b", "d", "e", "g"}) {
		t.Errorf("partition 1 holds %v", w)
	}
	if w := ids(written[topicPartition{"outbox", 0}]); !slices.Equal(w, []string{"a", "c", "f"}) {
		t.Errorf("partition 0 holds %v", w)
	}
	acks.ackedOnce(t, ids(msgs))
	if len(acks.calls) != 4 {
		t.Errorf("acked called %d times, want once per acknowledged request: %v", len(acks.calls), acks.calls)
	}
}

// TestPublisher_Run_randomFailures checks the order and ack invariants with transient failures
// at random and slow partitions, over many keys and requests, and a graceful drain at the end.
func TestPublisher_Run_randomFailures(t *testing.T) {
	t.Parallel()
	const partitions, keys, total = 5, 40, 3000
	fake := newFake(partitions)
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(7, 9)) //nolint:gosec // reproducible test data
	fake.fail = func(topicPartition, int, []string) error {
		mu.Lock()
		outcome := rng.IntN(10)
		mu.Unlock()
		switch outcome {
		case 0:
			return errRefused
		case 1:
			return &produceError{err: kafka.NotEnoughReplicas}
		case 2, 3:
			time.Sleep(100 * time.Microsecond) // a slow partition: the others go on meanwhile
		}
		return nil
	}
	msgs := make([]Message, total)
	for i := range msgs {
		msgs[i] = Message{ID: fmt.Sprint(i), Key: []byte(fmt.Sprintf("channel-%d", i%keys)), Value: make([]byte, i%300)}
	}
	p := newTestPublisher(t, fake, Config{MaxBatchMessages: 97, MaxRequestBytes: 4000})
	acks := newAckLog(t, fake)
	in := make(chan Message)
	go func() {
		for _, m := range msgs {
			in <- m
		}
		close(in)
	}()
	if err := p.Run(context.Background(), in, acks.acked); err != nil {
		t.Fatalf("Run = %v", err)
	}
	_, written := fake.snapshot()
	var h murmur2
	for part := range partitions {
		var want []string
		for _, m := range msgs {
			if h.partition(m.Key, partitions) == part {
				want = append(want, m.ID)
			}
		}
		if got := ids(written[topicPartition{"outbox", part}]); !slices.Equal(got, want) {
			t.Errorf("partition %d holds %d messages out of order or with gaps", part, len(got))
		}
	}
	acks.ackedOnce(t, ids(msgs))
	if len(fake.overlaps) > 0 {
		t.Errorf("two requests in flight at once on %v", fake.overlaps)
	}
}

func TestPublisher_Run_cancelDuringOutage(t *testing.T) {
	t.Parallel()
	fake := newFake(2)
	k0, k1 := keyFor(t, 0, 2), keyFor(t, 1, 2)
	var attempts sync.WaitGroup
	attempts.Add(5)
	var once sync.Map
	fake.fail = func(tp topicPartition, n int, _ []string) error {
		if tp.partition == 0 {
			return nil
		}
		if _, seen := once.LoadOrStore(n, true); !seen && n < 5 {
			attempts.Done()
		}
		return errRefused // Kafka stays down for partition 1
	}
	p := newTestPublisher(t, fake, Config{})
	acks := newAckLog(t, fake)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- p.Run(ctx, feed([]Message{{ID: "a", Key: k0}, {ID: "b", Key: k1}}, false), acks.acked)
	}()
	attempts.Wait() // five failed attempts: Run keeps retrying, and does not return
	select {
	case err := <-done:
		t.Fatalf("Run returned %v during the outage", err)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	// Partition 0 was acknowledged: it may be acked; b never.
	if acks.count["b"] != 0 {
		t.Errorf("b acked although never written")
	}
}

func TestPublisher_Run_rejected(t *testing.T) {
	t.Parallel()
	fake := newFake(2)
	k0, k1 := keyFor(t, 0, 2), keyFor(t, 1, 2)
	p0done := make(chan struct{})
	fake.fail = func(tp topicPartition, n int, ids []string) error {
		if tp.partition == 0 && n == 0 {
			close(p0done)
		}
		if tp.partition == 1 && ids[0] == "big" {
			<-p0done // partition 0 is acknowledged first
			return &produceError{err: fmt.Errorf("%w: the request included a message larger than the max message size", kafka.MessageSizeTooLarge)}
		}
		return nil
	}
	msgs := []Message{{ID: "a", Key: k0}, {ID: "big", Key: k1, Token: 77}, {ID: "c", Key: k0}, {ID: "later", Key: k1}}
	p := newTestPublisher(t, fake, Config{MaxBatchMessages: 3})
	acks := newAckLog(t, fake)
	err := p.Run(context.Background(), feed(msgs, true), acks.acked)
	var rerr *RejectedError
	if !errors.As(err, &rerr) || !errors.Is(err, ErrRejected) || !errors.Is(err, kafka.MessageSizeTooLarge) {
		t.Fatalf("Run = %v, want a RejectedError", err)
	}
	if rerr.ID != "big" || rerr.Token != 77 || rerr.Partition != 1 || rerr.Topic != "outbox" {
		t.Errorf("RejectedError = %+v", rerr)
	}
	calls, _ := fake.snapshot()
	for _, c := range calls {
		if slices.Contains(c.ids, "later") {
			t.Errorf("a message after the rejected one was sent: %v", c)
		}
	}
	acks.ackedOnce(t, []string{"a", "c"}) // partition 0 was acknowledged
}

func TestPublisher_Run_splitsTooLargeBatch(t *testing.T) {
	t.Parallel()
	fake := newFake(1)
	fake.fail = func(_ topicPartition, _ int, ids []string) error {
		if len(ids) > 2 {
			return &produceError{err: kafka.MessageSizeTooLarge}
		}
		return nil
	}
	var msgs []Message
	for i := range 7 {
		msgs = append(msgs, Message{ID: fmt.Sprint(i), Key: []byte("k")})
	}
	p := newTestPublisher(t, fake, Config{})
	acks := newAckLog(t, fake)
	if err := p.Run(context.Background(), feed(msgs, true), acks.acked); err != nil {
		t.Fatalf("Run = %v", err)
	}
	_, written := fake.snapshot()
	if got := ids(written[topicPartition{"outbox", 0}]); !slices.Equal(got, ids(msgs)) {
		t.Errorf("partition holds %v, want %v", got, ids(msgs))
	}
	acks.ackedOnce(t, ids(msgs))
}

func TestPublisher_Run_fatal(t *testing.T) {
	t.Parallel()
	fake := newFake(1)
	fake.fail = func(topicPartition, int, []string) error {
		return &produceError{err: kafka.TopicAuthorizationFailed}
	}
	p := newTestPublisher(t, fake, Config{})
	acks := newAckLog(t, fake)
	err := p.Run(context.Background(), feed([]Message{{ID: "a"}}, true), acks.acked)
	if !errors.Is(err, ErrFatal) || !errors.Is(err, kafka.TopicAuthorizationFailed) {
		t.Fatalf("Run = %v, want ErrFatal", err)
	}
	acks.ackedOnce(t, nil)
}

func TestPublisher_Run_waitsForMetadata(t *testing.T) {
	t.Parallel()
	fake := newFake(3)
	fake.countErr = func(_ string, n int) error {
		if n < 3 {
			return fmt.Errorf("read metadata: %w at 127.0.0.1:1: %w", ErrUnreachable, syscall.ECONNREFUSED)
		}
		return nil
	}
	p := newTestPublisher(t, fake, Config{})
	acks := newAckLog(t, fake)
	msgs := []Message{{ID: "a", Key: []byte("x")}, {ID: "b", Key: []byte("y"), Topic: "other"}}
	if err := p.Run(context.Background(), feed(msgs, true), acks.acked); err != nil {
		t.Fatalf("Run = %v", err)
	}
	acks.ackedOnce(t, ids(msgs))
}

// A message whose topic's metadata cannot be read waits for it, and the messages after it too;
// what was taken before it is sent meanwhile.
func TestPublisher_Run_heldBackOnMetadataError(t *testing.T) {
	t.Parallel()
	fake := newFake(1)
	fake.countErr = func(topic string, n int) error {
		if topic == "other" && n < 2 {
			return fmt.Errorf("%w: %q", ErrTopicNotFound, topic)
		}
		return nil
	}
	p := newTestPublisher(t, fake, Config{})
	acks := newAckLog(t, fake)
	msgs := []Message{{ID: "a"}, {ID: "b", Topic: "other"}, {ID: "c"}}
	if err := p.Run(context.Background(), feed(msgs, true), acks.acked); err != nil {
		t.Fatalf("Run = %v", err)
	}
	calls, _ := fake.snapshot()
	var got []string
	for _, c := range calls {
		got = append(got, c.topic+":"+strings.Join(c.ids, ","))
	}
	if len(got) != 3 || got[0] != "outbox:a" || !slices.Contains(got[1:], "other:b") || !slices.Contains(got[1:], "outbox:c") {
		t.Errorf("calls = %v, want a alone, then b and c", got)
	}
	if len(acks.calls) != 3 {
		t.Errorf("acked calls = %v, want one per request", acks.calls)
	}
	acks.ackedOnce(t, ids(msgs))
}

func TestPublisher_Run_metadataFatal(t *testing.T) {
	t.Parallel()
	fake := newFake(3)
	fake.countErr = func(string, int) error { return kafka.TopicAuthorizationFailed }
	p := newTestPublisher(t, fake, Config{})
	err := p.Run(context.Background(), feed([]Message{{ID: "a"}}, true), func([]Message) { t.Error("acked") })
	if !errors.Is(err, ErrFatal) {
		t.Fatalf("Run = %v, want ErrFatal", err)
	}
}

func TestPublisher_Run_idleUntilCancelled(t *testing.T) {
	t.Parallel()
	p := newTestPublisher(t, newFake(1), Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.Run(ctx, make(chan Message), func([]Message) {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v", err)
	}
}

func TestPublisher_Close_idempotent(t *testing.T) {
	t.Parallel()
	p := newTestPublisher(t, newFake(1), Config{})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNew_invalidConfig(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "kafka config") {
		t.Fatalf("New = %v", err)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	lo, hi := 100*time.Millisecond, 5*time.Second
	for attempt := 1; attempt < 80; attempt++ {
		d := lo << min(attempt-1, 10)
		d = min(d, hi)
		for range 20 {
			got := backoff(attempt, lo, hi)
			if got < d/2 || got > d {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", attempt, got, d/2, d)
			}
		}
	}
}

func TestRetryLog(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	rl := newRetryLog(zerolog.New(&buf), "kafka write", clock)
	lines := func() int { return strings.Count(buf.String(), "\n") }

	rl.failed(errRefused, 1, time.Second) // first failure: logged
	if lines() != 1 || !strings.Contains(buf.String(), `"level":"warn"`) || !strings.Contains(buf.String(), `"attempt":1`) {
		t.Fatalf("first failure not logged: %s", buf.String())
	}
	for i := 2; i <= 50; i++ { // 49 failures within 9.8 s: none logged
		now = now.Add(200 * time.Millisecond)
		rl.failed(errRefused, i, time.Second)
	}
	if lines() != 1 {
		t.Fatalf("failures within %s logged: %s", failureLogEvery, buf.String())
	}
	now = now.Add(time.Second)
	rl.failed(errRefused, 51, time.Second)
	if lines() != 2 || !strings.Contains(buf.String(), `"attempt":51`) {
		t.Fatalf("failure after %s not logged: %s", failureLogEvery, buf.String())
	}
	rl.recovered(52)
	if lines() != 3 || !strings.Contains(buf.String(), `"level":"info"`) || !strings.Contains(buf.String(), `"attempts":52`) {
		t.Fatalf("recovery not logged: %s", buf.String())
	}
	rl.recovered(1) // nothing failed since: no line
	if lines() != 3 {
		t.Fatalf("success without failure logged: %s", buf.String())
	}
}

// One row naming an illegal topic, or a topic that stays missing, must not stall every channel:
// it is set aside on the dead-letter topic (or stops Run, naming it) and the rest go on.
func TestPublisher_Run_unroutableTopics(t *testing.T) {
	t.Parallel()
	missing := func(topic string, _ int) error {
		if topic == "no_such_topic" {
			return fmt.Errorf("%w: %q", ErrTopicNotFound, topic)
		}
		return nil
	}
	msgs := []Message{{ID: "a"}, {ID: "bad", Topic: "bad topic!"}, {ID: "b"}, {ID: "gone", Topic: "no_such_topic"}, {ID: "c"}}

	t.Run("dead-letter", func(t *testing.T) {
		t.Parallel()
		fake := newFake(1)
		fake.countErr = missing
		var waits []string
		var mu sync.Mutex
		p := newTestPublisher(t, fake, Config{DeadLetterTopic: "outbox.dlq", MissingTopicWait: 20 * time.Millisecond,
			OnTopicWait: func(topic string, waiting bool) {
				mu.Lock()
				waits = append(waits, fmt.Sprintf("%s %v", topic, waiting))
				mu.Unlock()
			}})
		acks := newAckLog(t, fake)
		if err := p.Run(context.Background(), feed(msgs, true), acks.acked); err != nil {
			t.Fatalf("Run = %v", err)
		}
		acks.ackedOnce(t, ids(msgs))
		_, written := fake.snapshot()
		var dlq []string
		for _, m := range written[topicPartition{topic: "outbox.dlq"}] {
			reason, _ := record.Lookup(m.Headers, record.HeaderError)
			dlq = append(dlq, m.ID+": "+reason)
		}
		if len(dlq) != 2 || !strings.Contains(dlq[0], "bad topic!") || !strings.Contains(dlq[1], "does not exist after waiting") {
			t.Errorf("dead-letter topic holds %q, want the two unroutable rows with their reasons", dlq)
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(waits, []string{"no_such_topic true", "no_such_topic false"}) {
			t.Errorf("OnTopicWait calls %v, want the wait for no_such_topic to start and end", waits)
		}
	})
	t.Run("stop", func(t *testing.T) {
		t.Parallel()
		p := newTestPublisher(t, newFake(1), Config{})
		err := p.Run(context.Background(), feed(msgs[:2], true), func([]Message) {})
		var rerr *RejectedError
		if !errors.As(err, &rerr) || rerr.ID != "bad" || !strings.Contains(err.Error(), `"bad topic!"`) {
			t.Fatalf("Run = %v, want a RejectedError naming row bad and its topic", err)
		}
	})
}

// While a partition's request is in flight, what arrives for it queues; the next request
// carries all of it at once, as soon as the first is acknowledged.
func TestPublisher_Run_nextRequestCarriesWhatQueued(t *testing.T) {
	t.Parallel()
	fake := newFake(1)
	firstSent, release := make(chan struct{}), make(chan struct{})
	fake.fail = func(_ topicPartition, n int, _ []string) error {
		if n == 0 {
			close(firstSent)
			<-release
		}
		return nil
	}
	p := newTestPublisher(t, fake, Config{})
	acks := newAckLog(t, fake)
	in := make(chan Message, 8) // buffered, like the relay's queue
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background(), in, acks.acked) }()
	in <- Message{ID: "a"}
	<-firstSent
	for _, id := range []string{"b", "c", "d", "e"} {
		in <- Message{ID: id} // queued while a is in flight
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(in); n != 4 {
		// Every partition waits for Kafka: taking them now would only cost a wake-up per row.
		t.Errorf("the publisher took %d rows while its only partition's request was in flight; want them left queued", 4-n)
	}
	close(release)
	close(in)
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	calls, _ := fake.snapshot()
	var got []string
	for _, c := range calls {
		got = append(got, strings.Join(c.ids, ","))
	}
	if want := []string{"a", "b,c,d,e"}; !slices.Equal(got, want) {
		t.Errorf("requests = %v, want %v", got, want)
	}
	acks.ackedOnce(t, []string{"a", "b", "c", "d", "e"})
}

// While the stream is behind, a small request lingers for more rows; a live row goes at once,
// and the input's close sends what lingers.
func TestPublisher_Run_lingersOnlyWhileBehind(t *testing.T) {
	t.Parallel()
	fake := newFake(1)
	requests := make(chan time.Time, 10)
	fake.fail = func(topicPartition, int, []string) error {
		requests <- time.Now()
		return nil
	}
	const linger = 300 * time.Millisecond
	p := newTestPublisher(t, fake, Config{Linger: linger})
	acks := newAckLog(t, fake)
	in := make(chan Message)
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background(), in, acks.acked) }()

	old := time.Now().Add(-time.Second) // committed a second ago: the stream is behind
	start := time.Now()
	in <- Message{ID: "a", Time: old}
	in <- Message{ID: "b", Time: old}
	at := <-requests
	if waited := at.Sub(start); waited < linger/2 {
		t.Errorf("a request of a stream that is behind went after %s, want it to linger about %s", waited, linger)
	}
	sentLive := time.Now()
	in <- Message{ID: "c", Time: time.Now()} // live: no linger
	if waited := (<-requests).Sub(sentLive); waited >= linger/2 {
		t.Errorf("a live row waited %s", waited)
	}
	in <- Message{ID: "d", Time: old}
	close(in) // the drain does not wait for the linger
	closed := time.Now()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if waited := time.Since(closed); waited >= linger/2 {
		t.Errorf("the drain waited %s for a lingering request", waited)
	}
	calls, _ := fake.snapshot()
	var got []string
	for _, c := range calls {
		got = append(got, strings.Join(c.ids, ","))
	}
	if want := []string{"a,b", "c", "d"}; !slices.Equal(got, want) {
		t.Errorf("requests = %v, want %v", got, want)
	}
	acks.ackedOnce(t, []string{"a", "b", "c", "d"})
}

// A lingering request that fills to a quarter of its limits goes without waiting further.
func TestPublisher_Run_lingerEndsWhenQuarterFull(t *testing.T) {
	t.Parallel()
	fake := newFake(1)
	requests := make(chan []string, 10)
	fake.fail = func(_ topicPartition, _ int, ids []string) error {
		requests <- ids
		return nil
	}
	p := newTestPublisher(t, fake, Config{Linger: time.Minute, MaxBatchMessages: 8})
	acks := newAckLog(t, fake)
	in := make(chan Message)
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background(), in, acks.acked) }()
	old := time.Now().Add(-time.Second)
	in <- Message{ID: "a", Time: old}
	in <- Message{ID: "b", Time: old} // 2 of 8: a quarter
	select {
	case got := <-requests:
		if !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("request = %v, want [a b]", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a quarter-full request still lingers")
	}
	close(in)
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	acks.ackedOnce(t, []string{"a", "b"})
}

// A bad row (Message.DeadLetter) goes to the dead-letter topic as its dead-letter record of
// stage decode, with the topic it was meant for; a message Kafka refuses gets one of stage
// kafka. Both are counted by OnDeadLetter, and only there.
func TestPublisher_Run_deadLetterRecords(t *testing.T) {
	t.Parallel()
	fake := newFake(1)
	var mu sync.Mutex
	var counted []string
	p := newTestPublisher(t, fake, Config{DeadLetterTopic: "outbox.dlq", OnDeadLetter: func(dl Message, stage string) {
		mu.Lock()
		counted = append(counted, dl.ID+" "+stage)
		mu.Unlock()
	}})
	msgs := []Message{{ID: "a"}, {ID: "bad", Topic: "orders", DeadLetter: "channel is NULL"}, {ID: "refused", Topic: "bad topic!"}, {ID: "b"}}
	acks := newAckLog(t, fake)
	if err := p.Run(context.Background(), feed(msgs, true), acks.acked); err != nil {
		t.Fatalf("Run = %v", err)
	}
	acks.ackedOnce(t, ids(msgs))
	_, written := fake.snapshot()
	var got []string
	for _, m := range written[topicPartition{topic: "outbox.dlq"}] {
		stage, _ := record.DeadLetterStage(m.Headers)
		orig, _ := record.Lookup(m.Headers, record.HeaderOriginalTopic)
		reason, _ := record.Lookup(m.Headers, record.HeaderError)
		got = append(got, fmt.Sprintf("%s %s %s %t", m.ID, stage, orig, strings.Contains(reason, "NULL") || strings.Contains(reason, "bad topic!")))
	}
	slices.Sort(got)
	if want := []string{"bad decode orders true", "refused kafka bad topic! true"}; !slices.Equal(got, want) {
		t.Errorf("dead-letter topic holds %q, want %q", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(counted)
	if want := []string{"bad decode", "refused kafka"}; !slices.Equal(counted, want) {
		t.Errorf("OnDeadLetter calls %q, want %q", counted, want)
	}
	if n := len(written[topicPartition{topic: "orders"}]); n != 0 {
		t.Errorf("the bad row reached its own topic %d times", n)
	}
}
