package sink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"github.com/pgoutbox/pgoutbox/record"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	// What kafka-go's Client.Produce returned in probes against a real broker (see the report
	// in the package tests): wrapped the same way here.
	produceErr := func(err error) error { return fmt.Errorf("kafka.(*Client).Produce: %w", err) }
	tests := []struct {
		name string
		err  error
		want class
	}{
		{"connection refused (broker down)", produceErr(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), retriable},
		{"unexpected EOF (broker died mid-request)", produceErr(io.ErrUnexpectedEOF), retriable},
		{"request timeout", produceErr(context.DeadlineExceeded), retriable},
		{"no broker reached yet: kafka-go says topic not found", produceErr(protocol.NewErrNoTopic("t")), retriable},
		{"partition unknown to kafka-go's cache", produceErr(protocol.NewErrNoPartition("t", 5)), retriable},
		{"no leader in kafka-go's cache", produceErr(protocol.NewErrNoLeader("t", 1)), retriable},
		{"unreachable metadata", fmt.Errorf("%w at x: %w", ErrUnreachable, syscall.ECONNREFUSED), retriable},
		{"topic not found (metadata)", fmt.Errorf("%w: t", ErrTopicNotFound), retriable},
		{"NOT_LEADER_OR_FOLLOWER", &produceError{err: kafka.NotLeaderForPartition}, retriable},
		{"LEADER_NOT_AVAILABLE", &produceError{err: kafka.LeaderNotAvailable}, retriable},
		{"UNKNOWN_TOPIC_OR_PARTITION", &produceError{err: kafka.UnknownTopicOrPartition}, retriable},
		{"REQUEST_TIMED_OUT", &produceError{err: kafka.RequestTimedOut}, retriable},
		{"NOT_ENOUGH_REPLICAS", &produceError{err: kafka.NotEnoughReplicas}, retriable},
		{"NOT_ENOUGH_REPLICAS_AFTER_APPEND", &produceError{err: kafka.NotEnoughReplicasAfterAppend}, retriable},
		{"BROKER_NOT_AVAILABLE", kafka.BrokerNotAvailable, retriable},
		{"REPLICA_NOT_AVAILABLE", kafka.ReplicaNotAvailable, retriable},
		{"NETWORK_EXCEPTION", kafka.NetworkException, retriable},
		{"KAFKA_STORAGE_ERROR", kafka.KafkaStorageError, retriable},
		{"COORDINATOR_LOAD_IN_PROGRESS", kafka.GroupLoadInProgress, retriable},
		{"THROTTLING_QUOTA_EXCEEDED", kafka.ThrottlingQuotaExceeded, retriable},
		{"UNKNOWN_SERVER_ERROR", kafka.Unknown, retriable},
		{"MESSAGE_TOO_LARGE", &produceError{err: fmt.Errorf("%w: big", kafka.MessageSizeTooLarge)}, rejected},
		{"RECORD_LIST_TOO_LARGE", &produceError{err: kafka.RecordListTooLarge}, rejected},
		{"INVALID_RECORD", &produceError{err: kafka.InvalidRecord}, rejected},
		{"CORRUPT_MESSAGE (temporary for kafka-go)", &produceError{err: kafka.InvalidMessage}, rejected},
		{"INVALID_MESSAGE_SIZE", kafka.InvalidMessageSize, rejected},
		{"INVALID_TOPIC_EXCEPTION", kafka.InvalidTopic, rejected},
		{"INVALID_TIMESTAMP", kafka.InvalidTimestamp, rejected},
		{"TOPIC_AUTHORIZATION_FAILED", &produceError{err: kafka.TopicAuthorizationFailed}, fatal},
		{"CLUSTER_AUTHORIZATION_FAILED", kafka.ClusterAuthorizationFailed, fatal},
		{"SASL_AUTHENTICATION_FAILED", kafka.SASLAuthenticationFailed, fatal},
		{"UNSUPPORTED_SASL_MECHANISM", kafka.UnsupportedSASLMechanism, fatal},
		{"UNSUPPORTED_VERSION while negotiating", fmt.Errorf("negotating API versions with kafka broker at x: %w", kafka.UnsupportedVersion), fatal},
		{"UNSUPPORTED_COMPRESSION_TYPE", kafka.UnsupportedCompressionType, fatal},
		{"INVALID_REQUIRED_ACKS", kafka.InvalidRequiredAcks, fatal},
	}
	for _, tt := range tests {
		if got := classify(tt.err); got != tt.want {
			t.Errorf("%s: classify(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestStaleMetadata(t *testing.T) {
	t.Parallel()
	for _, err := range []error{
		kafka.UnknownTopicOrPartition,
		fmt.Errorf("x: %w", protocol.NewErrNoTopic("t")),
		fmt.Errorf("x: %w", protocol.NewErrNoPartition("t", 1)),
	} {
		if !staleMetadata(err) {
			t.Errorf("staleMetadata(%v) = false", err)
		}
	}
	if staleMetadata(kafka.NotLeaderForPartition) {
		t.Errorf("staleMetadata(NotLeaderForPartition) = true")
	}
}

func TestRejectedError(t *testing.T) {
	t.Parallel()
	msgs := []Message{{ID: "41", Token: 7, Headers: []record.Header{{Key: record.HeaderPosition, Value: []byte("0000001600B374D8-00000003")}}},
		{ID: "42", Token: 7}, {ID: "43", Token: 8}}
	perr := &produceError{
		err:     fmt.Errorf("%w: one or more records have been rejected", kafka.InvalidRecord),
		records: map[int]error{2: errors.New("compacted topic cannot accept message without key"), 1: errors.New("bad")},
	}
	err := error(newRejected(topicPartition{topic: "outbox", partition: 3}, msgs, perr))
	if !errors.Is(err, ErrRejected) {
		t.Errorf("errors.Is(err, ErrRejected) = false")
	}
	if !errors.Is(err, kafka.InvalidRecord) {
		t.Errorf("errors.Is(err, kafka.InvalidRecord) = false")
	}
	var rerr *RejectedError
	if !errors.As(err, &rerr) || rerr.ID != "41" || rerr.Token != 7 || rerr.Partition != 3 || rerr.Messages != 3 {
		t.Fatalf("RejectedError = %+v", rerr)
	}
	for _, want := range []string{`topic "outbox" partition 3`, "id 41", "position 0000001600B374D8-00000003", "3 messages",
		"record 1 id 42: bad; record 2 id 43: compacted topic", "Invalid Record", "a compacted topic needs keys"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	big := newRejected(topicPartition{topic: "outbox"}, msgs[:1], &produceError{err: kafka.MessageSizeTooLarge})
	if !strings.Contains(big.Error(), "1 message ") || !strings.Contains(big.Error(), "max.message.bytes") ||
		!strings.Contains(big.Error(), "--on-bad-row=dead-letter") || strings.Contains(big.Error(), "token") {
		t.Errorf("error %q does not say what to do", big)
	}
}

func TestNewFatal(t *testing.T) {
	t.Parallel()
	err := newFatal(topicPartition{topic: "outbox", partition: 1}, &produceError{err: kafka.TopicAuthorizationFailed})
	if !errors.Is(err, ErrFatal) || !errors.Is(err, kafka.TopicAuthorizationFailed) {
		t.Errorf("fatal error %v does not match ErrFatal and the broker's error", err)
	}
	if errors.Is(err, ErrRejected) {
		t.Errorf("fatal error matches ErrRejected")
	}
	if !strings.Contains(err.Error(), "grant") || !strings.Contains(err.Error(), `"outbox" partition 1`) {
		t.Errorf("fatal error %q does not say what to do", err)
	}
}

func TestKafkaClient_requestError(t *testing.T) {
	t.Parallel()
	c := &kafkaClient{brokers: "b1:9092,b2:9092"}
	tests := []struct {
		err         error
		unreachable bool
	}{
		{fmt.Errorf("kafka.(*Client).Metadata: %w", syscall.ECONNREFUSED), true},
		{fmt.Errorf("kafka.(*Client).CreateTopics: %w", kafka.BrokerNotAvailable), true},
		{context.DeadlineExceeded, true},
		{context.Canceled, false},
		{fmt.Errorf("kafka.(*Client).CreateTopics: %w", kafka.ClusterAuthorizationFailed), false},
	}
	for _, tt := range tests {
		err := c.requestError("op", tt.err)
		if errors.Is(err, ErrUnreachable) != tt.unreachable || !errors.Is(err, tt.err) {
			t.Errorf("requestError(%v) = %v, want unreachable=%v", tt.err, err, tt.unreachable)
		}
		if tt.unreachable && !strings.Contains(err.Error(), "b1:9092,b2:9092") {
			t.Errorf("requestError(%v) = %v, does not name the brokers", tt.err, err)
		}
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	c := &kafkaClient{brokers: "b1:9092", setupTopics: map[string]bool{"t": true}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connection refused", c.requestError("read metadata", syscall.ECONNREFUSED), true},
		{"no broker reached by kafka-go", c.requestError("read metadata", kafka.BrokerNotAvailable), true},
		{"timeout", c.requestError("read metadata", context.DeadlineExceeded), true},
		{"tls failure", c.requestError("read metadata", &tls.CertificateVerificationError{Err: errors.New("bad cert")}), false},
		{"no leader yet", fmt.Errorf("read metadata of topic %q: %w", "t", kafka.LeaderNotAvailable), true},
		{"topic not found", c.topicNotFound("t"), false},
		{"unknown topic code", fmt.Errorf("x: %w", kafka.UnknownTopicOrPartition), false},
		{"authorization", fmt.Errorf("x: %w", kafka.TopicAuthorizationFailed), false},
		{"cancelled", c.requestError("read metadata", context.Canceled), false},
	}
	for _, tt := range tests {
		if got := Unavailable(tt.err); got != tt.want {
			t.Errorf("%s: Unavailable(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
