package sink

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
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

// batchIDs renders a round as "topic/partition:id,id ..." in batch order.
func batchIDs(r *round) string {
	parts := make([]string, len(r.batches))
	for i, b := range r.batches {
		parts[i] = fmt.Sprintf("%s/%d:%s", b.topic, b.partition, strings.Join(ids(b.msgs), ","))
	}
	return strings.Join(parts, " ")
}

// planRounds builds rounds from msgs as Run does, with collect: each round starts with the
// message the previous one held back (or the next one queued) and takes what is queued after it.
func planRounds(t *testing.T, msgs []Message, partitions int, lim limits) []*round {
	t.Helper()
	p := newTestPublisher(t, newFake(partitions), Config{Topic: "main", MaxBatchMessages: lim.maxMessages, MaxRequestBytes: lim.maxBytes})
	in := make(chan Message, len(msgs))
	for _, m := range msgs {
		in <- m
	}
	close(in)
	var rounds []*round
	next, ok := <-in
	for ok {
		r, held, err := p.collect(context.Background(), next, in)
		if err != nil {
			t.Fatal(err)
		}
		rounds = append(rounds, r)
		if held != nil {
			next = *held
		} else {
			next, ok = <-in
		}
	}
	return rounds
}

func TestPublisher_collect(t *testing.T) {
	t.Parallel()
	const n = 3
	k0, k1, k2 := keyFor(t, 0, n), keyFor(t, 1, n), keyFor(t, 2, n)
	// Each message of value size 100 costs recordSize bytes; a budget of one batch header plus
	// two such records holds exactly two per partition.
	small := Message{Value: make([]byte, 100)}
	two := batchOverhead + 2*recordSize(&Message{Key: k0, Value: small.Value})
	msg := func(id string, key []byte, size int, topic string) Message {
		return Message{ID: id, Key: key, Value: make([]byte, size), Topic: topic}
	}
	tests := []struct {
		name   string
		msgs   []Message
		lim    limits
		want   string   // the first round, batch by batch
		rest   []string // ids held back for the next rounds
		rounds []string // all rounds, when planned to the end
	}{
		{
			name: "one partition in order",
			msgs: []Message{msg("a", k0, 100, ""), msg("b", k0, 100, ""), msg("c", k0, 1, "")},
			lim:  limits{maxMessages: 10, maxBytes: 1 << 20},
			want: "main/0:a,b,c",
		},
		{
			name: "partitions in order of first message, order kept within each",
			msgs: []Message{msg("a", k1, 1, ""), msg("b", k0, 1, ""), msg("c", k1, 1, ""), msg("d", k2, 1, ""), msg("e", k0, 1, "")},
			lim:  limits{maxMessages: 10, maxBytes: 1 << 20},
			want: "main/1:a,c main/0:b,e main/2:d",
		},
		{
			name: "per-partition byte budget holds the overflowing message back",
			msgs: []Message{msg("a", k0, 100, ""), msg("b", k1, 100, ""), msg("c", k0, 100, ""), msg("d", k0, 100, ""), msg("e", k1, 100, "")},
			lim:  limits{maxMessages: 10, maxBytes: two},
			want: "main/0:a,c main/1:b",
			rest: []string{"d", "e"},
			// e would fit partition 1 of the first round, but it comes after d: never reordered.
			rounds: []string{"main/0:a,c main/1:b", "main/0:d main/1:e"},
		},
		{
			name: "budget is per partition, not per round",
			msgs: []Message{msg("a", k0, 100, ""), msg("b", k1, 100, ""), msg("c", k2, 100, ""), msg("d", k0, 100, ""), msg("e", k1, 100, "")},
			lim:  limits{maxMessages: 10, maxBytes: two},
			want: "main/0:a,d main/1:b,e main/2:c",
		},
		{
			name:   "oversized message goes alone",
			msgs:   []Message{msg("a", k0, 10, ""), msg("big", k0, 5000, ""), msg("b", k0, 10, "")},
			lim:    limits{maxMessages: 10, maxBytes: 1000},
			want:   "main/0:a",
			rest:   []string{"big", "b"},
			rounds: []string{"main/0:a", "main/0:big", "main/0:b"},
		},
		{
			name: "oversized first message is sent, others join other partitions",
			msgs: []Message{msg("big", k0, 5000, ""), msg("a", k1, 10, ""), msg("b", k0, 10, "")},
			lim:  limits{maxMessages: 10, maxBytes: 1000},
			want: "main/0:big main/1:a",
			rest: []string{"b"},
		},
		{
			name:   "message count limit over all partitions",
			msgs:   []Message{msg("a", k0, 1, ""), msg("b", k1, 1, ""), msg("c", k2, 1, ""), msg("d", k0, 1, "")},
			lim:    limits{maxMessages: 3, maxBytes: 1 << 20},
			want:   "main/0:a main/1:b main/2:c",
			rest:   []string{"d"},
			rounds: []string{"main/0:a main/1:b main/2:c", "main/0:d"},
		},
		{
			name: "own topic is its own partition",
			msgs: []Message{msg("a", k0, 1, ""), msg("b", k0, 1, "other"), msg("c", k0, 1, "main")},
			lim:  limits{maxMessages: 10, maxBytes: 1 << 20},
			want: "main/0:a,c other/0:b",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rounds := planRounds(t, tt.msgs, n, tt.lim)
			r := rounds[0]
			if got := batchIDs(r); got != tt.want {
				t.Errorf("round = %s, want %s", got, tt.want)
			}
			if !slices.Equal(ids(r.msgs), ids(tt.msgs[:len(r.msgs)])) {
				t.Errorf("round messages %v are not the head of the input", ids(r.msgs))
			}
			if got := ids(tt.msgs[len(r.msgs):]); len(got) != len(tt.rest) || len(got) > 0 && !slices.Equal(got, tt.rest) {
				t.Errorf("held back = %v, want %v", got, tt.rest)
			}
			if tt.rounds == nil {
				return
			}
			var got []string
			for _, r := range rounds {
				got = append(got, batchIDs(r))
			}
			if !slices.Equal(got, tt.rounds) {
				t.Errorf("rounds = %q, want %q", got, tt.rounds)
			}
		})
	}
}

func TestRecordSize_boundsTheEncoding(t *testing.T) {
	t.Parallel()
	m := Message{Key: []byte("key"), Value: []byte("value"), Headers: []Header{{Key: "h", Value: []byte("v")}}}
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
