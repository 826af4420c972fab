package sink

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/pgoutbox/pgoutbox/record"
)

// keyFor returns a key that murmur2 maps to partition p of n.
func keyFor(t testing.TB, p, n int) []byte {
	t.Helper()
	var h murmur2
	for i := range 10000 {
		k := []byte(fmt.Sprintf("channel-%d", i))
		if h.partition(k, n) == p {
			return k
		}
	}
	t.Fatalf("no key for partition %d of %d", p, n)
	return nil
}

func ids(msgs []Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func TestPartitionQueue_next(t *testing.T) {
	t.Parallel()
	// Each message of value size 100 costs recordSize bytes; a budget of one batch header plus
	// two such records holds exactly two per request.
	hundred := Message{Value: make([]byte, 100)}
	two := batchOverhead + 2*recordSize(&hundred)
	msg := func(id string, size int) Message { return Message{ID: id, Value: make([]byte, size)} }
	tests := []struct {
		name     string
		pending  []Message
		lim      limits
		requests [][]string // the requests taken one after the other until the queue is empty
	}{
		{
			name:     "everything fits one request, in order",
			pending:  []Message{msg("a", 100), msg("b", 100), msg("c", 1)},
			lim:      limits{maxMessages: 10, maxBytes: 1 << 20},
			requests: [][]string{{"a", "b", "c"}},
		},
		{
			name:     "byte budget: a prefix per request",
			pending:  []Message{msg("a", 100), msg("b", 100), msg("c", 100), msg("d", 1), msg("e", 100)},
			lim:      limits{maxMessages: 10, maxBytes: two},
			requests: [][]string{{"a", "b"}, {"c", "d"}, {"e"}},
		},
		{
			name:     "message count limit",
			pending:  []Message{msg("a", 1), msg("b", 1), msg("c", 1), msg("d", 1)},
			lim:      limits{maxMessages: 3, maxBytes: 1 << 20},
			requests: [][]string{{"a", "b", "c"}, {"d"}},
		},
		{
			name:     "oversized message goes alone, never reordered",
			pending:  []Message{msg("a", 10), msg("big", 5000), msg("b", 10)},
			lim:      limits{maxMessages: 10, maxBytes: 1000},
			requests: [][]string{{"a"}, {"big"}, {"b"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := &partitionQueue{pending: slices.Clone(tt.pending)}
			var got [][]string
			for len(q.pending) > 0 && len(got) <= len(tt.pending) {
				got = append(got, ids(q.next(tt.lim)))
			}
			if !slices.EqualFunc(got, tt.requests, slices.Equal) {
				t.Errorf("requests = %v, want %v", got, tt.requests)
			}
		})
	}
}

// A request taken off the queue is never written to by later appends to the queue.
func TestPartitionQueue_nextIsNotAliased(t *testing.T) {
	t.Parallel()
	q := &partitionQueue{pending: make([]Message, 0, 8)}
	q.pending = append(q.pending, Message{ID: "a"}, Message{ID: "b"}, Message{ID: "c"})
	req := q.next(limits{maxMessages: 2, maxBytes: 1 << 20})
	q.pending = append(q.pending, Message{ID: "d"})
	req = append(req, Message{ID: "x"}) // must not overwrite c in the queue
	if got := ids(q.pending); !slices.Equal(got, []string{"c", "d"}) {
		t.Errorf("queue = %v, want [c d]", got)
	}
	if got := ids(req); !slices.Equal(got, []string{"a", "b", "x"}) {
		t.Errorf("request = %v", got)
	}
}

func TestRecordSize_boundsTheEncoding(t *testing.T) {
	t.Parallel()
	m := Message{Key: []byte("key"), Value: []byte("value"), Headers: []record.Header{{Key: "h", Value: []byte("v")}}}
	// Key 3 + value 5 + header 2, plus overheads.
	if got, want := recordSize(&m), 3+5+2+recordOverhead+headerOverhead; got != want {
		t.Errorf("recordSize = %d, want %d", got, want)
	}
}

func TestMurmur2_matchesJavaClient(t *testing.T) {
	t.Parallel()
	// Partitions over 1000 partitions from kafka-python's Murmur2Partitioner tests, which
	// reproduce the Java client's DefaultPartitioner (as quoted in kafka-go's balancer_test.go).
	tests := []struct {
		key  []byte
		want int
	}{
		{[]byte(""), 681},
		{[]byte("a"), 524},
		{[]byte("ab"), 434},
		{[]byte("abc"), 107},
		{[]byte("123456789"), 566},
		{[]byte{0, 32}, 742},
	}
	var h murmur2
	for _, tt := range tests {
		if got := h.partition(tt.key, 1000); got != tt.want {
			t.Errorf("partition(%q, 1000) = %d, want %d", tt.key, got, tt.want)
		}
	}
	// librdkafka's hash of "kafka" (0xd067cf64) is the Java hash: over 17 partitions,
	// (hash & 0x7fffffff) % 17.
	if got, want := h.partition([]byte("kafka"), 17), int((0xd067cf64&0x7fffffff)%17); got != want {
		t.Errorf("partition(kafka, 17) = %d, want %d", got, want)
	}
	// A nil key (null) partitions like an empty one, never at random.
	if h.partition(nil, 1000) != 681 {
		t.Errorf("nil key is not partitioned like an empty key")
	}
}

func TestMurmur2_matchesBalancer(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2)) //nolint:gosec // reproducible test data
	var h murmur2
	for range 2000 {
		key := make([]byte, rng.IntN(40))
		for i := range key {
			key[i] = byte(rng.UintN(256)) //nolint:gosec // UintN(256) fits a byte
		}
		n := 1 + rng.IntN(64)
		list := make([]int, n)
		for i := range list {
			list[i] = i
		}
		want := kafka.Murmur2Balancer{Consistent: true}.Balance(kafka.Message{Key: key}, list...)
		if got := h.partition(key, n); got != want {
			t.Fatalf("partition(%x, %d) = %d, balancer says %d", key, n, got, want)
		}
	}
}
