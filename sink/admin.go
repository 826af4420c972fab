package sink

import (
	"context"
	"fmt"
)

// Partitions returns the topic's partition count. It fails with ErrTopicNotFound when the
// topic does not exist and with ErrUnreachable when no broker answers. The answer comes from
// cluster metadata cached for up to MetadataTTL: a topic created by someone else may take that
// long to appear, and a broker that went away after answering once is not noticed here.
func (p *Publisher) Partitions(ctx context.Context, topic string) (int, error) {
	return p.kafka.partitionCount(ctx, topic)
}

// CreateTopic creates the topic with the given partition count and replication factor. It is
// idempotent: when the topic exists it returns false and no error, unless the topic has
// another partition count, which it names in an error matching ErrPartitionMismatch (the topic
// is left unchanged).
func (p *Publisher) CreateTopic(ctx context.Context, topic string, partitions, replicationFactor int) (bool, error) {
	return p.CreateTopicWithConfig(ctx, topic, partitions, replicationFactor, nil)
}

// CreateTopicWithConfig is CreateTopic with topic-level settings for a new topic, such as
// max.message.bytes. An existing topic's settings are not changed.
func (p *Publisher) CreateTopicWithConfig(ctx context.Context, topic string, partitions, replicationFactor int, configs map[string]string) (bool, error) {
	if err := CheckTopicName(topic); err != nil {
		return false, fmt.Errorf("create topic: %w", err)
	}
	if partitions < 1 || replicationFactor < 1 {
		return false, fmt.Errorf("create topic %q: partitions (%d) and replication factor (%d) must be at least 1",
			topic, partitions, replicationFactor)
	}
	created, err := p.kafka.createTopic(ctx, topic, partitions, replicationFactor, configs)
	if err != nil || created {
		if created {
			p.log.Info().Str("topic", topic).Int("partitions", partitions).
				Int("replication_factor", replicationFactor).Msg("topic created")
		}
		return created, err
	}
	n, err := p.kafka.partitionCount(ctx, topic)
	if err != nil {
		return false, fmt.Errorf("create topic %q: it exists, but: %w", topic, err)
	}
	if n != partitions {
		return false, fmt.Errorf("create topic %q: %w: it has %d partitions, not %d; "+
			"adding partitions moves keys to other partitions, so it is not done here",
			topic, ErrPartitionMismatch, n, partitions)
	}
	return false, nil
}
