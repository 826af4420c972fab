package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/rs/zerolog"
)

// errNeedYes is returned when drop-slot runs without --yes: it only explains.
var errNeedYes = errors.New("nothing dropped: re-run with --yes to drop the slot")

// runDropSlot is `pgoutbox drop-slot`: it drops the replication slot so that it stops pinning
// WAL. Without --yes it only says what would be lost. It refuses while a process streams from
// the slot: stop every relay first.
func runDropSlot(ctx context.Context, cfg *Config, log zerolog.Logger, stdout io.Writer) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := capture.Connect(cctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	st, err := capture.ReadSlot(cctx, conn, cfg.Slot)
	if err != nil {
		return err
	}
	if !st.Exists {
		_, err := fmt.Fprintf(stdout, "slot %q does not exist: nothing to drop\n", cfg.Slot)
		return err
	}
	if st.Active {
		return fmt.Errorf("slot %q is in use by process %d: stop every pgoutbox that streams from it, then run drop-slot again", cfg.Slot, st.ActivePID)
	}
	_, _ = fmt.Fprintf(stdout, "WARNING: dropping slot %q gives up every outbox row committed after %s that is not in Kafka yet\n"+
		"(%d bytes of WAL are unconfirmed). Those rows will not be published by a new slot; re-publish them\n"+
		"from the outbox table if you need them. The WAL the slot holds (%d bytes) is freed at the next checkpoint.\n",
		cfg.Slot, st.ConfirmedFlushLSN, st.UnconfirmedBytes, st.RetainedBytes)
	if !cfg.Yes {
		return errNeedYes
	}
	wal, err := capture.CurrentWAL(cctx, conn)
	if err != nil {
		return err
	}
	if err := capture.DropSlot(cctx, conn, cfg.Slot); err != nil {
		return err
	}
	acceptDrop(cctx, conn, cfg, st.ConfirmedFlushLSN, wal, log)
	log.Warn().Str("component", "setup").Str("slot", cfg.Slot).Stringer("confirmed_lsn", st.ConfirmedFlushLSN).Msg("replication slot dropped")
	return nil
}

// acceptDrop records the drop as a lost slot whose loss the operator accepted (`--yes`), up to
// wal, the WAL position before the drop: `pgoutbox setup` then creates the slot again without
// taking the records the old slot wrote to the topic for a loss to recover. A loss the relay
// recorded and nobody recovered stays open. When the record fails, setup will report the loss:
// `pgoutbox recover --apply` then republishes what the table holds, which loses nothing.
func acceptDrop(ctx context.Context, conn *capture.Conn, cfg *Config, confirmed, wal capture.LSN, log zerolog.Logger) {
	table, err := cfg.Table()
	if err == nil {
		var gaps []capture.Gap
		if gaps, err = capture.OpenGaps(ctx, conn, table, cfg.Slot); err == nil && lostGap(gaps) != nil {
			return
		}
	}
	if err == nil {
		g := capture.Gap{Slot: cfg.Slot, Kind: capture.GapSlotLost, From: confirmed, To: wal, Reason: "slot dropped by `pgoutbox drop-slot --yes`"}
		if err = capture.RecordGap(ctx, conn, table, g); err == nil {
			err = capture.ResolveGap(ctx, conn, table, g, capture.GapAccepted, 0)
		}
	}
	if err != nil {
		log.Warn().Str("component", "setup").Str("slot", cfg.Slot).Err(err).Msg("could not record the drop as accepted: " +
			"`pgoutbox setup` will take the slot's records in the topic for a loss, and the relay will refuse to start until `pgoutbox recover --apply` has run")
	}
}
