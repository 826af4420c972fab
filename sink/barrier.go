package sink

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/pgoutbox/pgoutbox/record"
)

// Why a barrier: a partition's high watermark (what a tail read sees) can lag its leader's log.
// A follower that died stays in the ISR until replica.lag.time.max.ms passes, and meanwhile the
// high watermark stands still while the leader goes on appending; a request that timed out or
// whose connection was lost may likewise sit appended but uncommitted. Such records are in
// limbo: they become committed when the ISR shrinks or the follower catches up, or they are
// truncated when the leader changes. A tail read then misses them, the session sends them
// again, and when they commit both copies stay (measured: 175, 9 and 3 duplicates per run of a
// broker-leader kill on a 3-broker cluster, RF 3, min.insync.replicas 2).
//
// A barrier ends the limbo exactly, with no timing: one small control record produced with
// acks=all. Kafka acknowledges it only once the high watermark passes it, and replicas copy a
// log in order, so every record before it is then final — committed, or truncated by a leader
// change before the barrier was appended. The tail read after the acknowledgement sees the
// partition's authoritative end. Its cost is one record per partition at each session's first
// use of the partition and after each produce request whose outcome is unknown; every reader of
// the topic steps over it (record.ControlBarrier).

// barrierMessage is the barrier record: the control header alone (no key, no value, no channel:
// a fan-out server skips it; no position: the tail judgement steps over it).
func (p *Publisher) barrierMessage() Message {
	return Message{
		ID:      "barrier",
		Time:    p.now(),
		Headers: []record.Header{{Key: record.HeaderControl, Value: []byte(record.ControlBarrier)}},
	}
}

// barrier writes a barrier record to tp and returns once Kafka acknowledged it, retrying while
// Kafka is unavailable or the outcome is unknown (a lost barrier is one more control record,
// harmless). ok is false when Kafka refuses it for good: the tail is then read without it, and
// what lies beyond the high watermark may be sent again. The error is ctx's.
func (p *Publisher) barrier(ctx context.Context, tp topicPartition, log zerolog.Logger) (ok bool, err error) {
	rl := newRetryLog(log, "kafka barrier write", p.now)
	for attempt := 1; ; attempt++ {
		err := p.reader.barrier(ctx, tp.topic, tp.partition, p.barrierMessage())
		if err == nil {
			rl.recovered(attempt)
			log.Debug().Msg("barrier record acknowledged: the partition's log before it is final")
			return true, nil
		}
		if ctx.Err() != nil {
			return false, context.Cause(ctx)
		}
		if kind := classify(err); kind != retriable {
			log.Warn().Err(err).Str("class", kind.String()).
				Msg("kafka refused the barrier record: the partition's tail is read without it, so records the brokers have not committed yet may be sent again")
			return false, nil
		}
		if p.cfg.OnError != nil {
			p.cfg.OnError(retriable.String(), err)
		}
		wait := backoff(attempt, p.cfg.BackoffMin, p.cfg.BackoffMax)
		rl.failed(err, attempt, wait)
		if err := sleep(ctx, wait); err != nil {
			return false, context.Cause(ctx)
		}
	}
}

// barrier produces m, the barrier record, to one partition with acks=all.
func (c *kafkaClient) barrier(ctx context.Context, topic string, partition int, m Message) error {
	return c.produce(ctx, topic, partition, []Message{m})
}
