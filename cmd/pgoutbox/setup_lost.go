package main

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/record"
	"github.com/pgoutbox/pgoutbox/sink"
)

// A slot dropped while no relay ran leaves no trace in PostgreSQL: `pgoutbox setup` would create
// it again at the end of WAL, and the relay would stream on from there, skipping for good what
// was committed in between. Kafka keeps the trace: the records the old slot's relay wrote name
// it in their source header. So before setup creates a slot, it reads the ends of the topic's
// partitions; when they hold records of a slot of that name on this cluster, setup records the
// loss in the gap table once the slot exists, and the relay refuses to start until `pgoutbox
// recover --apply` has republished what the outbox table still holds.

// priorStream returns the last position that a slot named cfg.Slot of this cluster wrote to the
// topic when that slot does not exist now (nil when it exists, when its loss is already
// recorded, or when the topic holds no record of it).
func priorStream(ctx context.Context, conn *capture.Conn, cfg *Config, table capture.Table, base zerolog.Logger) (*record.Position, error) {
	slot, err := capture.ReadSlot(ctx, conn, cfg.Slot)
	if err != nil || slot.Exists {
		return nil, err
	}
	gaps, err := capture.OpenGaps(ctx, conn, table, cfg.Slot)
	if err != nil {
		return nil, err
	}
	if lostGap(gaps) != nil {
		return nil, nil // recorded by the relay: every start refuses already
	}
	src, err := capture.IdentifySource(ctx, cfg.DatabaseURL, cfg.Slot, capture.RoutingOf(cfg.Publication, table))
	if err != nil {
		return nil, err
	}
	pub, err := sink.New(sink.Config{Brokers: cfg.Brokers(), Topic: cfg.Topic, Security: cfg.kafkaSecurity()}, base)
	if err != nil {
		return nil, err
	}
	defer func() { _ = pub.Close() }()
	last, found, err := pub.LastOfStream(ctx, cfg.Topic, src.SystemID, cfg.Slot)
	if err != nil {
		return nil, fmt.Errorf("read topic %q before creating slot %q, to tell whether a relay streamed from a slot of that name before "+
			"(events committed since that slot went would be missing): %w; start Kafka (or correct the brokers) and run `pgoutbox setup` again",
			cfg.Topic, cfg.Slot, err)
	}
	if !found {
		return nil, nil
	}
	all, err := capture.AllGaps(ctx, conn, table, cfg.Slot)
	if err != nil {
		return nil, err
	}
	for _, g := range all {
		// A loss closed (recovered, or accepted by `pgoutbox drop-slot --yes`) that was seen after
		// the last record: nothing streamed from the slot since.
		if g.Lost() && g.Resolution != "" && g.To >= capture.LSN(last.LSN) {
			return nil, nil
		}
	}
	return &last, nil
}

// recordPriorLoss records, after setup created the slot, that a slot of that name streamed to
// the topic up to last before: a lost slot, which the relay refuses to stream past until
// `pgoutbox recover --apply` has run.
func recordPriorLoss(ctx context.Context, conn *capture.Conn, cfg *Config, table capture.Table, last record.Position, log zerolog.Logger) error {
	slot, err := capture.ReadSlot(ctx, conn, cfg.Slot)
	if err != nil {
		return err
	}
	g := capture.Gap{Slot: cfg.Slot, Kind: capture.GapSlotLost, From: capture.LSN(last.LSN), To: slot.ConfirmedFlushLSN,
		Reason: fmt.Sprintf("slot %q did not exist when `pgoutbox setup` ran, although topic %q holds records a slot of that name wrote "+
			"(the last at position %s): it was dropped while no relay ran; setup created it again at %s, so events committed in between "+
			"are not in Kafka", cfg.Slot, cfg.Topic, last, slot.ConfirmedFlushLSN)}
	if err := capture.RecordGap(ctx, conn, table, g); err != nil {
		return fmt.Errorf("%s; but recording the loss failed: %w; run `pgoutbox recover --apply` before starting the relay", g.Reason, err)
	}
	log.Warn().Str("slot", cfg.Slot).Str("topic", cfg.Topic).Stringer("last_position_in_kafka", last).Stringer("slot_start", slot.ConfirmedFlushLSN).
		Msg(g.Reason + "; recorded as a lost slot: the relay refuses to start until it is recovered: run `pgoutbox recover` to see what it " +
			"will do, then `pgoutbox recover --apply` (it creates the slot again, republishes the outbox rows that are not in Kafka and " +
			"tells clients to re-sync), then start the relay")
	return nil
}
