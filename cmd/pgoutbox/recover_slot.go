package main

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/rs/zerolog"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/pipeline"
	"github.com/pgoutbox/pgoutbox/record"
	"github.com/pgoutbox/pgoutbox/sink"
)

// slotLost reports whether recover faces a lost slot: invalidated, missing, or recorded lost by
// the relay and not recovered (the slot may exist again: created by `pgoutbox setup`, or by a
// `recover --apply` that did not finish; the relay refused to stream it meanwhile).
func slotLost(slot capture.Slot, gaps []capture.Gap) bool {
	return slot.Lost() || !slot.Exists || lostGap(gaps) != nil
}

func lostGap(gaps []capture.Gap) *capture.Gap {
	for i := range gaps {
		if gaps[i].Lost() {
			return &gaps[i]
		}
	}
	return nil
}

// lostPlan is what recover will do after a lost slot, computed from the outbox rows it read and
// the records Kafka holds.
type lostPlan struct {
	rows      int                 // rows in the table (in the snapshot)
	inKafka   []string            // ids of rows Kafka holds already
	events    []capture.Event     // to publish, in order, with their republished positions
	bad       []string            // rows that cannot be published: "id: reason"
	channels  map[string]string   // channel -> topic of its re-sync record
	seenKafka map[string]struct{} // channels of the stream's records read from Kafka
}

// recoverLostSlot is `pgoutbox recover` for a lost slot: it creates the slot again, so that
// the relay can stream from now, republishes from the outbox table the rows committed before
// the new slot's start that Kafka does not hold, tells the clients of every channel that may
// have a gap to re-sync, and closes the loss. Without --apply it only says what it would do.
func recoverLostSlot(ctx context.Context, conn *capture.Conn, cfg *Config, table capture.Table, slot capture.Slot, gaps []capture.Gap,
	base zerolog.Logger, say func(string, ...any)) error {
	log := base.With().Str("component", "recover").Logger()
	recorded := lostGap(gaps)
	from := slot.ConfirmedFlushLSN
	switch {
	case slot.Lost():
		say("slot %s was invalidated (wal_status=%s%s); it had confirmed %s: events committed after it that are not in Kafka are gone from the WAL",
			cfg.Slot, slot.WALStatus, prefixed(", invalidation_reason=", slot.InvalidationReason), slot.ConfirmedFlushLSN)
	case !slot.Exists && recorded != nil:
		say("slot %s does not exist; the relay recorded it lost: %s", cfg.Slot, recorded)
	case !slot.Exists:
		say("slot %s does not exist and no loss is recorded: if a relay streamed from it before, events committed since it went may be missing "+
			"(before a first start, `pgoutbox setup` is all that is needed)", cfg.Slot)
	default:
		say("slot %s exists again, but its loss was not recovered: %s; nothing streamed from it since (the relay refuses to start), so it is created again", cfg.Slot, recorded)
	}
	if recorded != nil { // the lost slot's position, not a new slot's
		from = recorded.From
	}
	if slot.Active {
		return fmt.Errorf("%w: slot %q is streamed by process %d: stop the relay first, then run `pgoutbox recover` again",
			capture.ErrSlotInUse, cfg.Slot, slot.ActivePID)
	}
	for _, g := range gaps {
		if !g.Lost() {
			say("open publication stretch: %s; its WAL is gone with the slot: recovering the lost slot covers it as far as the table can", g)
		}
	}

	republish := fmt.Sprintf("republish from %s, once each, the rows committed before that which Kafka does not hold", table.QualifiedName())
	if !cfg.From().Table() {
		republish = "nothing to republish (WAL-only outbox)"
	}
	say("plan: drop slot %s and create it again (it streams every transaction that commits from then on); %s; "+
		"send a re-sync control record to every channel that may have a gap; close the loss", cfg.Slot, republish)
	sayLimits(cfg, say)
	if cfg.AcceptLoss {
		say("--accept-loss does not apply to a lost slot: what the table holds is republished; what it does not hold is lost either way")
	}

	pub, err := sink.New(cfg.sinkConfig(newMetrics()), base)
	if err != nil {
		return err
	}
	defer func() { _ = pub.Close() }()
	routing := capture.RoutingOf(cfg.Publication, table)

	if !cfg.Apply {
		src, err := capture.IdentifySource(ctx, cfg.DatabaseURL, cfg.Slot, routing)
		if err != nil {
			return err
		}
		err = capture.ReadInSnapshot(ctx, conn, func(ctx context.Context, q capture.Querier, ts bool, next uint64) error {
			p, err := planLost(ctx, q, pub, cfg, table, src, 0, ts, next)
			if err == nil {
				sayPlan(cfg, p, ts, say)
			}
			return err
		})
		if err != nil {
			return err
		}
		say("dry run: nothing changed; run `pgoutbox recover --apply` to do it (the figures above are as of now: --apply counts again in the new slot's snapshot)")
		return nil
	}

	// The loss is recorded first: if this run stops half-way, the relay keeps refusing to start,
	// and the next run creates the slot again and publishes only what Kafka lacks.
	if recorded == nil {
		wal, err := capture.CurrentWAL(ctx, conn)
		if err != nil {
			return err
		}
		g := capture.Gap{Slot: cfg.Slot, Kind: capture.GapSlotLost, From: from, To: wal,
			Reason: "slot " + lostWhy(slot) + ", found by `pgoutbox recover`"}
		if err := capture.RecordGap(ctx, conn, table, g); err != nil {
			return err
		}
		gaps = append(gaps, g)
	}
	var p *lostPlan
	var ns capture.NewSlot
	err = capture.RecreateSlot(ctx, cfg.DatabaseURL, cfg.Slot, routing, slot.Failover, func(ctx context.Context, q capture.Querier, s capture.NewSlot) error {
		ns = s
		var err error
		p, err = planLost(ctx, q, pub, cfg, table, s.Source, s.Start, s.CommitTimestamps, s.NextXID)
		return err
	})
	if err != nil {
		return err
	}
	say("slot %s created again at %s: the relay streams every transaction that commits from there on", cfg.Slot, ns.Start)
	sayPlan(cfg, p, ns.CommitTimestamps, say)
	if err := publishLost(ctx, pub, p, from, ns.Start); err != nil {
		return err
	}
	deleted, err := deletePublished(ctx, cfg, table, p)
	if err != nil {
		return err
	}
	for _, g := range gaps {
		if err := capture.ResolveGap(ctx, conn, table, g, capture.GapRecovered, int64(len(p.events))); err != nil {
			return err
		}
	}
	log.Info().Int("published", len(p.events)).Int("already_in_kafka", len(p.inKafka)).Int("bad_rows", len(p.bad)).
		Int("channels_resynced", len(p.channels)).Int("deleted", deleted).Stringer("slot_start", ns.Start).Msg("lost slot recovered")
	published := "published no events"
	if len(p.events) > 0 {
		published = fmt.Sprintf("published %d events (positions %s to %s)", len(p.events), p.events[0].Position(), p.events[len(p.events)-1].Position())
	}
	say("%s and a re-sync control record on each of %d channels; %s; the loss is closed: start the relay",
		published, len(p.channels), deletedText(cfg, deleted))
	return nil
}

// sayLimits says what can and cannot be recovered, for the configured outbox and retention.
func sayLimits(cfg *Config, say func(string, ...any)) {
	if cfg.From().Messages() {
		say("events sent with pgoutbox_send() (WAL-only) after the loss cannot be republished: the WAL, their only copy, is gone; " +
			"their channels cannot be known, so every channel of the stream found in Kafka is told to re-sync")
	}
	if !cfg.From().Table() {
		say("--events-from=messages: nothing is read from the outbox table")
		return
	}
	if cfg.Retention == "delete-after-publish" {
		say("--retention=delete-after-publish: the relay deletes a row only after Kafka acknowledged it, so every row it did not publish is still in the table " +
			"(unless the application deleted it); rows Kafka holds are deleted now, as the relay would have")
	} else {
		say("--retention=%s: the application deletes rows; a row it deleted before Kafka had it cannot be republished, and its channel cannot be known, "+
			"so every channel of the stream found in Kafka or in the table is told to re-sync; a row whose record Kafka's own retention removed is published again "+
			"(with its true transaction id, so a client's snapshot rule still skips it)", cfg.Retention)
	}
}

// sayPlan prints the figures of a plan and the order used.
func sayPlan(cfg *Config, p *lostPlan, commitTimestamps bool, say func(string, ...any)) {
	if !cfg.From().Table() {
		say("nothing to publish; re-sync records for %d channels", len(p.channels))
		return
	}
	say("%d rows in the table; %d of them are in Kafka already; %d to publish; %d that cannot be published (left out, listed below); re-sync records for %d channels",
		p.rows, len(p.inKafka), len(p.events), len(p.bad), len(p.channels))
	if commitTimestamps {
		say("order: by commit time (track_commit_timestamp = on), then transaction id, then id; transactions committed within the same microseconds " +
			"may be stamped in the opposite order of their commits")
	} else {
		say("order: by id within each channel (track_commit_timestamp = off): commit order across transactions that wrote a channel concurrently is NOT guaranteed; " +
			"turn track_commit_timestamp on to order the rows of a later loss by commit time")
	}
	if len(p.events) > 0 {
		f, l := p.events[0], p.events[len(p.events)-1]
		say("first id %s (xid %d, channel %s), last id %s (xid %d, channel %s)", f.ID, f.FullXID, f.Channel, l.ID, l.FullXID, l.Channel)
	}
	for _, b := range p.bad {
		say("cannot be published: %s", b)
	}
}

// planLost reads the outbox rows in q's snapshot and the stream's records in Kafka, and
// returns what to publish: the rows Kafka does not hold, in order, as events at their
// republished positions after start (0 in a dry run), and the channels to re-sync.
func planLost(ctx context.Context, q capture.Querier, pub *sink.Publisher, cfg *Config, table capture.Table, src record.Source,
	start capture.LSN, commitTimestamps bool, nextXID uint64) (*lostPlan, error) {
	p := &lostPlan{channels: map[string]string{}, seenKafka: map[string]struct{}{}}
	var rows *capture.OutboxRows
	if cfg.From().Table() {
		var err error
		if rows, err = capture.ReadOutboxRows(ctx, q, table, commitTimestamps, nextXID); err != nil {
			return nil, err
		}
		p.rows = len(rows.Rows)
	}

	// Which rows Kafka holds: records of this stream (system, slot, routing: any timeline) with
	// the row's id, in the row's topic. With every commit time known, reading from a minute
	// before the oldest is enough (a record's timestamp is its commit time); else from the start.
	topicOf := func(capture.TableRow) string { return cfg.Topic }
	var since time.Time
	if rows != nil {
		since = time.Now()
		for _, r := range rows.Rows {
			if r.Commit.IsZero() {
				since = time.Time{}
				break
			}
			if r.Commit.Before(since) {
				since = r.Commit
			}
		}
		if !since.IsZero() {
			since = since.Add(-time.Minute)
		}
	}
	topics := map[string]map[string]bool{cfg.Topic: nil}
	var rowEvents map[string]string // id -> topic, for tables with a topic column
	if rows != nil && table.Topic != "" {
		// The topic column decides: build each row's event once to read it.
		rowEvents = map[string]string{}
		for _, r := range rows.Rows {
			ev, err := rows.Event(r, record.Position{}, time.Time{}, nil)
			if err == nil && ev.Topic != "" {
				rowEvents[r.ID] = ev.Topic
				topics[ev.Topic] = nil
			}
		}
		topicOf = func(r capture.TableRow) string {
			if t, ok := rowEvents[r.ID]; ok {
				return t
			}
			return cfg.Topic
		}
	}
	topicOfChannel := map[string]string{}
	for topic := range topics {
		ids := map[string]bool{}
		err := pub.HeadersSince(ctx, topic, since, func(hs []record.Header) {
			if record.IsControl(hs) {
				return
			}
			v, _ := record.Lookup(hs, record.HeaderSource)
			s, ok := record.ParseSource(v)
			if !ok || s.SystemID != src.SystemID || s.Slot != src.Slot || s.Routing != src.Routing {
				return
			}
			if id, ok := record.Lookup(hs, record.HeaderID); ok {
				ids[id] = true
			}
			if ch, ok := record.Lookup(hs, record.HeaderChannel); ok {
				p.seenKafka[ch] = struct{}{}
				topicOfChannel[ch] = topic
			}
		})
		if err != nil {
			return nil, fmt.Errorf("read what topic %q holds: %w", topic, err)
		}
		topics[topic] = ids
	}

	var missing []capture.TableRow
	if rows != nil {
		for _, r := range rows.Rows {
			if topics[topicOf(r)][r.ID] {
				p.inKafka = append(p.inKafka, r.ID)
				continue
			}
			missing = append(missing, r)
		}
		capture.SortRows(missing)
	}
	srcHeader := []byte(src.Header())
	now := time.Now()
	var rank uint32
	for _, r := range missing {
		pos := record.RepublishedPosition(record.LSN(start), rank)
		at := r.Commit
		if at.IsZero() {
			at = now
		}
		ev, err := rows.Event(r, pos, at, srcHeader)
		if err != nil {
			p.bad = append(p.bad, r.ID+": "+err.Error())
			continue
		}
		ev.Headers = append(ev.Headers, record.Header{Key: record.HeaderRepublished, Value: []byte("table")})
		if ev.Topic == "" {
			ev.Topic = cfg.Topic
		}
		p.events = append(p.events, ev)
		p.channels[ev.Channel] = ev.Topic
		rank++
	}

	// Channels whose events may be gone without a trace: every channel of the stream.
	if cfg.From().Messages() || cfg.Retention != "delete-after-publish" {
		for ch := range p.seenKafka {
			if _, ok := p.channels[ch]; !ok {
				p.channels[ch] = topicOfChannel[ch]
			}
		}
		if rows != nil {
			for _, r := range rows.Rows {
				if _, ok := p.channels[r.Channel]; !ok && r.Channel != "" {
					p.channels[r.Channel] = topicOf(r)
				}
			}
		}
	}
	return p, nil
}

// publishLost sends the events in order, then one re-sync control record per channel, and
// returns once Kafka acknowledged them all.
func publishLost(ctx context.Context, pub *sink.Publisher, p *lostPlan, from, start capture.LSN) error {
	msgs := make([]sink.Message, 0, len(p.events)+len(p.channels))
	for i := range p.events {
		msgs = append(msgs, pipeline.ToMessage(0, &p.events[i], 0))
	}
	channels := make([]string, 0, len(p.channels))
	for ch := range p.channels {
		channels = append(channels, ch)
	}
	sort.Strings(channels)
	for _, ch := range channels {
		msgs = append(msgs, resyncMessage(p.channels[ch], ch, "slot lost", from.String(), start.String()))
	}
	return sendAll(ctx, pub, msgs, "the lost slot's rows")
}

// deletePublished deletes, with --retention=delete-after-publish, the rows now in Kafka:
// those published and those Kafka held already (as the relay would have, after its ack).
func deletePublished(ctx context.Context, cfg *Config, table capture.Table, p *lostPlan) (int, error) {
	if cfg.Retention != "delete-after-publish" {
		return 0, nil
	}
	ids := append([]string(nil), p.inKafka...)
	for _, e := range p.events {
		ids = append(ids, e.ID)
	}
	d := capture.NewOutboxDeleter(cfg.DatabaseURL, table)
	defer d.Close()
	if err := d.Prepare(ctx); err != nil {
		return 0, err
	}
	n := 0
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 1000)]
		ids = ids[len(batch):]
		done, err := d.Delete(ctx, batch)
		if err != nil {
			return n, fmt.Errorf("delete the published rows (they are in Kafka; running `pgoutbox recover --apply` again deletes the rest): %w", err)
		}
		n += len(done)
	}
	return n, nil
}

func deletedText(cfg *Config, n int) string {
	if cfg.Retention != "delete-after-publish" {
		return "no row deleted (--retention=" + cfg.Retention + ")"
	}
	return fmt.Sprintf("%d rows now in Kafka deleted from the table (--retention=delete-after-publish)", n)
}

func lostWhy(s capture.Slot) string {
	switch {
	case s.Lost():
		return "invalidated (wal_status=" + s.WALStatus + prefixed(", invalidation_reason=", s.InvalidationReason) + ")"
	case !s.Exists:
		return "missing"
	}
	return "lost"
}

func prefixed(prefix, v string) string {
	if v == "" {
		return ""
	}
	return prefix + v
}
