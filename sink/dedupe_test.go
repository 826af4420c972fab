package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/pgoutbox/pgoutbox/record"
)

// tailFake reads tails from what a fakeKafka wrote (offset = index in the partition): its
// committed log, below the high watermark. Records in limbo (appended by the leader beyond the
// high watermark: a dead follower still in the ISR) are not read; a barrier commits them first,
// as acks=all does in Kafka. Barrier records themselves are counted, not written.
type tailFake struct {
	*fakeKafka
	fail        func(n int) error // outcome of the n-th tail read (from 0); nil = all succeed
	barrierFail func(n int) error // outcome of the n-th barrier (from 0); nil = all succeed

	mu       sync.Mutex
	reads    int
	barriers int
	limbo    map[topicPartition][]Message
	order    []string // "barrier" and "read", as they came
}

func (f *tailFake) barrier(_ context.Context, topic string, partition int, m Message) error {
	if v, _ := record.Lookup(m.Headers, record.HeaderControl); v != record.ControlBarrier || m.Key != nil || m.Value != nil {
		return fmt.Errorf("not a barrier record: %+v", m)
	}
	f.mu.Lock()
	n := f.barriers
	f.barriers++
	f.order = append(f.order, "barrier")
	f.mu.Unlock()
	if f.barrierFail != nil {
		if err := f.barrierFail(n); err != nil {
			return err
		}
	}
	tp := topicPartition{topic: topic, partition: partition}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commitLimbo(tp)
	return nil
}

// commitLimbo moves tp's records in limbo into the committed log (f.mu held).
func (f *tailFake) commitLimbo(tp topicPartition) {
	f.fakeKafka.mu.Lock()
	defer f.fakeKafka.mu.Unlock()
	for _, m := range f.limbo[tp] {
		f.written[tp] = append(f.written[tp], m)
		f.ackable[m.ID] = true
	}
	delete(f.limbo, tp)
}

func (f *tailFake) readTail(_ context.Context, topic string, partition int) (tailRead, error) {
	f.mu.Lock()
	n := f.reads
	f.reads++
	f.order = append(f.order, "read")
	f.mu.Unlock()
	if f.fail != nil {
		if err := f.fail(n); err != nil {
			return tailRead{}, err
		}
	}
	f.fakeKafka.mu.Lock()
	defer f.fakeKafka.mu.Unlock()
	msgs := f.written[topicPartition{topic: topic, partition: partition}]
	r := tailRead{end: int64(len(msgs))}
	for i := max(0, len(msgs)-tailWindow); i < len(msgs); i++ {
		m := msgs[i]
		t := tailRecord{offset: int64(i)}
		t.position, _ = record.Lookup(m.Headers, record.HeaderPosition)
		t.source, _ = record.Lookup(m.Headers, record.HeaderSource)
		_, t.deadLetter = record.Lookup(m.Headers, record.HeaderOriginalTopic)
		t.control = record.IsControl(m.Headers)
		if m.routed > 0 {
			t.partitions = fmt.Sprint(m.routed)
		}
		r.records = append(r.records, t)
	}
	return r, nil
}

func (f *tailFake) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// seed puts msgs into partition 0 of "outbox" as an earlier session would have written them.
func seed(fake *fakeKafka, partitions int, msgs ...Message) {
	fake.mu.Lock()
	defer fake.mu.Unlock()
	tp := topicPartition{topic: "outbox", partition: 0}
	for _, m := range msgs {
		m.routed = partitions
		fake.written[tp] = append(fake.written[tp], m)
		fake.ackable[m.ID] = true
	}
}

// ours is a message of ourSource at commit LSN lsn, keyed to partition 0 of 1.
func ours(id string, lsn uint64) Message {
	return sourced(id, tl3, lsn)
}

func sourced(id, source string, lsn uint64) Message {
	return Message{ID: id, Key: []byte("k"), Headers: []record.Header{
		{Key: record.HeaderPosition, Value: []byte(pos(lsn, 0))}, {Key: record.HeaderSource, Value: []byte(source)},
	}}
}

// dedupePublisher is a Publisher over fake with tail reads from tf, logging into logs.
func dedupePublisher(t *testing.T, fake *fakeKafka, tf *tailFake, cfg Config) (*Publisher, *bytes.Buffer) {
	t.Helper()
	p := newTestPublisher(t, fake, cfg)
	var logs bytes.Buffer
	p.log = zerolog.New(&syncWriter{w: &logs}).Level(zerolog.DebugLevel)
	p.reader = tf
	return p, &logs
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// sessionSource is ourSource on timeline 3 with its WAL end past every test position.
var sessionSource = ourSource

func TestPublisher_BeginSession_skipsWhatTheTailHas(t *testing.T) {
	t.Parallel()
	fake := newFake(1)
	seed(fake, 1, ours("a", 0x100), ours("b", 0x200), ours("c", 0x300))
	tf := &tailFake{fakeKafka: fake}
	var skipped []string
	var mu sync.Mutex
	p, _ := dedupePublisher(t, fake, tf, Config{OnSkipped: func(reason string, msgs []Message) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			skipped = append(skipped, reason+":"+m.ID)
		}
	}})
	p.BeginSession(sessionSource)
	acks := newAckLog(t, fake)
	// The new session starts from the slot's confirmed position, before b.
	in := []Message{ours("b", 0x200), ours("c", 0x300), ours("d", 0x400), ours("e", 0x500)}
	if err := p.Run(context.Background(), feed(in, true), acks.acked); err != nil {
		t.Fatal(err)
	}
	acks.ackedOnce(t, []string{"b", "c", "d", "e"})
	calls, written := fake.snapshot()
	if got := ids(written[topicPartition{topic: "outbox"}]); strings.Join(got, ",") != "a,b,c,d,e" {
		t.Errorf("partition holds %v, want a,b,c,d,e (no duplicate)", got)
	}
	if len(calls) != 1 || strings.Join(calls[0].ids, ",") != "d,e" {
		t.Errorf("produce calls = %+v, want one with d,e", calls)
	}
	if strings.Join(skipped, " ") != "already_in_kafka:b already_in_kafka:c" {
		t.Errorf("OnSkipped got %v", skipped)
	}
	if n := tf.readCount(); n != 1 {
		t.Errorf("%d tail reads, want 1 (first use of the partition)", n)
	}
}

func TestPublisher_BeginSession_foreignTailIsAtLeastOnce(t *testing.T) {
	t.Parallel()
	for name, tail := range map[string]Message{
		"another slot":       sourced("x", other, 0x900),
		"another timeline":   sourced("x", tl4, 0x300),
		"beyond the WAL end": ours("x", 0x9000001),
		"no source header":   {ID: "x", Key: []byte("k"), Headers: []record.Header{{Key: record.HeaderPosition, Value: []byte(pos(0x900, 0))}}},
		"foreign producer":   {ID: "x", Key: []byte("k")},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fake := newFake(1)
			seed(fake, 1, tail)
			tf := &tailFake{fakeKafka: fake}
			p, logs := dedupePublisher(t, fake, tf, Config{OnSkipped: func(string, []Message) { t.Error("skipped a message") }})
			p.BeginSession(sessionSource)
			acks := newAckLog(t, fake)
			in := []Message{ours("b", 0x200), ours("c", 0x300)}
			if err := p.Run(context.Background(), feed(in, true), acks.acked); err != nil {
				t.Fatal(err)
			}
			_, written := fake.snapshot()
			if got := strings.Join(ids(written[topicPartition{topic: "outbox"}]), ","); got != "x,b,c" {
				t.Errorf("partition holds %s, want x,b,c", got)
			}
			if n := strings.Count(logs.String(), "not trusting the partition's last record"); n != 1 {
				t.Errorf("%d warnings, want 1:\n%s", n, logs)
			}
		})
	}
}

func TestPublisher_Run_withoutSessionReadsNoTail(t *testing.T) {
	t.Parallel()
	fake := newFake(1)
	seed(fake, 1, ours("b", 0x200))
	tf := &tailFake{fakeKafka: fake}
	p, _ := dedupePublisher(t, fake, tf, Config{})
	acks := newAckLog(t, fake)
	if err := p.Run(context.Background(), feed([]Message{ours("b", 0x200)}, true), acks.acked); err != nil {
		t.Fatal(err)
	}
	if _, written := fake.snapshot(); len(written[topicPartition{topic: "outbox"}]) != 2 || tf.readCount() != 0 {
		t.Errorf("without BeginSession: %d tail reads, partition %v; want 0 reads and b sent again",
			tf.readCount(), ids(written[topicPartition{topic: "outbox"}]))
	}
}

// ambiguousKafka writes the first request to a partition and then fails it as err.
type ambiguousKafka struct {
	*fakeKafka
	err  error
	once sync.Once
}

func (a *ambiguousKafka) produce(ctx context.Context, topic string, partition int, msgs []Message) error {
	err := a.fakeKafka.produce(ctx, topic, partition, msgs)
	failed := false
	a.once.Do(func() { failed = true })
	if err == nil && failed {
		return a.err
	}
	return err
}

func TestPublisher_Run_ambiguousFailureSendsOnlyWhatIsMissing(t *testing.T) {
	t.Parallel()
	timeout := fmt.Errorf("kafka.(*Client).Produce: read tcp 127.0.0.1:50000->127.0.0.1:9092: %w", context.DeadlineExceeded)
	for name, tc := range map[string]struct {
		err       error
		wantReads int
	}{
		// The first read, then two after the failure: one, and one to see it settled.
		"timeout":                   {timeout, 3},
		"connection reset":          {fmt.Errorf("kafka.(*Client).Produce: %w", syscall.ECONNRESET), 3},
		"broker timed out":          {&produceError{err: kafka.RequestTimedOut}, 3},
		"not enough replicas after": {&produceError{err: kafka.NotEnoughReplicasAfterAppend}, 3},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fake := newFake(1)
			tf := &tailFake{fakeKafka: fake}
			p, _ := dedupePublisher(t, fake, tf, Config{})
			p.prod = &ambiguousKafka{fakeKafka: fake, err: tc.err}
			p.BeginSession(sessionSource)
			acks := newAckLog(t, fake)
			in := []Message{ours("a", 0x100), ours("b", 0x200)}
			if err := p.Run(context.Background(), feed(in, true), acks.acked); err != nil {
				t.Fatal(err)
			}
			acks.ackedOnce(t, []string{"a", "b"})
			_, written := fake.snapshot()
			if got := strings.Join(ids(written[topicPartition{topic: "outbox"}]), ","); got != "a,b" {
				t.Errorf("partition holds %s, want a,b: the retry duplicated", got)
			}
			if n := tf.readCount(); n != tc.wantReads {
				t.Errorf("%d tail reads, want %d", n, tc.wantReads)
			}
		})
	}
}

// lateKafka fails the first request to a partition with err without writing it, and writes it
// later — as a paused broker that had received it would — once the partition's tail has been
// read again after the failure, or at the next request, whichever comes first.
type lateKafka struct {
	*fakeKafka
	err error

	mu      sync.Mutex
	pending []Message // the request that timed out, not yet written
	failed  bool
}

func (l *lateKafka) produce(ctx context.Context, topic string, partition int, msgs []Message) error {
	l.mu.Lock()
	if !l.failed {
		l.failed, l.pending = true, msgs
		l.mu.Unlock()
		return l.err
	}
	l.mu.Unlock()
	l.land(ctx)
	return l.fakeKafka.produce(ctx, topic, partition, msgs)
}

// land writes the pending request.
func (l *lateKafka) land(ctx context.Context) {
	l.mu.Lock()
	late := l.pending
	l.pending = nil
	l.mu.Unlock()
	if late != nil {
		_ = l.fakeKafka.produce(ctx, "outbox", 0, late)
	}
}

func TestPublisher_Run_ambiguousRequestWrittenAfterTheTailRead(t *testing.T) {
	t.Parallel()
	fake := newFake(1)
	var late *lateKafka
	// Read 0 is the session's first, read 1 the first after the failure: the broker answers it
	// before it appends the request it received earlier.
	tf := &tailFake{fakeKafka: fake, fail: func(n int) error {
		if n == 2 {
			late.land(context.Background())
		}
		return nil
	}}
	p, logs := dedupePublisher(t, fake, tf, Config{})
	late = &lateKafka{fakeKafka: fake, err: fmt.Errorf("kafka.(*Client).Produce: read tcp: %w", context.DeadlineExceeded)}
	p.prod = late
	p.BeginSession(sessionSource)
	acks := newAckLog(t, fake)
	if err := p.Run(context.Background(), feed([]Message{ours("a", 0x100), ours("b", 0x200)}, true), acks.acked); err != nil {
		t.Fatal(err)
	}
	acks.ackedOnce(t, []string{"a", "b"})
	_, written := fake.snapshot()
	if got := strings.Join(ids(written[topicPartition{topic: "outbox"}]), ","); got != "a,b" {
		t.Errorf("partition holds %s, want a,b: the request written late and its retry were both written", got)
	}
	if n := tf.readCount(); n != 4 {
		t.Errorf("%d tail reads, want 4 (first, after the failure, moved, settled)", n)
	}
	if !strings.Contains(logs.String(), `"settled":true`) {
		t.Errorf("no settled tail read logged:\n%s", logs)
	}
}

func TestPublisher_Run_definiteFailureNeedsNoTailRead(t *testing.T) {
	t.Parallel()
	fake := newFake(1)
	fake.fail = func(_ topicPartition, n int, _ []string) error {
		if n == 0 {
			return &produceError{err: kafka.NotLeaderForPartition}
		}
		if n == 1 {
			return errRefused
		}
		return nil
	}
	tf := &tailFake{fakeKafka: fake}
	p, _ := dedupePublisher(t, fake, tf, Config{})
	p.BeginSession(sessionSource)
	acks := newAckLog(t, fake)
	if err := p.Run(context.Background(), feed([]Message{ours("a", 0x100)}, true), acks.acked); err != nil {
		t.Fatal(err)
	}
	if n := tf.readCount(); n != 1 {
		t.Errorf("%d tail reads, want 1: a refused request needs no second one", n)
	}
}

func TestPublisher_BeginSession_tailReadFailures(t *testing.T) {
	t.Parallel()
	fake := newFake(1)
	seed(fake, 1, ours("a", 0x100))
	// Kafka unavailable twice, then the principal may not read the topic.
	tf := &tailFake{fakeKafka: fake, fail: func(n int) error {
		if n < 2 {
			return errRefused
		}
		return kafka.TopicAuthorizationFailed
	}}
	p, logs := dedupePublisher(t, fake, tf, Config{})
	p.BeginSession(sessionSource)
	acks := newAckLog(t, fake)
	if err := p.Run(context.Background(), feed([]Message{ours("a", 0x100), ours("b", 0x200)}, true), acks.acked); err != nil {
		t.Fatal(err)
	}
	if _, written := fake.snapshot(); strings.Join(ids(written[topicPartition{topic: "outbox"}]), ",") != "a,a,b" {
		t.Errorf("partition holds %v, want a,a,b (at-least-once when the tail cannot be read)", ids(written[topicPartition{topic: "outbox"}]))
	}
	if !strings.Contains(logs.String(), "grant this client READ on the topic") {
		t.Errorf("no warning naming the fix:\n%s", logs)
	}
}

func TestPublisher_BeginSession_partitionCountChanged(t *testing.T) {
	t.Parallel()
	fake := newFake(1)
	seed(fake, 2, ours("a", 0x100)) // written when the topic had 2 partitions
	tf := &tailFake{fakeKafka: fake}
	p, logs := dedupePublisher(t, fake, tf, Config{})
	p.BeginSession(sessionSource)
	acks := newAckLog(t, fake)
	if err := p.Run(context.Background(), feed([]Message{ours("a", 0x100)}, true), acks.acked); err != nil {
		t.Fatal(err)
	}
	if _, written := fake.snapshot(); len(written[topicPartition{topic: "outbox"}]) != 2 {
		t.Errorf("a was skipped although its tail was routed for another partition count")
	}
	if !strings.Contains(logs.String(), `partitioned for \"2\" partitions`) {
		t.Errorf("no warning:\n%s", logs)
	}
}

func TestOutcomeUnknown(t *testing.T) {
	t.Parallel()
	for err, want := range map[error]bool{
		errRefused: false,
		&produceError{err: kafka.NotLeaderForPartition}:       false,
		&produceError{err: kafka.RequestTimedOut}:             true,
		fmt.Errorf("x: %w", errNoPartition):                   false,
		fmt.Errorf("x: %w", context.DeadlineExceeded):         true,
		errors.New("kafka.(*Client).Produce: unexpected EOF"): true,
	} {
		if got := outcomeUnknown(err); got != want {
			t.Errorf("outcomeUnknown(%v) = %v, want %v", err, got, want)
		}
	}
}

func TestPublisher_BeginSession_barrierCommitsTheTailBeyondTheHighWatermark(t *testing.T) {
	t.Parallel()
	fake := newFake(1)
	// An earlier session's a is committed; its b and c were appended by the leader but sit
	// beyond the high watermark (a follower died and is still in the ISR): a tail read does not
	// see them, and they commit later (the ISR shrinks).
	seed(fake, 1, ours("a", 0x100))
	b, c := ours("b", 0x200), ours("c", 0x300)
	b.routed, c.routed = 1, 1
	tp := topicPartition{topic: "outbox"}
	tf := &tailFake{fakeKafka: fake, limbo: map[topicPartition][]Message{tp: {b, c}},
		barrierFail: func(n int) error { // the first barrier finds no leader: retried
			if n == 0 {
				return &produceError{err: kafka.NotLeaderForPartition}
			}
			return nil
		}}
	p, _ := dedupePublisher(t, fake, tf, Config{})
	p.BeginSession(sessionSource)
	acks := newAckLog(t, fake)
	in := []Message{ours("b", 0x200), ours("c", 0x300), ours("d", 0x400)}
	if err := p.Run(context.Background(), feed(in, true), acks.acked); err != nil {
		t.Fatal(err)
	}
	acks.ackedOnce(t, []string{"b", "c", "d"})
	tf.mu.Lock()
	tf.commitLimbo(tp) // the ISR shrinks: whatever was still in limbo commits now
	order := strings.Join(tf.order, ",")
	tf.mu.Unlock()
	calls, written := fake.snapshot()
	if got := strings.Join(ids(written[tp]), ","); got != "a,b,c,d" {
		t.Errorf("partition holds %s, want a,b,c,d: the tail beyond the high watermark was sent again", got)
	}
	if len(calls) != 1 || strings.Join(calls[0].ids, ",") != "d" {
		t.Errorf("produce calls = %+v, want one with d", calls)
	}
	if order != "barrier,barrier,read" {
		t.Errorf("barriers and tail reads came as %s, want barrier,barrier,read (a failed barrier retried, then the read)", order)
	}
}
