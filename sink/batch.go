package sink

import "github.com/segmentio/kafka-go"

// topicPartition names one partition of one topic.
type topicPartition struct {
	topic     string
	partition int
}

// limits bound one produce request.
type limits struct {
	maxMessages int // messages in one request
	maxBytes    int // estimated record batch size of one request
}

// partitionQueue holds one partition's messages that were taken from Run's input and are not
// sent yet, in input order, and whether the partition has a request in flight. Only Run's
// goroutine touches it.
type partitionQueue struct {
	tp           topicPartition
	pending      []Message
	pendingBytes int // estimated record sizes of pending
	inFlight     bool
	lingering    bool // its next request waits for the linger timer (pipeline.linger)
	lingered     bool // its next request waited already: it goes at the next chance
}

// add appends m to the queue.
func (q *partitionQueue) add(m Message) {
	q.pending = append(q.pending, m)
	q.pendingBytes += recordSize(&m)
}

// quarterFull reports whether the next request would be a quarter full: then it does not
// linger.
func (q *partitionQueue) quarterFull(lim limits) bool {
	return 4*len(q.pending) >= lim.maxMessages || 4*q.pendingBytes >= lim.maxBytes
}

// next takes the partition's next request off the head of the queue: the longest prefix within
// lim, and at least one message — one larger than the byte budget goes alone, and the broker's
// answer decides. Taking only a prefix is what keeps order: a message never overtakes an older
// one of its partition.
func (q *partitionQueue) next(lim limits) []Message {
	size, n := batchOverhead, 0
	for n < len(q.pending) && n < lim.maxMessages {
		s := recordSize(&q.pending[n])
		if n > 0 && size+s > lim.maxBytes {
			break
		}
		size += s
		n++
	}
	msgs := q.pending[:n:n] // capped: appending to the queue never writes into a request
	q.pending = q.pending[n:]
	q.pendingBytes -= size - batchOverhead
	q.lingered = false
	if len(q.pending) == 0 {
		q.pending = nil // let the sent messages' backing array go with the request
	}
	return msgs
}

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
