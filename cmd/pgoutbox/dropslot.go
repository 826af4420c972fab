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
	if err := capture.DropSlot(cctx, conn, cfg.Slot); err != nil {
		return err
	}
	log.Warn().Str("component", "setup").Str("slot", cfg.Slot).Stringer("confirmed_lsn", st.ConfirmedFlushLSN).Msg("replication slot dropped")
	return nil
}
