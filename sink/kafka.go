package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"github.com/pgoutbox/pgoutbox/record"
)

// kafka-go's client-side routing errors: its metadata cache does not know the topic, the
// partition or its leader. They are returned wrapped, also when no broker was ever reached.
var (
	errNoTopic     = protocol.ErrNoTopic
	errNoPartition = protocol.ErrNoPartition
)

// kafkaClient is the one place that talks to Kafka: kafka-go's Client over one Transport.
type kafkaClient struct {
	client      *kafka.Client
	transport   *kafka.Transport
	brokers     string
	compression kafka.Compression
	setupTopics map[string]bool // the topics `pgoutbox setup` creates: Config.Topic and DeadLetterTopic
}

func newKafkaClient(cfg Config) (*kafkaClient, error) {
	compression, err := parseCompression(cfg.Compression)
	if err != nil {
		return nil, err
	}
	tlsConfig, err := cfg.Security.tlsConfig()
	if err != nil {
		return nil, err
	}
	mechanism, err := cfg.Security.mechanism()
	if err != nil {
		return nil, err
	}
	transport := &kafka.Transport{
		DialTimeout: cfg.DialTimeout,
		MetadataTTL: cfg.MetadataTTL,
		ClientID:    cfg.ClientID,
		TLS:         tlsConfig,
		SASL:        mechanism,
	}
	return &kafkaClient{
		client: &kafka.Client{
			Addr:      kafka.TCP(cfg.Brokers...),
			Timeout:   cfg.RequestTimeout,
			Transport: transport,
		},
		transport:   transport,
		brokers:     strings.Join(cfg.Brokers, ","),
		compression: compression,
		setupTopics: map[string]bool{cfg.Topic: true, cfg.DeadLetterTopic: cfg.DeadLetterTopic != ""},
	}, nil
}

// produce writes msgs, in order, to one partition as one record batch, and returns once all
// in-sync replicas have them (acks=all), or the error: the one of Client.Produce (network,
// timeout, kafka-go's routing errors) or the broker's, as a *produceError.
func (c *kafkaClient) produce(ctx context.Context, topic string, partition int, msgs []Message) error {
	// Records are read once when encoded: build them again for every attempt.
	records := make([]kafka.Record, len(msgs))
	var routed []byte // record.HeaderPartitions, shared by the records routed with the same count
	prev := 0         // the previous record's count
	for i := range msgs {
		m := &msgs[i]
		if m.routed > 0 && (routed == nil || prev != m.routed) {
			routed = partitionsHeader(m.routed)
		}
		prev = m.routed
		records[i] = kafka.Record{
			Time:    m.Time,
			Key:     kafka.NewBytes(m.Key),
			Value:   kafka.NewBytes(m.Value),
			Headers: recordHeaders(m.Headers, routed, m.routed > 0),
		}
	}
	res, err := c.client.Produce(ctx, &kafka.ProduceRequest{
		Topic:        topic,
		Partition:    partition,
		RequiredAcks: kafka.RequireAll,
		Records:      kafka.NewRecordReader(records...),
		Compression:  c.compression,
	})
	switch {
	case err != nil:
		return err
	case res == nil: // only with RequireNone, never here
		return errors.New("kafka.(*Client).Produce: no response")
	case res.Error != nil:
		return &produceError{err: res.Error, records: res.RecordErrors}
	case len(res.RecordErrors) > 0:
		return &produceError{err: kafka.InvalidRecord, records: res.RecordErrors}
	}
	return nil
}

// recordHeaders converts hs, and adds record.HeaderPartitions with value routed when withRouted.
func recordHeaders(hs []record.Header, routed []byte, withRouted bool) []kafka.Header {
	if len(hs) == 0 && !withRouted {
		return nil
	}
	out := make([]kafka.Header, len(hs), len(hs)+1)
	for i, h := range hs {
		out[i] = kafka.Header{Key: h.Key, Value: h.Value}
	}
	if withRouted {
		out = append(out, kafka.Header{Key: record.HeaderPartitions, Value: routed})
	}
	return out
}

// partitionCount reads the topic's partition count from the metadata that the Transport
// caches (refreshed every MetadataTTL, served without a round trip).
func (c *kafkaClient) partitionCount(ctx context.Context, topic string) (int, error) {
	res, err := c.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, c.requestError(fmt.Sprintf("read metadata of topic %q", topic), err)
	}
	for _, t := range res.Topics {
		if t.Name != topic {
			continue
		}
		switch {
		case errors.Is(t.Error, kafka.UnknownTopicOrPartition):
			return 0, c.topicNotFound(topic)
		case t.Error != nil:
			return 0, fmt.Errorf("read metadata of topic %q: %w", topic, t.Error)
		case len(t.Partitions) == 0:
			return 0, fmt.Errorf("read metadata of topic %q: %w (no partitions yet)", topic, kafka.LeaderNotAvailable)
		}
		return len(t.Partitions), nil
	}
	return 0, c.topicNotFound(topic)
}

// topicNotFound is ErrTopicNotFound with the fix: `pgoutbox setup --partitions N` creates the
// configured topic and its dead-letter topic, but not a topic that a row's topic column names.
func (c *kafkaClient) topicNotFound(topic string) error {
	if c.setupTopics[topic] {
		return fmt.Errorf("%w: %q; create it with `pgoutbox setup --partitions N`", ErrTopicNotFound, topic)
	}
	return fmt.Errorf("%w: %q (named by a row's topic column; `pgoutbox setup` creates only --topic and the dead-letter topic): "+
		"create it in Kafka with the partition count of the others, or correct the rows' topic column", ErrTopicNotFound, topic)
}

// requestError wraps the error of an admin request that got no answer from the cluster. It
// matches ErrUnreachable when no broker answered: a network error, or kafka-go's
// BROKER_NOT_AVAILABLE, which it returns when it never obtained the cluster's metadata.
func (c *kafkaClient) requestError(op string, err error) error {
	var kerr kafka.Error
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", op, err)
	case errors.As(err, &kerr) && kerr != kafka.BrokerNotAvailable:
		return fmt.Errorf("%s: %w", op, err)
	case tlsFailure(err):
		return fmt.Errorf("%s: %w at %s: %w; %s", op, ErrUnreachable, c.brokers, err, tlsHint)
	}
	return fmt.Errorf("%s: %w at %s: %w; check the broker addresses and that Kafka is running", op, ErrUnreachable, c.brokers, err)
}

// createTopic asks the controller to create the topic; it reports false when it exists.
func (c *kafkaClient) createTopic(ctx context.Context, topic string, partitions, replicationFactor int, configs map[string]string) (bool, error) {
	entries := make([]kafka.ConfigEntry, 0, len(configs))
	for k, v := range configs {
		entries = append(entries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
	}
	res, err := c.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic:             topic,
		NumPartitions:     partitions,
		ReplicationFactor: replicationFactor,
		ConfigEntries:     entries,
	}}})
	if err != nil {
		return false, c.requestError(fmt.Sprintf("create topic %q", topic), err)
	}
	switch err := res.Errors[topic]; {
	case err == nil:
		return true, nil
	case errors.Is(err, kafka.TopicAlreadyExists):
		return false, nil
	case errors.Is(err, kafka.InvalidReplicationFactor):
		return false, fmt.Errorf("create topic %q: %w; the replication factor cannot exceed the number of brokers", topic, err)
	default:
		return false, fmt.Errorf("create topic %q: %w", topic, err)
	}
}
