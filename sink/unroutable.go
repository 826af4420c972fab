package sink

import (
	"context"
	"fmt"
)

// unroutableError means a message's own topic cannot be used: its name is illegal, or it does
// not exist after Config.MissingTopicWait. One such row must not stall every channel: the
// message is set aside (the dead-letter topic) or Run stops, naming it.
type unroutableError struct {
	topic string
	err   error
}

func (e *unroutableError) Error() string {
	return fmt.Sprintf("topic %q cannot be used: %v", e.topic, e.err)
}
func (e *unroutableError) Unwrap() error { return e.err }

// partitionsFor returns the partition count of m's topic, waiting for its metadata. An illegal
// name is unroutable at once; a topic named by the message itself that stays missing is
// unroutable after MissingTopicWait. The configured topics are waited for without end.
func (p *Publisher) partitionsFor(ctx context.Context, m Message) (int, error) {
	topic := topicOf(m, p.cfg.Topic)
	if err := CheckTopicName(topic); err != nil {
		return 0, &unroutableError{topic: topic, err: err}
	}
	limit := p.cfg.MissingTopicWait
	if topic == p.cfg.Topic || topic == p.cfg.DeadLetterTopic {
		limit = 0
	}
	return p.waitPartitionCount(ctx, topic, limit)
}

// setAside handles a message whose topic cannot be used, as Kafka's refusal of a message is
// handled: to the dead-letter topic when there is one (then it counts as delivered), else a
// *RejectedError that stops Run.
func (p *Publisher) setAside(ctx context.Context, m Message, reason *unroutableError) error {
	tp := topicPartition{topic: reason.topic, partition: -1}
	if p.cfg.DeadLetterTopic != "" && reason.topic != p.cfg.DeadLetterTopic {
		return p.deadLetter(ctx, tp, m, reason)
	}
	rerr := newRejected(tp, []Message{m}, reason)
	p.log.Error().Err(rerr).Str("id", m.ID).Msg("a message's topic cannot be used")
	return rerr
}

// topicWait tells Config.OnTopicWait when publishing waits for a topic's metadata: from the
// first failed attempt until the wait ends.
func (p *Publisher) topicWait(topic string, attempt int, waiting bool) {
	if p.cfg.OnTopicWait == nil || (!waiting && attempt == 1) {
		return
	}
	if waiting && attempt > 1 {
		return // already told
	}
	p.cfg.OnTopicWait(topic, waiting)
}
