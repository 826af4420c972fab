package sink

import "github.com/segmentio/kafka-go"

// topicPartition names one partition of one topic.
type topicPartition struct {
	topic     string
	partition int
}

// batch is what one produce request carries: one partition's messages of a round, in order.
type batch struct {
	topicPartition
	msgs  []Message
	bytes int // estimated record batch size
}

// limits bound a round.
type limits struct {
	maxMessages int // messages in the round, all partitions together
	maxBytes    int // estimated record batch size per partition
}

// round is the set of messages sent together: one request per partition, in parallel, and the
// next round starts only when every partition acknowledged its request.
type round struct {
	lim     limits
	msgs    []Message // in the order they were taken
	batches []*batch  // in the order of their first message
	byTP    map[topicPartition]*batch
}

func newRound(lim limits) *round {
	return &round{lim: lim, byTP: make(map[topicPartition]*batch)}
}

// add appends m, bound for tp, unless the round is full or m would take tp's batch over the
// byte budget; then it returns false, and m must start the next round (taking anything after it
// into this round would reorder). A message larger than the budget goes alone into an empty
// batch: the broker's answer decides.
func (r *round) add(m Message, tp topicPartition) bool {
	if len(r.msgs) >= r.lim.maxMessages {
		return false
	}
	size := recordSize(&m)
	b := r.byTP[tp]
	if b != nil && b.bytes+size > r.lim.maxBytes {
		return false
	}
	if b == nil {
		b = &batch{topicPartition: tp, bytes: batchOverhead}
		r.byTP[tp] = b
		r.batches = append(r.batches, b)
	}
	b.msgs = append(b.msgs, m)
	b.bytes += size
	r.msgs = append(r.msgs, m)
	return true
}

// full reports whether the round takes no more messages.
func (r *round) full() bool { return len(r.msgs) >= r.lim.maxMessages }

func topicOf(m Message, defaultTopic string) string {
	if m.Topic == "" {
		return defaultTopic
	}
	return m.Topic
}

// murmur2 partitions keys like the Java client's default partitioner, so that consumers and
// producers in any language agree on a key's partition. A nil key hashes like an empty one.
type murmur2 struct {
	ids []int // 0, 1, 2...: the partition list handed to the balancer
}

func (h *murmur2) partition(key []byte, partitions int) int {
	for len(h.ids) < partitions {
		h.ids = append(h.ids, len(h.ids))
	}
	return kafka.Murmur2Balancer{Consistent: true}.Balance(kafka.Message{Key: key}, h.ids[:partitions]...)
}
