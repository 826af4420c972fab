package pipeline

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/checkpoint"
	"github.com/pgoutbox/pgoutbox/sink"
)

// output connects the capture stream to the checkpoint tracker and the sink's queue: it is the
// capture.Output of one streaming session. Rows are registered in the tracker before they are
// queued, and acknowledged in it by the sink's callback, so the confirmed position never passes
// a row Kafka has not acknowledged.
type output struct {
	tracker *checkpoint.Tracker
	queue   chan sink.Message // capacity = the window's event limit, so a send never blocks
	ceiling *atomic.Uint64    // the publication guard's proven position (see pubGuard)

	onReceived func(commitTime time.Time) // observes each transaction's arrival
}

var _ capture.Output = (*output)(nil)

func newOutput(start capture.LSN, lim checkpoint.Limits, ceiling *atomic.Uint64) *output {
	return &output{
		tracker:    checkpoint.NewTracker(checkpoint.LSN(start), lim),
		ceiling:    ceiling,
		queue:      make(chan sink.Message, lim.MaxEvents),
		onReceived: func(time.Time) {},
	}
}

func (o *output) Begin(b capture.Begin) uint64 {
	o.onReceived(b.CommitTime) // pgoutput sends a transaction once it committed: this is its arrival
	return uint64(o.tracker.Begin(b.CommitTime))
}

func (o *output) Offer(txn uint64, ev capture.Event) (bool, error) {
	size := ev.Size()
	ok, err := o.tracker.TryAdd(checkpoint.TxnID(txn), size)
	if !ok || err != nil {
		return false, err
	}
	select {
	case o.queue <- ToMessage(txn, &ev, size):
		return true, nil
	default:
		// Cannot happen: the tracker admits at most MaxEvents rows and the queue holds as many.
		// Failing loudly beats blocking the stream (and its status updates) forever.
		return false, fmt.Errorf("pipeline: sink queue full with %d rows although the window admitted one", len(o.queue))
	}
}

func (o *output) Room() <-chan struct{} { return o.tracker.Room() }

func (o *output) Commit(txn uint64, c capture.Commit) error {
	return o.tracker.Commit(checkpoint.TxnID(txn), checkpoint.LSN(c.EndLSN))
}

func (o *output) Idle(walEnd capture.LSN) { o.tracker.Idle(checkpoint.LSN(walEnd)) }

// Confirmed is the ledger's watermark, held at the publication guard's ceiling: WAL after it
// may hold inserts that PostgreSQL did not send. The stream never sends less than the slot's
// start position.
func (o *output) Confirmed() capture.LSN {
	return capture.LSN(min(uint64(o.tracker.Confirmed()), o.ceiling.Load()))
}

func (o *output) Busy() bool { return o.tracker.Pending() > 0 }

// acked acknowledges the rows of each transaction in the tracker, one call per run of adjacent
// rows of the same transaction. An error means the ledger's contract was broken: the relay stops.
func (o *output) acked(msgs []sink.Message) error {
	for i := 0; i < len(msgs); {
		j, bytes := i, 0
		for ; j < len(msgs) && msgs[j].Token == msgs[i].Token; j++ {
			bytes += msgs[j].Size
		}
		if err := o.tracker.Ack(checkpoint.TxnID(msgs[i].Token), j-i, bytes); err != nil {
			return fmt.Errorf("acknowledge rows of transaction %d: %w", msgs[i].Token, err)
		}
		i = j
	}
	return nil
}

// ToMessage maps an outbox event onto the Kafka record the relay publishes (see package record
// and docs/architecture.md, "The event"): key = channel, value = payload, the event's headers
// (shared, not copied), the commit time as timestamp; a bad row keeps its reason, for the sink
// to dead-letter it.
// txn is the ledger's token of the event's transaction and size its accounting size; both come
// back unchanged in the sink's acknowledgement. The benchmark uses it too, so that its records
// are the relay's.
func ToMessage(txn uint64, ev *capture.Event, size int) sink.Message {
	return sink.Message{
		Topic:      ev.Topic,
		Key:        []byte(ev.Channel),
		Value:      ev.Payload,
		Headers:    ev.Headers,
		Time:       ev.CommitTime,
		ID:         ev.ID,
		Token:      txn,
		Size:       size,
		DeadLetter: ev.DeadLetter,
	}
}
