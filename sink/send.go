package sink

import (
	"context"

	"github.com/pgoutbox/pgoutbox/record"
)

// sendBatch sends msgs to one partition as one request, and re-sends the same request until
// Kafka acknowledges it, ctx is done, or Kafka refuses it for good. A batch that the broker
// finds too large is split in two halves, sent one after the other, so order holds.
func (p *Publisher) sendBatch(ctx context.Context, tp topicPartition, msgs []Message) error {
	log := p.log.With().Str("topic", tp.topic).Int("partition", tp.partition).Logger()
	rl := newRetryLog(log, "kafka write", p.now)
	for attempt := 1; ; attempt++ {
		// Skip what the partition's tail proves to be in Kafka (dedupe.go). This msgs shadows the
		// whole batch on purpose: each attempt filters it again, as the tail may have been read
		// again after a failure whose outcome was unknown.
		msgs, err := p.unsent(ctx, tp, msgs, log)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			rl.recovered(attempt)
			return nil
		}
		err = p.prod.produce(ctx, tp.topic, tp.partition, msgs)
		if err == nil {
			rl.recovered(attempt)
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		kind := classify(err)
		if p.cfg.OnError != nil {
			p.cfg.OnError(kind.String(), err)
		}
		switch kind {
		case rejected:
			// Split a refused batch to find the refused message(s): a batch can be too large as
			// a whole, and a dead-letter topic takes only the message that is bad.
			if len(msgs) > 1 && (tooLarge(err) || p.cfg.DeadLetterTopic != "") {
				half := len(msgs) / 2
				log.Warn().Err(err).Int("messages", len(msgs)).Str("first_id", msgs[0].ID).
					Msg("kafka refused the batch; sending it again in two halves, in order " +
						"(if it was too large, lower the max request bytes below the topic's max.message.bytes)")
				if err := p.sendBatch(ctx, tp, msgs[:half]); err != nil {
					return err
				}
				return p.sendBatch(ctx, tp, msgs[half:])
			}
			if p.cfg.DeadLetterTopic != "" && tp.topic != p.cfg.DeadLetterTopic {
				return p.deadLetter(ctx, tp, msgs[0], err)
			}
			rerr := newRejected(tp, msgs, err)
			log.Error().Err(rerr).Str("id", rerr.ID).Uint64("token", rerr.Token).Msg("kafka rejected a message")
			return rerr
		case fatal:
			ferr := newFatal(tp, err)
			log.Error().Err(ferr).Msg("kafka refused the client")
			return ferr
		}
		if staleMetadata(err) {
			p.forgetPartitionCount(tp.topic)
		}
		p.produceFailed(tp, err)
		wait := backoff(attempt, p.cfg.BackoffMin, p.cfg.BackoffMax)
		rl.failed(err, attempt, wait)
		if sleep(ctx, wait) != nil {
			return context.Cause(ctx)
		}
	}
}

// deadLetter publishes a message that Kafka refused for good to the dead-letter topic, with
// the reason, and returns once Kafka acknowledged it there: only then does the original count as
// delivered, so a row is never dropped silently.
func (p *Publisher) deadLetter(ctx context.Context, tp topicPartition, m Message, reason error) error {
	dl := p.deadLetterRecord(m, record.StageKafka, reason.Error()+"; "+rejectHint(reason), tp.topic)
	n, err := p.waitPartitionCount(ctx, dl.Topic, 0)
	if err != nil {
		return err
	}
	var h murmur2
	dtp := topicPartition{topic: dl.Topic, partition: h.partition(dl.Key, n)}
	dl.routed = n
	p.log.Error().Err(reason).Str("topic", tp.topic).Int("partition", tp.partition).Str("id", m.ID).
		Str("dead_letter_topic", dl.Topic).Msg("kafka rejected a message; sending it to the dead-letter topic")
	if err := p.sendBatch(ctx, dtp, []Message{dl}); err != nil {
		return err
	}
	p.deadLettered(dl, record.StageKafka)
	return nil
}

// deadLetterRecord returns the dead-letter record of m (see record.DeadLetter), for the
// dead-letter topic.
func (p *Publisher) deadLetterRecord(m Message, stage, reason, originalTopic string) Message {
	dl := m
	dl.Topic = p.cfg.DeadLetterTopic
	dl.Headers = record.DeadLetter(m.Headers, stage, reason, originalTopic)
	dl.DeadLetter = ""
	return dl
}

// deadLettered counts a dead-letter record: the one place that does (Config.OnDeadLetter).
func (p *Publisher) deadLettered(dl Message, stage string) {
	if p.cfg.OnDeadLetter != nil {
		p.cfg.OnDeadLetter(dl, stage)
	}
}
