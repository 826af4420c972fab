package sink

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/pgoutbox/pgoutbox/record"
)

// Errors returned by this package. Test them with errors.Is.
var (
	// ErrRejected means Kafka refused a message for good (too large, invalid record, invalid
	// topic...): re-sending it cannot succeed. Run returns a *RejectedError, which matches it and
	// names the message. The message was not written; nothing after it in its partition was sent.
	ErrRejected = errors.New("kafka rejected a message")

	// ErrFatal means Kafka refused the client itself (authorization, authentication, unsupported
	// protocol version or compression): nothing can be published until the configuration of the
	// relay or of the cluster changes.
	ErrFatal = errors.New("kafka refused the client")

	// ErrTopicNotFound means the topic does not exist in the cluster's metadata.
	ErrTopicNotFound = errors.New("kafka topic not found")

	// ErrUnreachable means no broker answered at the configured addresses.
	ErrUnreachable = errors.New("no kafka broker answered")

	// ErrPartitionMismatch means CreateTopic found the topic already there, with another
	// partition count than asked for. The topic was left unchanged.
	ErrPartitionMismatch = errors.New("kafka topic exists with another partition count")
)

// RejectedError reports a produce request that Kafka refused for good. It matches ErrRejected
// and unwraps to the broker's error (a kafka.Error).
type RejectedError struct {
	// Topic and Partition received the refused request.
	Topic     string
	Partition int
	// ID, Position and Token are those of the first message of the refused request: its row
	// id, its pgoutbox-position header (empty when it has none) and the caller's token.
	ID       string
	Position string
	Token    uint64
	// Messages is the number of messages in the refused request.
	Messages int
	// Detail lists the broker's per-record messages, with each record's ID, when it sent any.
	Detail string
	// Err is the broker's answer.
	Err error
}

// Error names the topic, partition and message, the broker's answer and what to do about it.
func (e *RejectedError) Error() string {
	var b strings.Builder
	where := fmt.Sprintf("partition %d", e.Partition)
	if e.Partition < 0 {
		where = "(no partition: the topic cannot be used)"
	}
	fmt.Fprintf(&b, "kafka rejected %s to topic %q %s (first message: id %s, position %s): %v",
		plural(e.Messages, "message"), e.Topic, where, e.ID, e.Position, e.Err)
	if e.Detail != "" {
		fmt.Fprintf(&b, " (%s)", e.Detail)
	}
	if hint := rejectHint(e.Err); hint != "" {
		b.WriteString("; ")
		b.WriteString(hint)
	}
	b.WriteString("; or set such a row aside on a dead-letter topic and go on (pgoutbox run --on-bad-row=dead-letter)")
	return b.String()
}

// Is reports whether target is ErrRejected.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// Unwrap returns the broker's error.
func (e *RejectedError) Unwrap() error { return e.Err }

// class says what to do about a failed request.
type class int

const (
	// retriable: the same request can succeed later. Re-send it after a backoff, forever:
	//   - network errors: connection refused or reset, EOF, dial or request timeout (any error
	//     that is not a kafka.Error);
	//   - kafka-go's client-side "topic not found", "partition not found", "no leader": its
	//     metadata cache does not know the partition (yet); it is refreshed every MetadataTTL;
	//   - kafka.Error codes whose Temporary() is true: UNKNOWN_TOPIC_OR_PARTITION,
	//     LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, NETWORK_EXCEPTION,
	//     NOT_ENOUGH_REPLICAS(_AFTER_APPEND), KAFKA_STORAGE_ERROR, coordinator loading,
	//     THROTTLING_QUOTA_EXCEEDED, leader epoch errors, NOT_CONTROLLER...;
	//   - and BROKER_NOT_AVAILABLE, REPLICA_NOT_AVAILABLE and UNKNOWN_SERVER_ERROR, which
	//     kafka-go does not mark temporary but which a restarting or overloaded broker sends.
	retriable class = iota
	// rejected: the broker refuses these records for good; see rejectedCodes.
	rejected
	// fatal: the broker refuses this client; any other kafka.Error (TOPIC_AUTHORIZATION_FAILED,
	// CLUSTER_AUTHORIZATION_FAILED, SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM,
	// UNSUPPORTED_VERSION, UNSUPPORTED_COMPRESSION_TYPE, INVALID_REQUIRED_ACKS...).
	fatal
)

func (c class) String() string {
	switch c {
	case retriable:
		return "retriable"
	case rejected:
		return "rejected"
	case fatal:
		return "fatal"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// rejectedCodes are the broker errors that condemn the records of the request, with what to do.
var rejectedCodes = map[kafka.Error]string{
	// MESSAGE_TOO_LARGE: a record batch is above the topic's max.message.bytes. Run splits a
	// batch of several messages and re-sends the halves in order; one message alone is rejected.
	kafka.MessageSizeTooLarge: "raise the topic's max.message.bytes (and the brokers' " +
		"message.max.bytes and replica.fetch.max.bytes) or shrink the payload",
	// RECORD_LIST_TOO_LARGE: the batch is above the broker's segment size; handled like above.
	kafka.RecordListTooLarge: "raise the topic's segment.bytes or shrink the payload",
	// INVALID_RECORD: the broker validated the records and refused one (for example a null
	// key on a compacted topic); the per-record messages say which.
	kafka.InvalidRecord: "fix the row or the topic's configuration (a compacted topic needs keys)",
	// CORRUPT_MESSAGE: the batch failed the broker's CRC or format check. kafka-go calls it
	// temporary, but the same bytes fail again: a bug, not a network fault (TCP has checksums).
	kafka.InvalidMessage: "the broker found the record batch corrupt; report this as a bug",
	// INVALID_MESSAGE_SIZE: the broker could not read the record size.
	kafka.InvalidMessageSize: "the broker found the record size invalid; report this as a bug",
	// INVALID_TOPIC_EXCEPTION: the topic name is illegal or the topic is internal.
	kafka.InvalidTopic: "use a legal, non-internal topic name",
	// INVALID_TIMESTAMP: the record time is too far from the broker's clock
	// (message.timestamp.before.max.ms / after.max.ms, or difference.max.ms).
	kafka.InvalidTimestamp: "check the clocks, or raise the topic's message.timestamp.before.max.ms",
}

// retriableCodes are kafka.Error codes not marked Temporary by kafka-go that are worth retrying.
var retriableCodes = map[kafka.Error]bool{
	kafka.BrokerNotAvailable:  true,
	kafka.ReplicaNotAvailable: true,
	kafka.Unknown:             true,
}

// Unavailable reports whether err, from an admin request such as [Publisher.Partitions], says
// that Kafka is not there yet rather than that the configuration is wrong: no broker answered
// (a network error or timeout; a TLS handshake failure is a configuration error), or the
// cluster answered with a temporary error (no leader yet, a broker still loading). A relay
// started then waits for Kafka instead of exiting, as a running one does. A missing topic is
// not unavailability: it is a configuration error with its own fix.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, ErrTopicNotFound) || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, ErrUnreachable) {
		return !tlsFailure(err)
	}
	var kerr kafka.Error
	return errors.As(err, &kerr) && kerr != kafka.UnknownTopicOrPartition && (kerr.Temporary() || retriableCodes[kerr])
}

// classify says whether a failed request may be re-sent.
func classify(err error) class {
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return retriable
	}
	if _, ok := rejectedCodes[kerr]; ok {
		return rejected
	}
	if kerr.Temporary() || retriableCodes[kerr] {
		return retriable
	}
	return fatal
}

// tooLarge reports whether err says that the batch is too large, so a smaller one may pass.
func tooLarge(err error) bool {
	return errors.Is(err, kafka.MessageSizeTooLarge) || errors.Is(err, kafka.RecordListTooLarge)
}

// staleMetadata reports whether err suggests that the cached partition count may be wrong.
func staleMetadata(err error) bool {
	return errors.Is(err, kafka.UnknownTopicOrPartition) || errors.Is(err, kafka.UnknownTopicID) ||
		errors.Is(err, errNoTopic) || errors.Is(err, errNoPartition)
}

func rejectHint(err error) string {
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		return rejectedCodes[kerr]
	}
	return ""
}

// fatalHint says what to change when the broker refuses the client.
func fatalHint(err error) string {
	switch {
	case errors.Is(err, kafka.TopicAuthorizationFailed):
		return "grant this client's principal WRITE and DESCRIBE on the topic"
	case errors.Is(err, kafka.ClusterAuthorizationFailed):
		return "grant this client's principal the cluster permission the request needs"
	case errors.Is(err, kafka.SASLAuthenticationFailed), errors.Is(err, kafka.UnsupportedSASLMechanism),
		errors.Is(err, kafka.IllegalSASLState):
		return "check the SASL mechanism and credentials"
	case errors.Is(err, kafka.UnsupportedVersion), errors.Is(err, kafka.UnsupportedForMessageFormat):
		return "use Kafka 0.11 or newer (record format v2)"
	case errors.Is(err, kafka.UnsupportedCompressionType):
		return "choose a compression the brokers support, or none"
	}
	return "check the broker's logs"
}

// produceError is a broker's answer to a produce request, with its per-record messages
// (Produce API v8+) keyed by the record's index in the request.
type produceError struct {
	err     error
	records map[int]error
}

func (e *produceError) Error() string {
	if len(e.records) == 0 {
		return e.err.Error()
	}
	return fmt.Sprintf("%v (%d record errors)", e.err, len(e.records))
}

func (e *produceError) Unwrap() error { return e.err }

// newRejected describes the refused request; msgs are the request's messages, in order.
func newRejected(tp topicPartition, msgs []Message, err error) *RejectedError {
	e := &RejectedError{Topic: tp.topic, Partition: tp.partition, Messages: len(msgs), Err: err}
	if len(msgs) > 0 {
		e.ID, e.Token = msgs[0].ID, msgs[0].Token
		e.Position, _ = record.Lookup(msgs[0].Headers, record.HeaderPosition)
	}
	var perr *produceError
	if errors.As(err, &perr) && len(perr.records) > 0 {
		idx := make([]int, 0, len(perr.records))
		for i := range perr.records {
			idx = append(idx, i)
		}
		sort.Ints(idx)
		parts := make([]string, 0, len(idx))
		for _, i := range idx {
			id := "?"
			if i >= 0 && i < len(msgs) {
				id = msgs[i].ID
			}
			parts = append(parts, fmt.Sprintf("record %d id %s: %v", i, id, perr.records[i]))
		}
		e.Detail = strings.Join(parts, "; ")
	}
	return e
}

// newFatal describes a request refused because of the client.
func newFatal(tp topicPartition, err error) error {
	return fmt.Errorf("publish to topic %q partition %d: %w: %w; %s", tp.topic, tp.partition, ErrFatal, err, fatalHint(err))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
