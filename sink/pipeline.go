package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgoutbox/pgoutbox/record"
)

// errStopped cancels the other partitions' requests when one failed for good.
var errStopped = errors.New("another partition's request failed")

// pipeline is the state of one Run: each partition's queue, and what is in flight. Only Run's
// goroutine touches it; each request runs on its own goroutine and answers on done.
type pipeline struct {
	p        *Publisher
	ctx      context.Context // Run's, cancelled with errStopped when a request failed for good
	stop     context.CancelCauseFunc
	acked    func([]Message)
	lim      limits
	capacity int // most messages held: taken from in and not yet acknowledged

	queues   map[topicPartition]*partitionQueue
	ready    []*partitionQueue // idle partitions with pending messages: each is here once
	held     int
	inFlight int
	done     chan answer
	h        murmur2

	closed    bool              // the input is closed: nothing more comes, so nothing lingers
	lingering []*partitionQueue // idle partitions waiting for lingerC (Config.Linger)
	lingerC   <-chan time.Time  // nil when nothing lingers
}

// answer is the outcome of one request.
type answer struct {
	q    *partitionQueue
	msgs []Message
	err  error
	took time.Duration
}

func (p *Publisher) newPipeline(ctx context.Context, acked func([]Message)) *pipeline {
	ctx, stop := context.WithCancelCause(ctx)
	return &pipeline{
		p: p, ctx: ctx, stop: stop, acked: acked,
		lim:      limits{maxMessages: p.cfg.MaxBatchMessages, maxBytes: p.cfg.MaxRequestBytes},
		capacity: p.cfg.MaxBatchMessages,
		queues:   make(map[topicPartition]*partitionQueue),
		done:     make(chan answer),
	}
}

// run takes messages from in and answers from the requests until in is closed and everything is
// acknowledged (nil), or until the first error: ctx's, or a request's or a message's that
// cannot pass. After an error, finish must be called.
func (pl *pipeline) run(parent context.Context, in <-chan Message) error {
	for {
		if in == nil && pl.held == 0 {
			return nil
		}
		recv := in
		if pl.held >= pl.capacity || pl.everyPartitionWaits() {
			// Full, or whatever comes would only queue behind a request in flight: leave it in the
			// channel and wake for the next answer, which takes it all at once. A wake-up per
			// row costs more CPU than the sending (at thousands of rows per second, on cores
			// shared with PostgreSQL and Kafka), and the row would not leave sooner.
			recv = nil
		}
		select {
		case <-parent.Done():
			return parent.Err()
		case <-pl.lingerC:
			pl.lingerOver()
		case a := <-pl.done:
			if err := pl.answered(a); err != nil {
				return err
			}
		case m, ok := <-recv:
			if !ok {
				in = nil
				pl.closed = true
				pl.lingerOver() // a drain sends everything at once
				pl.sendReady()
				continue
			}
			if err := pl.take(m); err != nil {
				return err
			}
		}
		// Whatever else is queued joins the requests about to be sent: a request carries what is
		// there now, so requests fill up when the input runs ahead of Kafka and stay small (fast)
		// when it does not.
		var err error
		if in, err = pl.takeQueued(in); err != nil {
			return err
		}
		pl.sendReady()
	}
}

// everyPartitionWaits reports whether every partition seen has a request in flight.
func (pl *pipeline) everyPartitionWaits() bool {
	return pl.inFlight > 0 && pl.inFlight == len(pl.queues)
}

// takeQueued takes what in holds now, without waiting, up to the capacity. It returns nil for
// in once in is closed.
func (pl *pipeline) takeQueued(in <-chan Message) (<-chan Message, error) {
	for in != nil && pl.held < pl.capacity {
		select {
		case m, ok := <-in:
			if !ok {
				pl.closed = true
				pl.lingerOver()
				return nil, nil
			}
			if err := pl.take(m); err != nil {
				return in, err
			}
		default:
			return in, nil
		}
	}
	return in, nil
}

// take routes m to its partition's queue. A topic whose partition count is not cached needs a
// metadata read, perhaps a wait: what is queued is sent first, so the wait holds up no request.
func (pl *pipeline) take(m Message) error {
	if m.DeadLetter != "" {
		// A bad row capture found: its dead-letter record goes to the dead-letter topic, in order
		// with the others routed there.
		if pl.p.cfg.DeadLetterTopic == "" {
			return fmt.Errorf("message %s is a bad row (%s) but the sink has no dead-letter topic", m.ID, m.DeadLetter)
		}
		m = pl.p.deadLetterRecord(m, record.StageDecode, m.DeadLetter, topicOf(m, pl.p.cfg.Topic))
		pl.p.deadLettered(m, record.StageDecode)
	}
	topic := topicOf(m, pl.p.cfg.Topic)
	n, ok := pl.p.freshPartitionCount(topic)
	if !ok {
		pl.sendReady()
		var err error
		n, err = pl.p.partitionsFor(pl.ctx, m)
		var unroutable *unroutableError
		if errors.As(err, &unroutable) {
			// Its topic cannot be used: set the message aside (dead-letter topic) or stop.
			if err := pl.p.setAside(pl.ctx, m, unroutable); err != nil {
				return err
			}
			pl.acked([]Message{m})
			return nil
		}
		if err != nil {
			return err
		}
	}
	tp := topicPartition{topic: topic, partition: pl.h.partition(m.Key, n)}
	q := pl.queues[tp]
	if q == nil {
		q = &partitionQueue{tp: tp}
		pl.queues[tp] = q
	}
	q.add(routedWith(m, n))
	pl.held++
	switch {
	case len(q.pending) == 1 && !q.inFlight:
		pl.ready = append(pl.ready, q)
	case q.lingering && q.quarterFull(pl.lim):
		q.lingering = false // full enough: it goes with the next sendReady
		pl.ready = append(pl.ready, q)
	}
	return nil
}

// sendReady sends the next request of every idle partition that has messages, unless it is to
// linger.
func (pl *pipeline) sendReady() {
	for _, q := range pl.ready {
		if q.inFlight || q.lingering || len(q.pending) == 0 {
			continue // already handled: never a second request in flight, nor an empty one
		}
		if pl.shouldLinger(q) {
			pl.linger(q)
			continue
		}
		pl.send(q)
	}
	clear(pl.ready)
	pl.ready = pl.ready[:0]
}

// shouldLinger reports whether q's next request is to wait for more rows (Config.Linger): the
// stream is behind at this partition, and the request is small.
func (pl *pipeline) shouldLinger(q *partitionQueue) bool {
	if pl.p.cfg.Linger <= 0 || pl.closed || q.lingered || q.quarterFull(pl.lim) {
		return false
	}
	committed := q.pending[0].Time
	return !committed.IsZero() && pl.p.now().Sub(committed) > lingerBehind
}

// linger parks q until the linger timer fires (or it fills up). One timer serves every
// partition: a partition parked later waits less, never more.
func (pl *pipeline) linger(q *partitionQueue) {
	q.lingering, q.lingered = true, true
	pl.lingering = append(pl.lingering, q)
	if pl.lingerC == nil {
		pl.lingerC = time.After(pl.p.cfg.Linger)
	}
}

// lingerOver makes every lingering partition ready.
func (pl *pipeline) lingerOver() {
	for _, q := range pl.lingering {
		if q.lingering { // not sent early for being full
			q.lingering = false
			pl.ready = append(pl.ready, q)
		}
	}
	clear(pl.lingering)
	pl.lingering = pl.lingering[:0]
	pl.lingerC = nil
}

// send starts q's next request: one request in flight per partition, so a partition's messages
// reach Kafka in order whatever fails (sendBatch re-sends a request until it is acknowledged).
func (pl *pipeline) send(q *partitionQueue) {
	msgs := q.next(pl.lim)
	q.inFlight = true
	pl.inFlight++
	go func() {
		start := pl.p.now()
		err := pl.p.sendBatch(pl.ctx, q.tp, msgs)
		pl.done <- answer{q: q, msgs: msgs, err: err, took: pl.p.now().Sub(start)}
	}()
}

// answered hands an acknowledged request to acked and queues the partition's next one.
func (pl *pipeline) answered(a answer) error {
	pl.inFlight--
	a.q.inFlight = false
	if a.err != nil {
		return a.err
	}
	pl.held -= len(a.msgs)
	pl.acked(a.msgs)
	pl.p.log.Debug().Str("topic", a.q.tp.topic).Int("partition", a.q.tp.partition).
		Int("messages", len(a.msgs)).Stringer("took", a.took).Msg("request acknowledged")
	if len(a.q.pending) > 0 {
		pl.ready = append(pl.ready, a.q)
	}
	return nil
}

// finish stops the requests in flight after run returned err, waits for them, and hands those
// that Kafka acknowledged meanwhile to acked. It returns ctx's error when ctx is done, else err.
func (pl *pipeline) finish(parent context.Context, err error) error {
	pl.stop(errStopped)
	for pl.inFlight > 0 {
		a := <-pl.done
		pl.inFlight--
		if a.err == nil {
			pl.acked(a.msgs)
		}
	}
	if perr := parent.Err(); perr != nil {
		return perr
	}
	return err
}
