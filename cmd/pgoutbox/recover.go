package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/pipeline"
	"github.com/pgoutbox/pgoutbox/record"
	"github.com/pgoutbox/pgoutbox/sink"
	"github.com/rs/zerolog"
)

// recoverMarkerPrefix is the prefix of the logical decoding message that recover writes just
// past the end it reads to, so that the copy's stream shows that end without waiting for other
// traffic. The relay ignores messages with another prefix than its own.
const recoverMarkerPrefix = "pgoutbox-recover"

// runRecover is `pgoutbox recover`: for each publication stretch the relay recorded and nobody
// recovered, it reads the stretch again from a temporary copy of the slot through the recovery
// publication (which covered the outbox all along), publishes the events Kafka does not hold —
// with their true commit positions, transaction ids and order — tells clients of their channels
// to re-sync, moves the slot past the stretch and closes it. Without --apply it only says what
// it would do.
func runRecover(ctx context.Context, cfg *Config, base zerolog.Logger, stdout io.Writer) error {
	log := base.With().Str("component", "recover").Logger()
	table, err := cfg.Table()
	if err != nil {
		return err
	}
	say := func(format string, args ...any) { _, _ = fmt.Fprintf(stdout, format+"\n", args...) }
	conn, err := capture.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close()

	gaps, err := capture.OpenGaps(ctx, conn, table, cfg.Slot)
	if err != nil {
		return err
	}
	current, err := capture.ReadSlot(ctx, conn, cfg.Slot)
	if err != nil {
		return err
	}
	if slotLost(current, gaps) {
		return recoverLostSlot(ctx, conn, cfg, table, current, gaps, base, say)
	}
	if len(gaps) == 0 {
		say("nothing to recover: slot %s is not lost and has no open publication stretch", cfg.Slot)
		return nil
	}
	for _, g := range gaps {
		say("open publication stretch: %s", g)
	}
	slot, err := capture.CheckSlot(ctx, conn, cfg.Slot)
	if err != nil {
		return err
	}
	if slot.Active {
		return fmt.Errorf("%w: slot %q is streamed by process %d: stop the relay first, then run `pgoutbox recover` again",
			capture.ErrSlotInUse, cfg.Slot, slot.ActivePID)
	}
	if cfg.AcceptLoss {
		return acceptLoss(ctx, conn, cfg, table, gaps, log, say)
	}
	if err := capture.CheckPublication(ctx, conn, cfg.Publication, table); err != nil {
		return fmt.Errorf("%w; then run `pgoutbox recover` again", err)
	}
	recovery := capture.RecoveryPublication(cfg.Publication)
	if err := capture.CheckPublication(ctx, conn, recovery, table); err != nil {
		return fmt.Errorf("the recovery publication is missing or incomplete (%w): `pgoutbox setup` creates it, but it can re-read "+
			"only WAL written after its creation; if it was created after the stretch began, `pgoutbox recover --accept-loss --apply` "+
			"is the only way on", err)
	}

	end, err := stretchEnd(ctx, conn, log)
	if err != nil {
		return err
	}
	say("reading WAL from the slot's confirmed position %s to %s through publication %s (a temporary copy of the slot; the slot itself stays where it is)",
		slot.ConfirmedFlushLSN, end, recovery)
	events, err := readStretch(ctx, cfg, table, recovery, end, false, base)
	if err != nil {
		return err
	}

	pub, err := sink.New(cfg.sinkConfig(newMetrics()), base)
	if err != nil {
		return err
	}
	defer func() { _ = pub.Close() }()
	missing, err := notInKafka(ctx, pub, cfg.Topic, events)
	if err != nil {
		return err
	}
	channels := channelsOf(missing)
	say("%d events committed from %s to %s; %d of them are in Kafka already; %d to publish, in commit order, with their true positions, on %d channels",
		len(events), slot.ConfirmedFlushLSN, end, len(events)-len(missing), len(missing), len(channels))
	if len(missing) > 0 {
		say("first %s (id %s, xid %d), last %s (id %s, xid %d)", missing[0].Position(), missing[0].ID, missing[0].FullXID,
			missing[len(missing)-1].Position(), missing[len(missing)-1].ID, missing[len(missing)-1].FullXID)
	}
	if !cfg.Apply {
		say("dry run: nothing published; run `pgoutbox recover --apply` to publish them, tell those channels' clients to re-sync, and move slot %s to %s", cfg.Slot, end)
		return nil
	}

	if err := publish(ctx, pub, missing, channels, gaps); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)`, cfg.Slot, end.String()); err != nil {
		return fmt.Errorf("move slot %q to %s after publishing the stretch (its events are in Kafka; running `pgoutbox recover --apply` again publishes nothing twice): %w",
			cfg.Slot, end, err)
	}
	for _, g := range gaps {
		if err := capture.ResolveGap(ctx, conn, table, g, capture.GapRecovered, int64(len(missing))); err != nil {
			return err
		}
	}
	log.Info().Int("published", len(missing)).Int("already_in_kafka", len(events)-len(missing)).Int("channels_resynced", len(channels)).
		Stringer("slot_moved_to", end).Msg("publication stretch recovered")
	say("published %d events and a re-sync control event on each of %d channels; slot %s moved to %s; the stretch is closed: start the relay",
		len(missing), len(channels), cfg.Slot, end)
	return nil
}

// acceptLoss closes the stretches without publishing them: the operator gives their events up.
func acceptLoss(ctx context.Context, conn *capture.Conn, cfg *Config, table capture.Table, gaps []capture.Gap, log zerolog.Logger, say func(string, ...any)) error {
	if !cfg.Apply {
		say("dry run: --accept-loss --apply closes these stretches without publishing their events; the relay then streams on past them")
		return nil
	}
	for _, g := range gaps {
		if err := capture.ResolveGap(ctx, conn, table, g, capture.GapAccepted, 0); err != nil {
			return err
		}
		log.Warn().Str("slot", g.Slot).Stringer("from_lsn", g.From).Stringer("to_lsn", g.To).Stringer("covered_lsn", g.Covered).
			Str("reason", g.Reason).Msg("publication stretch closed by --accept-loss: events committed in it are given up, not published")
	}
	say("closed %d stretches without publishing them (--accept-loss)", len(gaps))
	return nil
}

// stretchEnd returns a WAL position past the stretch: the publication covers the inserts now,
// and every transaction that was running now has ended before it. A transaction's inserts are
// decoded with the publication as it was when they were written, so one that inserted while
// the publication did not cover them and committed after it did again has lost rows too: the
// end must lie past its commit. It then writes a marker message just past the end.
func stretchEnd(ctx context.Context, conn *capture.Conn, log zerolog.Logger) (capture.LSN, error) {
	var xmax uint64
	if err := conn.QueryRow(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint`).Scan(&xmax); err != nil {
		return 0, fmt.Errorf("read the current snapshot: %w", err)
	}
	for waited := time.Duration(0); ; waited += 200 * time.Millisecond {
		var done bool
		if err := conn.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint >= $1`, xmax).Scan(&done); err != nil {
			return 0, fmt.Errorf("read the current snapshot: %w", err)
		}
		if done {
			break
		}
		if waited > 0 && waited%(10*time.Second) == 0 {
			log.Info().Uint64("xmax", xmax).Msg("waiting for the transactions that were running to end (pg_stat_activity shows them)")
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	end, err := capture.CurrentWAL(ctx, conn)
	if err != nil {
		return 0, err
	}
	if _, err := conn.Exec(ctx, `SELECT pg_logical_emit_message(true, $1, 'end')`, recoverMarkerPrefix); err != nil {
		return 0, fmt.Errorf("write the end marker: %w", err)
	}
	return end, nil
}

// readStretch decodes the slot's copy through publication until the first transaction that
// commits at or after end, and returns the events of those before, in commit order.
// Lean keeps of each event only what notInKafka needs (its payload and headers dropped).
func readStretch(ctx context.Context, cfg *Config, table capture.Table, publication string, end capture.LSN, lean bool, log zerolog.Logger) ([]capture.Event, error) {
	sc := cfg.streamConfig(table)
	sc.CopySlot = true
	sc.DecodePublication = publication
	st := capture.NewStream(sc, log)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start, err := st.Open(cctx)
	defer func() { _ = st.Close(context.Background()) }()
	if err != nil {
		return nil, err
	}
	c := &collector{end: end, stop: cancel, confirmed: start, room: make(chan struct{}), lean: lean}
	err = st.Run(cctx, c)
	if c.reached {
		return c.events, nil
	}
	if err == nil || errors.Is(err, context.Canceled) && ctx.Err() == nil {
		err = errors.New("the copy of the slot stopped before the end of the stretch")
	}
	return nil, fmt.Errorf("read the stretch again: %w", err)
}

// collector is the capture.Output of readStretch: it keeps every event of the transactions that
// commit before end, and stops the stream at the first one that does not.
type collector struct {
	lean      bool
	end       capture.LSN
	stop      func()
	reached   bool
	events    []capture.Event
	pending   []capture.Event
	confirmed capture.LSN
	room      chan struct{}
}

func (c *collector) Begin(b capture.Begin) uint64 {
	if b.FinalLSN >= c.end {
		c.reached = true
		c.stop()
	}
	c.pending = c.pending[:0]
	return 1
}

func (c *collector) Offer(_ uint64, ev capture.Event) (bool, error) {
	if !c.reached {
		if c.lean {
			ev.Payload, ev.Headers = nil, nil
		}
		c.pending = append(c.pending, ev)
	}
	return true, nil
}

func (c *collector) Room() <-chan struct{} { return c.room }

func (c *collector) Commit(_ uint64, cm capture.Commit) error {
	if !c.reached {
		c.events = append(c.events, c.pending...)
		c.confirmed = cm.EndLSN
	}
	c.pending = c.pending[:0]
	return nil
}

func (c *collector) Idle(walEnd capture.LSN) {
	if walEnd > c.end && len(c.pending) == 0 {
		// The server has sent everything up to walEnd, so no transaction before end is left.
		c.reached = true
		c.stop()
	}
}

func (c *collector) Confirmed() capture.LSN { return c.confirmed }
func (c *collector) Busy() bool             { return false }

// notInKafka returns the events whose positions their topic does not hold: an exact test, so
// that running recover twice publishes nothing twice, and events of the stretch are published
// even where Kafka holds later events of the same partition.
func notInKafka(ctx context.Context, pub *sink.Publisher, defaultTopic string, events []capture.Event) ([]capture.Event, error) {
	if len(events) == 0 {
		return nil, nil
	}
	// A record's timestamp is its commit time; commit times follow the commit order within the
	// time it takes to write a commit record, so a minute of margin reads every record the
	// stretch may have.
	since := events[0].CommitTime
	for _, e := range events {
		if e.CommitTime.Before(since) {
			since = e.CommitTime
		}
	}
	since = since.Add(-time.Minute)
	present := map[string]map[string]bool{}
	var out []capture.Event
	for _, e := range events {
		topic := e.Topic
		if topic == "" {
			topic = defaultTopic
		}
		if present[topic] == nil {
			seen, err := pub.PositionsSince(ctx, topic, since)
			if err != nil {
				return nil, err
			}
			present[topic] = seen
		}
		if !present[topic][e.Position().String()] {
			out = append(out, e)
		}
	}
	return out, nil
}

// channelsOf returns the channels of events, sorted.
func channelsOf(events []capture.Event) []string {
	set := map[string]string{}
	for _, e := range events {
		set[e.Channel] = e.Topic
	}
	out := make([]string, 0, len(set))
	for ch := range set {
		out = append(out, ch)
	}
	sort.Strings(out)
	return out
}

// publish sends the events in commit order, then one re-sync control event per channel, and
// returns once Kafka acknowledged them all.
func publish(ctx context.Context, pub *sink.Publisher, events []capture.Event, channels []string, gaps []capture.Gap) error {
	topicOf := map[string]string{}
	for _, e := range events {
		topicOf[e.Channel] = e.Topic
	}
	msgs := make([]sink.Message, 0, len(events)+len(channels))
	for _, e := range events {
		msgs = append(msgs, pipeline.ToMessage(0, &e, 0))
	}
	g := gaps[0]
	for _, ch := range channels {
		msgs = append(msgs, resyncMessage(topicOf[ch], ch, "publication stretch recovered", g.From.String(), g.To.String()))
	}
	return sendAll(ctx, pub, msgs, "the stretch")
}

// sendAll publishes msgs in order and returns once Kafka acknowledged them all. The caller's
// exact test chose what to send: the sink's tail test is off (a zero source).
func sendAll(ctx context.Context, pub *sink.Publisher, msgs []sink.Message, what string) error {
	pub.BeginSession(record.Source{})
	in := make(chan sink.Message, len(msgs))
	for _, m := range msgs {
		in <- m
	}
	close(in)
	acked := 0
	if err := pub.Run(ctx, in, func(ms []sink.Message) { acked += len(ms) }); err != nil {
		return fmt.Errorf("publish %s: %w", what, err)
	}
	if acked != len(msgs) {
		return fmt.Errorf("publish %s: Kafka acknowledged %d of %d records", what, acked, len(msgs))
	}
	return nil
}

// resyncMessage is the control event that tells a channel's clients to bootstrap again (the
// models SDK calls sync): events of the stretch reach Kafka after later ones may have, so a
// client may hold state that lacks them. It has no position: it is not an event of the stream.
func resyncMessage(topic, channel, reason, from, to string) sink.Message {
	return resyncRecord(topic, channel, map[string]string{"reason": reason, "from_lsn": from, "to_lsn": to})
}

// resyncRecord is a re-sync control record for channel in topic; fields go into its JSON value
// next to "control".
func resyncRecord(topic, channel string, fields map[string]string) sink.Message {
	v := map[string]string{"control": record.ControlResync}
	for k, f := range fields {
		v[k] = f
	}
	value, _ := json.Marshal(v)
	return sink.Message{Topic: topic, Key: []byte(channel), Value: value, Time: time.Now(), ID: "resync:" + channel,
		Headers: []record.Header{
			{Key: record.HeaderControl, Value: []byte(record.ControlResync)},
			{Key: record.HeaderChannel, Value: []byte(channel)},
		}}
}
