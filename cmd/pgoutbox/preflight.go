package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/sink"
	"github.com/rs/zerolog"
)

// preflight checks everything that a restart would not fix, so that a misconfiguration stops
// the process at once with a message naming the fix, instead of retrying forever.
// Kafka is checked afterwards, by awaitKafka, which waits for it. It reports whether the
// publication changed after the oldest WAL the slot may decode (unsure): the relay then
// verifies from the WAL that it covered the outbox inserts throughout.
func preflight(ctx context.Context, cfg *Config, table capture.Table, log zerolog.Logger) (unsure bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := capture.Connect(cctx, cfg.DatabaseURL)
	if err != nil {
		return false, err
	}
	defer conn.Close()

	info, err := capture.CheckServer(cctx, conn)
	if err != nil {
		return false, err
	}
	if info.MaxSlotWALKeepSize < 0 {
		log.Warn().Msg("max_slot_wal_keep_size is -1 (unbounded): if this relay stalls, its slot retains WAL until the disk is full; " +
			"set max_slot_wal_keep_size to a size the disk can spare (e.g. ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'; SELECT pg_reload_conf())")
	}
	if w := info.IdleSlotTimeoutWarning(); w != "" {
		log.Warn().Stringer("idle_replication_slot_timeout", info.IdleSlotTimeout).Msg(w)
	}
	// A stretch the publication guard recorded and nobody recovered refuses every start: the
	// slot would decode it again with the publication as it was then, and skip its inserts.
	if err := checkGaps(cctx, conn, cfg, table); err != nil {
		return false, err
	}
	var sendErr error
	if cfg.From().Messages() {
		sendErr = capture.CheckSendFunctions(cctx, conn, table, cfg.MessagePrefix)
	}
	if err := errors.Join(
		capture.CheckTable(cctx, conn, table),
		capture.CheckPublication(cctx, conn, cfg.Publication, table),
		sendErr,
	); err != nil {
		return false, err
	}
	if _, err := capture.CheckSlot(cctx, conn, cfg.Slot); err != nil {
		return false, err
	}
	if cfg.deleter(table) != nil {
		if _, err := capture.CheckRetention(cctx, conn, table); err != nil {
			return false, err
		}
	}
	unsure, err = capture.PublicationChangedSinceSlot(cctx, conn, cfg.Slot, cfg.Publication, table)
	if unsure {
		log.Info().Str("publication", cfg.Publication).
			Msg("the publication changed after the oldest WAL the slot may decode (its catalog rows are newer than the slot's catalog_xmin), " +
				"perhaps while no relay streamed: the relay verifies from the WAL that it covered the outbox inserts throughout before confirming past the slot's position")
	}
	return unsure, err
}

// kafkaWaitFirst is the first pause of awaitKafka; the pauses double up to --reconnect-max.
const kafkaWaitFirst = 500 * time.Millisecond

// awaitKafka checks the topic and the dead-letter topic before the first session. While Kafka
// does not answer (see [sink.Unavailable]) it waits, as a running relay does: it retries with
// a doubling pause up to --reconnect-max, logs each attempt with what it waits for and what to
// check, and /readyz answers 503 with the same reason. Nothing is read from PostgreSQL or
// confirmed meanwhile. A missing topic or a refusal stays an error: waiting would not fix it.
func awaitKafka(ctx context.Context, cfg *Config, pub *sink.Publisher, h *health, log zerolog.Logger) error {
	wait := kafkaWaitFirst
	since := time.Now()
	for attempt := 1; ; attempt++ {
		err := checkTopics(ctx, cfg, pub)
		if err == nil {
			if attempt > 1 {
				log.Info().Int("attempts", attempt).Stringer("waited", time.Since(since).Round(time.Millisecond)).
					Msg("kafka answers; streaming starts")
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !sink.Unavailable(err) {
			return err
		}
		h.set(false, "waiting for Kafka: "+err.Error())
		log.Warn().Err(err).Int("attempt", attempt).Stringer("retry_in", wait).
			Msg("waiting for Kafka before streaming: nothing is read from PostgreSQL or confirmed until it answers; " +
				"check --kafka-brokers and that Kafka is running")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, max(cfg.ReconnectMax, kafkaWaitFirst))
	}
}

// checkTopics reads the partition counts of the topic and the dead-letter topic.
func checkTopics(ctx context.Context, cfg *Config, pub *sink.Publisher) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := pub.Partitions(cctx, cfg.Topic); err != nil {
		return err
	}
	if dlq := cfg.DeadLetter(); dlq != "" {
		if _, err := pub.Partitions(cctx, dlq); err != nil {
			return fmt.Errorf("dead-letter topic (--on-bad-row=dead-letter): %w", err)
		}
	}
	return nil
}
