package sink

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/pgoutbox/pgoutbox/record"
)

// SkipAlreadyInKafka is the reason Config.OnSkipped is given for messages that the partition's
// tail proves to be in Kafka already.
const SkipAlreadyInKafka = "already_in_kafka"

// tailReader reads the end of one partition, after a barrier record (barrier.go) made it
// final; kafkaClient implements it, tests fake it.
type tailReader interface {
	barrier(ctx context.Context, topic string, partition int, m Message) error
	readTail(ctx context.Context, topic string, partition int) (tailRead, error)
}

// tails is what a session knows of its partitions' tails. Each partition's tail is read on the
// partition's first use in the session — so topics named by a topic column are covered as they
// appear — and again after a produce request to it failed with an unknown outcome.
type tails struct {
	mu   sync.Mutex
	src  record.Source
	byTP map[topicPartition]*tailState
}

type tailState struct {
	mu      sync.Mutex // held while the tail is read: one read per partition at a time
	read    bool       // the tail was read in this session and nothing made it stale since
	settle  bool       // a request's outcome is unknown: the next read must settle (readTail)
	upTo    string     // messages at or below this position are in Kafka; "" = none known
	routed  int        // the partition count they were routed with
	sentMax uint64     // the highest commit LSN handed to a produce request in this session
}

// BeginSession starts a streaming session of src: it forgets every partition's tail, so that
// each is read again on its first use. Call it before Run, for every session (the server's
// timeline and WAL position may have changed). Without it, or with the zero Source, every
// message is sent (at-least-once). It must not be called while Run runs.
func (p *Publisher) BeginSession(src record.Source) {
	p.tails.mu.Lock()
	defer p.tails.mu.Unlock()
	p.tails.src = src
	p.tails.byTP = make(map[topicPartition]*tailState)
}

func (t *tails) state(tp topicPartition) (record.Source, *tailState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byTP == nil {
		t.byTP = make(map[topicPartition]*tailState)
	}
	st := t.byTP[tp]
	if st == nil {
		st = &tailState{}
		t.byTP[tp] = st
	}
	return t.src, st
}

// unsent returns the messages of msgs (one partition's, in order) that are not known to be in
// Kafka, reading the partition's tail first when the session does not know it. It reports the
// others to Config.OnSkipped; the caller acknowledges them with the rest, so that skipped
// messages take the same acknowledgement path as sent ones. The error is ctx's.
func (p *Publisher) unsent(ctx context.Context, tp topicPartition, msgs []Message, log zerolog.Logger) ([]Message, error) {
	src, st := p.tails.state(tp)
	if !src.Known() || len(msgs) == 0 {
		return msgs, nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.read {
		if err := p.readTail(ctx, tp, src, st, msgs[0].routed, log); err != nil {
			return nil, err
		}
	}
	keep := msgs
	if st.upTo != "" {
		// A session's messages come in commit order, so the known ones are a prefix; but stop at
		// the first message that is not provably in Kafka, never skip past it.
		i := 0
		for i < len(msgs) && st.known(&msgs[i]) {
			i++
		}
		keep = msgs[i:]
		if i > 0 {
			log.Debug().Int("skipped", i).Str("up_to", st.upTo).Str("first_id", msgs[0].ID).
				Msg("messages already in kafka (the partition's tail has them): acknowledged without sending")
			if p.cfg.OnSkipped != nil {
				p.cfg.OnSkipped(SkipAlreadyInKafka, msgs[:i])
			}
		}
	}
	for i := range keep {
		pos, _ := record.Lookup(keep[i].Headers, record.HeaderPosition)
		if p, err := record.ParseExactPosition(pos); err == nil && uint64(p.LSN) > st.sentMax {
			st.sentMax = uint64(p.LSN)
		}
	}
	return keep, nil
}

// known reports whether the tail proves m to be in Kafka.
func (st *tailState) known(m *Message) bool {
	if record.IsOutOfOrder(m.Headers) {
		return false // the sink's dead-letter copy: never ordered with the rest, never skipped
	}
	pos, ok := record.Lookup(m.Headers, record.HeaderPosition)
	if _, err := record.ParseExactPosition(pos); !ok || err != nil {
		return false
	}
	return m.routed == st.routed && pos <= st.upTo
}

// DefaultTailSettle is how long the tail must stay unchanged, after a produce request whose
// outcome is unknown, before the sink trusts it (see readTail).
const DefaultTailSettle = time.Second

// maxSettleReads bounds the reads of a tail that keeps moving (another stream writing the
// topic): the last one is used then. A tail read too early can only cause duplicates, never a
// wrong skip: every request was sent after all of the partition's earlier messages were in
// Kafka, so whichever of our records a read finds, everything below it is there.
const maxSettleReads = 5

// readTail writes a barrier record to the partition (barrier.go), then reads and judges the
// partition's tail, retrying while Kafka is unavailable. When the tail cannot be read for good
// (no READ permission on the topic...), the partition is sent at-least-once.
//
// The barrier makes final what the leader had appended (the high watermark may lag it: a dead
// follower still in the ISR, a request whose acknowledgement was lost). It cannot order a
// request the broker has not appended yet: that is what the settling below is for. After a request whose outcome is unknown, the tail is read until it stays the same for
// tailSettle. A request that timed out may still sit, received but not yet handled, in the
// broker (one that paused: a long GC, a frozen VM or process), and Kafka orders requests only
// within one connection: the tail read goes over another one, and the broker may answer it
// before it appends the old request. Without the wait, the retry and the old request would both
// be written (measured: a broker frozen past the request timeout and thawed wrote 2,264
// duplicates of 16,456 rows). The first read that succeeds shows the broker answering again;
// what it had received before is handled within moments of that, so an end offset that does
// not move for tailSettle is taken as final.
func (p *Publisher) readTail(ctx context.Context, tp topicPartition, src record.Source, st *tailState, routed int, log zerolog.Logger) error {
	// The barrier first: the records before it are final, so the read after it sees them all.
	if _, err := p.barrier(ctx, tp, log); err != nil {
		return err
	}
	r, ok, err := p.readTailRetrying(ctx, tp, log)
	for n := 1; err == nil && ok && st.settle && n <= maxSettleReads; n++ {
		if err := sleep(ctx, p.tailSettle); err != nil {
			return context.Cause(ctx)
		}
		var again tailRead
		again, ok, err = p.readTailRetrying(ctx, tp, log)
		if ok && err == nil {
			settled := again.end == r.end
			log.Debug().Int64("end_offset", again.end).Int64("was", r.end).Bool("settled", settled).
				Stringer("after", p.tailSettle).Msg("partition tail read again after a request whose outcome is unknown")
			r = again
			if settled {
				break
			}
		}
	}
	if err != nil {
		return err
	}
	st.settle = false
	if !ok {
		st.read, st.upTo = true, ""
		return nil
	}
	v := judgeTail(src, max(uint64(src.WALEnd), st.sentMax), routed, r)
	st.read, st.upTo, st.routed = true, v.upTo, routed
	switch {
	case v.distrust != "":
		log.Warn().Str("reason", v.distrust).Int64("end_offset", r.end).
			Msg("not trusting the partition's last record: its messages since the slot's confirmed position are sent again (at-least-once; consumers de-duplicate by pgoutbox-position)")
	case v.upTo != "":
		log.Debug().Str("up_to", v.upTo).Int64("offset", v.offset).Msg("partition tail read: messages up to this position are in kafka")
	default:
		log.Debug().Int64("end_offset", r.end).Msg("partition tail read: nothing of this stream there")
	}
	return nil
}

// readTailRetrying reads the partition's tail, retrying while Kafka is unavailable. ok is false
// when the tail cannot be read for good (no READ permission on the topic...): the partition is
// then sent at-least-once. The error is ctx's.
func (p *Publisher) readTailRetrying(ctx context.Context, tp topicPartition, log zerolog.Logger) (r tailRead, ok bool, err error) {
	rl := newRetryLog(log, "kafka tail read", p.now)
	for attempt := 1; ; attempt++ {
		r, err := p.reader.readTail(ctx, tp.topic, tp.partition)
		if err == nil {
			rl.recovered(attempt)
			return r, true, nil
		}
		if ctx.Err() != nil {
			return tailRead{}, false, context.Cause(ctx)
		}
		if classify(err) != retriable {
			log.Warn().Err(err).Msg("cannot read the partition's last record: its messages are sent at-least-once; " +
				"for exactly-once grant this client READ on the topic")
			return tailRead{}, false, nil
		}
		if p.cfg.OnError != nil {
			p.cfg.OnError(retriable.String(), err) // Kafka unavailable: as a failed produce would say
		}
		wait := backoff(attempt, p.cfg.BackoffMin, p.cfg.BackoffMax)
		rl.failed(err, attempt, wait)
		if err := sleep(ctx, wait); err != nil {
			return tailRead{}, false, context.Cause(ctx)
		}
	}
}

// produceFailed is told of every failed produce request to tp: when the request may have been
// written although it failed, the partition's tail is read again before the next attempt, and
// only what is missing is sent again.
func (p *Publisher) produceFailed(tp topicPartition, err error) {
	if !outcomeUnknown(err) {
		return
	}
	_, st := p.tails.state(tp)
	st.mu.Lock()
	st.read, st.settle = false, true
	st.mu.Unlock()
}

// outcomeUnknown reports whether a failed produce request may nevertheless have been written.
// A request that was never sent (no route to the partition, no connection) or that the broker
// answered with an error code was not written — except for the codes that the leader sends
// after appending: the replicas did not confirm in time, or too few of them are in sync.
// Anything else (a timeout, a connection lost mid-request) may have been written.
func outcomeUnknown(err error) bool {
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		switch kerr {
		case kafka.RequestTimedOut, kafka.NotEnoughReplicasAfterAppend, kafka.Unknown, kafka.KafkaStorageError:
			return true
		}
		return false
	}
	if errors.Is(err, errNoTopic) || errors.Is(err, errNoPartition) {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" || errors.Is(err, syscall.ECONNREFUSED) {
		return false // never connected: nothing was sent
	}
	return true
}

// routedWith records the partition count that m's partition was chosen with: a tail only
// speaks for messages routed like the records it comes from.
func routedWith(m Message, partitions int) Message {
	m.routed = partitions
	return m
}

// partitionsHeader is the value of HeaderPartitions for count n.
func partitionsHeader(n int) []byte { return strconv.AppendInt(nil, int64(n), 10) }
