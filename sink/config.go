package sink

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Defaults applied by Config.Validate to fields left at their zero value.
const (
	DefaultClientID         = "pgoutbox"
	DefaultMaxBatchMessages = 10000
	DefaultMaxRequestBytes  = 1_000_000
	DefaultRequestTimeout   = 10 * time.Second
	DefaultMinBackoff       = 100 * time.Millisecond
	DefaultMaxBackoff       = 5 * time.Second
	DefaultDialTimeout      = 5 * time.Second
	DefaultCompression      = "none"
	DefaultMetadataTTL      = 5 * time.Second
	DefaultMissingTopicWait = time.Minute
	// DefaultLinger is the command's --kafka-linger (a Config left at zero does not linger).
	DefaultLinger = 5 * time.Millisecond
)

// lingerBehind is how old a partition's oldest queued row must be (since its commit) for its
// request to linger: a stream that old is catching up, and bigger requests help it catch up; a
// live stream never waits.
const lingerBehind = 100 * time.Millisecond

// Config configures a Publisher. Call Validate (New does) to fill the defaults in.
//
// Some settings are not configurable because the relay's guarantees depend on them: every
// produce request asks for acks=all (kafka.RequireAll; kafka-go's Writer defaults to none), keys
// are partitioned with the Java client's murmur2 (kafka-go defaults to round-robin), and a
// partition never has more than one request in flight.
type Config struct {
	// Brokers lists the bootstrap brokers as host:port. Required, no default.
	Brokers []string

	// Topic is the topic of every Message whose Topic is "". Required, no default.
	Topic string

	// ClientID is the client id sent to the brokers (it shows in their logs and quotas).
	// Default "pgoutbox".
	ClientID string

	// MaxBatchMessages caps the messages the Publisher holds — taken from Run's input and not
	// yet acknowledged, all partitions together — and so the messages of one produce request.
	// Default 10000.
	MaxBatchMessages int

	// MaxRequestBytes caps the estimated size of the record batch of one produce request (one
	// partition). Keep it below the topic's max.message.bytes (broker default 1048588): the broker
	// rejects larger batches. A single message larger than this is still sent, alone.
	// Default 1000000.
	MaxRequestBytes int

	// RequestTimeout bounds one produce or admin request; half of it is handed to the broker
	// as the produce timeout (how long it may wait for the in-sync replicas). Default 10s.
	RequestTimeout time.Duration

	// BackoffMin is the first wait before re-sending a failed request; each further failure
	// doubles it, up to BackoffMax, with jitter. Default 100ms.
	BackoffMin time.Duration

	// BackoffMax is the longest wait between two attempts of one request. Default 5s.
	BackoffMax time.Duration

	// DialTimeout bounds establishing a connection to a broker (TLS and SASL included).
	// Default 5s.
	DialTimeout time.Duration

	// Compression of record batches: "none", "gzip", "snappy", "lz4" or "zstd".
	// Default "none".
	Compression string

	// Linger is how long a partition's request may wait for more rows while the stream is
	// behind — the partition's oldest queued row committed more than 100 ms ago — unless it is a
	// quarter full already. Catching up a backlog, fewer and larger requests cost Kafka less CPU
	// per row (the relay, PostgreSQL and Kafka often share cores); rows of a live stream are sent
	// at once. A row without a commit time never lingers. Default 0: no linger (the command's
	// default is DefaultLinger).
	Linger time.Duration

	// MetadataTTL is how long cluster metadata (partition leaders, partition counts) is
	// cached before it is read again. Default 5s.
	MetadataTTL time.Duration

	// MissingTopicWait bounds how long a message whose own Topic (a row's topic column) names
	// a topic that does not exist waits for it to be created; then the message is unroutable,
	// like one with an illegal topic name (refused at once): it goes to DeadLetterTopic, or Run
	// stops with a *RejectedError. Config.Topic and DeadLetterTopic are waited for without end
	// (they were checked at start-up: a deletion is an outage, not a bad row). Default 1m.
	MissingTopicWait time.Duration

	// OnTopicWait, when set, is called with waiting=true when publishing starts waiting for a
	// topic's metadata (the topic is missing or its leader unknown) and with waiting=false when
	// the wait ends: every partition waits meanwhile, so it is worth an alarm. Default none.
	OnTopicWait func(topic string, waiting bool)

	// DeadLetterTopic, when set, receives the dead-letter record (record.DeadLetter) of each
	// message that Kafka rejects for good (too large, invalid; stage record.StageKafka, with the
	// broker's reason) and of each message that is a bad row (Message.DeadLetter; stage
	// record.StageDecode); the original then counts as delivered and publishing goes on. Create it with a
	// max.message.bytes large enough for the rejected payloads. If the dead-letter topic also
	// rejects the message, Run stops with a *RejectedError. Default "": a rejected message
	// stops Run.
	DeadLetterTopic string

	// OnDeadLetter, when set, is called for each dead-letter record, with its stage
	// (record.StageDecode when queued, record.StageKafka once Kafka acknowledged it), e.g. to
	// count them. It runs on the sending goroutine: it must be quick. Default none.
	OnDeadLetter func(dl Message, stage string)

	// Security sets TLS and SASL for the connections to the brokers. Default: plaintext, no
	// authentication.
	Security Security

	// OnSkipped, when set, is called with the messages that are acknowledged without being
	// sent, and why: SkipAlreadyInKafka when the partition's tail proves them to be there
	// (see Publisher.BeginSession), e.g. to count them. They are also handed to Run's acked, like
	// sent ones. It runs on a sending goroutine, possibly several at once: it must be quick and
	// safe for concurrent use. Default none.
	OnSkipped func(reason string, msgs []Message)

	// OnError, when set, is called after every failed produce request (and every failed read of
	// a partition's tail, kind "retriable") with its kind —
	// "retriable" (it will be sent again), "rejected" or "fatal" — e.g. to count failures in a
	// metric. It runs on the sending goroutine: it must be quick. Default none.
	OnError func(kind string, err error)
}

// Validate fills the defaults in and returns every problem found, joined into one error.
func (c *Config) Validate() error {
	c.fillDefaults()
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka brokers: none given; set at least one host:port"))
	}
	for _, b := range c.Brokers {
		if err := CheckBroker(b); err != nil {
			errs = append(errs, fmt.Errorf("kafka brokers: %w", err))
		}
	}
	if err := CheckTopicName(c.Topic); err != nil {
		errs = append(errs, fmt.Errorf("kafka topic: %w", err))
	}
	errs = append(errs, checkPositive("max batch messages", c.MaxBatchMessages)...)
	errs = append(errs, checkPositive("max request bytes", c.MaxRequestBytes)...)
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"request timeout", c.RequestTimeout}, {"backoff min", c.BackoffMin},
		{"backoff max", c.BackoffMax}, {"dial timeout", c.DialTimeout},
		{"metadata ttl", c.MetadataTTL}, {"linger", c.Linger},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("kafka %s: %s is negative", d.name, d.v))
		}
	}
	if c.BackoffMin > c.BackoffMax {
		errs = append(errs, fmt.Errorf("kafka backoff: min %s is above max %s", c.BackoffMin, c.BackoffMax))
	}
	if err := CheckCompression(c.Compression); err != nil {
		errs = append(errs, fmt.Errorf("kafka compression: %w", err))
	}
	errs = append(errs, c.Security.Problems(SecurityNames{})...)
	return errors.Join(errs...)
}

func (c *Config) fillDefaults() {
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.MaxBatchMessages == 0 {
		c.MaxBatchMessages = DefaultMaxBatchMessages
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = DefaultMinBackoff
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = DefaultMaxBackoff
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	if c.MetadataTTL == 0 {
		c.MetadataTTL = DefaultMetadataTTL
	}
	if c.MissingTopicWait == 0 {
		c.MissingTopicWait = DefaultMissingTopicWait
	}
}

func checkPositive(name string, v int) []error {
	if v < 0 {
		return []error{fmt.Errorf("kafka %s: %d is negative", name, v)}
	}
	return nil
}

// CheckBroker reports whether addr is a usable broker address, host:port. The command and
// Config.Validate both use it, each naming the setting in front.
func CheckBroker(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number in 1..65535", addr, port)
	}
	return nil
}

// CheckCompression reports whether s names a supported compression codec.
func CheckCompression(s string) error {
	_, err := parseCompression(s)
	return err
}

// CheckTopicName reports whether name is a legal Kafka topic name: 1 to 249 characters out of
// ASCII letters, digits, '.', '_' and '-', and neither "." nor "..".
func CheckTopicName(name string) error {
	switch {
	case name == "":
		return errors.New("topic name is empty")
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is not allowed", name)
	case len(name) > 249:
		return fmt.Errorf("topic name %q is longer than 249 characters", name)
	}
	legal := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
	}
	if i := strings.IndexFunc(name, func(r rune) bool { return !legal(r) }); i >= 0 {
		return fmt.Errorf("topic name %q has %q; use only ASCII letters, digits, '.', '_' and '-'", name, name[i])
	}
	return nil
}

func parseCompression(s string) (kafka.Compression, error) {
	switch s {
	case "none":
		return 0, nil
	case "gzip":
		return kafka.Gzip, nil
	case "snappy":
		return kafka.Snappy, nil
	case "lz4":
		return kafka.Lz4, nil
	case "zstd":
		return kafka.Zstd, nil
	}
	return 0, fmt.Errorf("%q is not a codec: use none, gzip, snappy, lz4 or zstd", s)
}
