// Package sink publishes messages to Kafka in order, with acks=all, and never skips a failed
// write.
//
// The Publisher partitions each message by key with the Java client's murmur2 and queues it on
// its partition. Each partition has at most one produce request in flight: when Kafka
// acknowledges it, the partition's next request carries whatever queued meanwhile (up to
// Config.MaxBatchMessages messages and Config.MaxRequestBytes), so requests fill up while Kafka
// is behind and stay small, and fast, while it keeps up. Partitions never wait for each other. A
// failed request is re-sent, the same messages in the same order, until Kafka acknowledges it,
// and only then does the partition's next request go: nothing newer ever reaches a partition
// before an older message of that partition, so a failure never leaves a gap that later writes
// skip.
//
// kafka-go's Writer is not used: its batch timer adds latency, and it keeps sending a
// partition's later batches after one failed for good (see docs/architecture.md, "Sink: keeping order with kafka-go").
package sink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// producer writes messages, in order, as one request to one partition; nil means that all
// in-sync replicas have them.
type producer interface {
	produce(ctx context.Context, topic string, partition int, msgs []Message) error
}

// metadata reads a topic's partition count.
type metadata interface {
	partitionCount(ctx context.Context, topic string) (int, error)
}

// Publisher publishes messages to Kafka. Create it with New; Run publishes; Close releases
// its connections.
type Publisher struct {
	cfg   Config
	log   zerolog.Logger
	kafka *kafkaClient
	prod  producer
	meta  metadata
	now   func() time.Time

	tails      tails // this session's partition tails (dedupe.go)
	reader     tailReader
	tailSettle time.Duration // DefaultTailSettle; tests shorten it

	mu     sync.Mutex
	counts map[string]partitionCount // topic -> cached partition count

	closeOnce sync.Once
}

type partitionCount struct {
	n    int
	read time.Time
}

// New validates cfg and returns a Publisher. It does not connect: the first request does.
func New(cfg Config, log zerolog.Logger) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka config: %w", err)
	}
	kc, err := newKafkaClient(cfg)
	if err != nil {
		return nil, err
	}
	return &Publisher{
		cfg:    cfg,
		log:    log.With().Str("component", "sink").Logger(),
		kafka:  kc,
		prod:   kc,
		meta:   kc,
		reader: kc,
		now:    time.Now,

		tailSettle: DefaultTailSettle,
		counts:     make(map[string]partitionCount),
	}, nil
}

// Run publishes the messages received from in and calls acked with each produce request's
// messages once Kafka has acknowledged them (from Run's goroutine, never concurrently; the calls
// of different partitions come in any order). A message is handed to acked exactly once, and
// only after Kafka acknowledged it.
//
// Run retries failed requests forever while the failure may pass (Kafka down, leader
// elections, timeouts...): an outage makes it wait, never exit, and never ack. It returns
//   - nil when in is closed and everything taken from it was acknowledged (graceful drain);
//   - ctx.Err() when ctx is done; what was not acknowledged by then is not, and never will be;
//   - a *RejectedError (errors.Is ErrRejected) when Kafka refused a message for good;
//   - an error matching ErrFatal when Kafka refused the client (authorization, version...).
//
// On such an error, the requests in flight are stopped, and those that Kafka acknowledged
// meanwhile are handed to acked before Run returns. Run must not be called concurrently.
func (p *Publisher) Run(ctx context.Context, in <-chan Message, acked func([]Message)) error {
	p.log.Info().Strs("brokers", p.cfg.Brokers).Str("topic", p.cfg.Topic).
		Str("compression", p.cfg.Compression).Msg("publishing to kafka with acks=all")
	pl := p.newPipeline(ctx, acked)
	defer pl.stop(nil)
	if err := pl.run(ctx, in); err != nil {
		return pl.finish(ctx, err)
	}
	p.log.Info().Msg("input closed and everything acknowledged")
	return nil
}

// freshPartitionCount returns the topic's cached partition count unless it is older than
// MetadataTTL.
func (p *Publisher) freshPartitionCount(topic string) (int, bool) {
	p.mu.Lock()
	c, ok := p.counts[topic]
	p.mu.Unlock()
	if !ok || p.now().Sub(c.read) >= p.cfg.MetadataTTL {
		return 0, false
	}
	return c.n, true
}

// cachedPartitionCount returns the topic's partition count, read again after MetadataTTL
// or after a request failed in a way that suggests the count is stale.
func (p *Publisher) cachedPartitionCount(ctx context.Context, topic string) (int, error) {
	if n, ok := p.freshPartitionCount(topic); ok {
		return n, nil
	}
	p.mu.Lock()
	c, ok := p.counts[topic]
	p.mu.Unlock()
	n, err := p.meta.partitionCount(ctx, topic)
	if err != nil {
		p.forgetPartitionCount(topic)
		return 0, err
	}
	if ok && c.n != n {
		p.log.Warn().Str("topic", topic).Int("was", c.n).Int("now", n).
			Msg("partition count changed: keys now map to other partitions, and the order between a key's older and newer messages holds only within each partition")
	}
	p.mu.Lock()
	p.counts[topic] = partitionCount{n: n, read: p.now()}
	p.mu.Unlock()
	return n, nil
}

func (p *Publisher) forgetPartitionCount(topic string) {
	p.mu.Lock()
	delete(p.counts, topic)
	p.mu.Unlock()
}

// waitPartitionCount retries cachedPartitionCount until it succeeds, ctx is done or the
// error is fatal. With missingLimit > 0, a topic that still does not exist after that long is
// an *unroutableError.
func (p *Publisher) waitPartitionCount(ctx context.Context, topic string, missingLimit time.Duration) (int, error) {
	rl := newRetryLog(p.log.With().Str("topic", topic).Logger(), "read topic metadata", p.now)
	start := p.now()
	for attempt := 1; ; attempt++ {
		n, err := p.cachedPartitionCount(ctx, topic)
		if err == nil {
			rl.recovered(attempt)
			p.topicWait(topic, attempt, false)
			return n, nil
		}
		if ctx.Err() != nil {
			p.topicWait(topic, attempt, false)
			return 0, ctx.Err()
		}
		if classify(err) != retriable {
			p.topicWait(topic, attempt, false)
			return 0, fmt.Errorf("read metadata of topic %q: %w: %w; %s", topic, ErrFatal, err, fatalHint(err))
		}
		if missingLimit > 0 && (errors.Is(err, ErrTopicNotFound) || staleMetadata(err)) && p.now().Sub(start) >= missingLimit {
			p.topicWait(topic, attempt, false)
			return 0, &unroutableError{topic: topic, err: fmt.Errorf("topic does not exist after waiting %s for it: %w", missingLimit, err)}
		}
		p.topicWait(topic, attempt, true)
		wait := backoff(attempt, p.cfg.BackoffMin, p.cfg.BackoffMax)
		rl.failed(err, attempt, wait)
		if err := sleep(ctx, wait); err != nil {
			return 0, err
		}
	}
}

// Close closes the idle connections to the brokers and stops the metadata refresh. It is
// idempotent and always returns nil.
func (p *Publisher) Close() error {
	p.closeOnce.Do(p.kafka.transport.CloseIdleConnections)
	return nil
}
