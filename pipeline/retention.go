package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/sink"
	"github.com/rs/zerolog"
)

// janitor implements --retention=delete-after-publish: it deletes outbox rows once Kafka has
// acknowledged them, in bounded batches, and only then acknowledges them to the ledger.
//
// So the slot's confirmed position never passes a row that is still in the table: after a
// crash, the rows that were published but not yet deleted are after the confirmed position, are
// sent again and deleted then. The table holds exactly the rows not yet acknowledged (plus those
// whose DELETE is in flight), which is what makes recovery from a lost slot possible: re-publish
// what is still in the table. Kafka publishing does not wait for the janitor; only the
// confirmation (and, through the in-flight window, the reading) does.
type janitor struct {
	del   Deleter
	batch int
	clock Clock
	log   zerolog.Logger
	ack   func([]sink.Message) error // the ledger's acknowledgement, after the DELETE

	in   chan []sink.Message
	dead chan struct{} // closed when run returned: acked must not block then
}

func (r *Pipeline) newJanitor(ack func([]sink.Message) error) *janitor {
	return &janitor{del: r.deps.Deleter, batch: r.cfg.JanitorBatch, clock: r.clock,
		log: r.deps.Log.With().Str("component", "janitor").Logger(), ack: ack,
		in: make(chan []sink.Message, 64), dead: make(chan struct{})}
}

func (j *janitor) prepare(ctx context.Context) error { return j.del.Prepare(ctx) }

// acked is the sink's callback: it queues the batch for deletion (blocking when the janitor is
// behind: that is backpressure, bounded by the in-flight window).
func (j *janitor) acked(msgs []sink.Message) {
	select {
	case j.in <- msgs:
	case <-j.dead: // the janitor failed; the relay is stopping and these stay unconfirmed
	}
}

// run deletes and acknowledges batches until in is closed (drained) or ctx is done.
func (j *janitor) run(ctx context.Context) error {
	defer close(j.dead)
	defer j.del.Close()
	for msgs := range j.in {
		if err := j.delete(ctx, msgs); err != nil {
			return err
		}
		if err := j.ack(msgs); err != nil {
			return err
		}
	}
	return nil
}

// invisibleWait bounds how long the janitor looks for a published row that its DELETE does not
// find. PostgreSQL writes (and flushes) a commit record before the transaction becomes visible
// to other sessions, and the walsender may decode it in between: the row can be in Kafka before
// a DELETE can see it. That window is normally microseconds; it lasts longer only while the
// committing session waits for a synchronous standby. A row still not found after this long was
// deleted by someone else (or its commit is held up): the janitor logs it and goes on.
const invisibleWait = 10 * time.Second

// delete removes the rows of msgs, batch by batch, retrying transient failures and the rows
// whose commit is not visible yet.
func (j *janitor) delete(ctx context.Context, msgs []sink.Message) error {
	ids := make([]string, 0, len(msgs))
	for i := range msgs {
		if msgs[i].ID != "" {
			ids = append(ids, msgs[i].ID)
		}
	}
	for start := 0; start < len(ids); start += j.batch {
		if err := j.deleteChunk(ctx, ids[start:min(start+j.batch, len(ids))]); err != nil {
			return err
		}
	}
	return nil
}

func (j *janitor) deleteChunk(ctx context.Context, ids []string) error {
	first := j.clock.Now()
	wait := 5 * time.Millisecond
	for attempt := 1; len(ids) > 0; attempt++ {
		deleted, err := j.del.Delete(ctx, ids)
		if err != nil {
			if err := j.failed(ctx, err, len(ids), attempt); err != nil {
				return err
			}
			continue
		}
		ids = missing(ids, deleted)
		if len(ids) == 0 {
			return nil
		}
		if j.clock.Now().Sub(first) > invisibleWait {
			j.log.Warn().Strs("ids", ids).Stringer("waited", invisibleWait).
				Msg("published rows not found for deletion: deleted by another session, or their commit is still held up (synchronous replication?); leaving them")
			return nil
		}
		if err := j.sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(wait*2, time.Second)
	}
	return nil
}

// failed handles a failed DELETE: a privilege or schema problem stops the relay; anything else
// is retried after a pause (the Deleter reconnects).
func (j *janitor) failed(ctx context.Context, err error, rows, attempt int) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, capture.ErrRetentionFixed) {
		return err
	}
	wait := min(time.Duration(attempt)*200*time.Millisecond, 5*time.Second)
	j.log.Warn().Err(err).Int("rows", rows).Stringer("retry_in", wait).Msg("cannot delete published rows; retrying (they stay unconfirmed meanwhile)")
	return j.sleep(ctx, wait)
}

func (j *janitor) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-j.clock.After(d):
		return nil
	}
}

// missing returns the ids that are not in deleted.
func missing(ids, deleted []string) []string {
	gone := make(map[string]bool, len(deleted))
	for _, id := range deleted {
		gone[id] = true
	}
	var rest []string
	for _, id := range ids {
		if !gone[id] {
			rest = append(rest, id)
		}
	}
	return rest
}
