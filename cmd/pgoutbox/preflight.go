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
func preflight(ctx context.Context, cfg *Config, table capture.Table, pub *sink.Publisher, log zerolog.Logger) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := capture.Connect(cctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close()

	info, err := capture.CheckServer(cctx, conn)
	if err != nil {
		return err
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
		return err
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
		return err
	}
	if _, err := capture.CheckSlot(cctx, conn, cfg.Slot); err != nil {
		return err
	}
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
