package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
)

// statusExitUnknown is the exit status of `pgoutbox status` when the slot is lost or missing,
// or when its state cannot be read: a monitoring agent must alert in all three cases.
const statusExitUnknown = 3

// slotReport is `pgoutbox status --json`.
type slotReport struct {
	Slot               string   `json:"slot"`
	Level              string   `json:"level"`
	Reasons            []string `json:"reasons,omitempty"`
	Action             string   `json:"action,omitempty"`
	Exists             bool     `json:"exists"`
	WALStatus          string   `json:"wal_status"`
	Active             bool     `json:"active"`
	ActivePID          int32    `json:"active_pid,omitempty"`
	UnconfirmedBytes   int64    `json:"unconfirmed_bytes"`
	RetainedBytes      int64    `json:"retained_bytes"`
	SafeWALBytes       int64    `json:"safe_wal_bytes"`
	MaxSlotWALKeepSize int64    `json:"max_slot_wal_keep_size_bytes"`
	ConfirmedFlushLSN  string   `json:"confirmed_flush_lsn"`
	CurrentLSN         string   `json:"current_wal_lsn"`
	// PostgreSQL 17 and later; empty or false before.
	InvalidationReason string `json:"invalidation_reason,omitempty"`
	InactiveSince      string `json:"inactive_since,omitempty"`
	Failover           bool   `json:"failover"`
	Synced             bool   `json:"synced"`
	// PublicationChanged: a catalog row of the publication is newer than the slot's
	// catalog_xmin (capture.PublicationChangedSinceSlot). Not a level: the next start (or the
	// running relay's guard) verifies from the WAL whether it filtered any insert.
	PublicationChanged bool `json:"publication_changed_since_slot"`
}

// runStatus is `pgoutbox status`: the slot's figures and alarm level, for people and for cron
// or a monitoring agent. The exit status is the level: 0 ok, 1 warn, 2 critical, 3 lost/missing.
func runStatus(ctx context.Context, cfg *Config, stdout io.Writer) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := capture.Connect(cctx, cfg.DatabaseURL)
	if err != nil {
		return statusExitUnknown, err
	}
	defer conn.Close()
	st, err := capture.ReadSlot(cctx, conn, cfg.Slot)
	if err != nil {
		return statusExitUnknown, err
	}
	// The publication and the recorded stretches count too (capture.Thresholds.Assess).
	var pubProblem error
	var gaps []capture.Gap
	var changed bool
	if table, err := cfg.Table(); err == nil {
		pst, err := capture.ReadPublicationState(cctx, conn, cfg.Publication, table)
		if err != nil {
			return statusExitUnknown, err
		}
		pubProblem = pst.Problem(cfg.Publication, table)
		if gaps, err = capture.OpenGaps(cctx, conn, table, cfg.Slot); err != nil {
			return statusExitUnknown, err
		}
		if changed, err = capture.PublicationChangedSinceSlot(cctx, conn, cfg.Slot, cfg.Publication, table); err != nil {
			return statusExitUnknown, err
		}
	}
	alarm := cfg.thresholds().Assess(st, 0, pubProblem, gaps)
	level, reasons, action := alarm.Level, alarm.Reasons, alarm.Action
	rep := slotReport{
		Slot: cfg.Slot, Level: level.String(), Reasons: reasons, Action: action,
		Exists: st.Exists, WALStatus: st.WALStatus, Active: st.Active, ActivePID: st.ActivePID,
		UnconfirmedBytes: st.UnconfirmedBytes, RetainedBytes: st.RetainedBytes, SafeWALBytes: st.SafeWALBytes,
		InvalidationReason: st.InvalidationReason, Failover: st.Failover, Synced: st.Synced,
		MaxSlotWALKeepSize: st.MaxSlotWALKeepSize, ConfirmedFlushLSN: lsnText(st.Exists, st.ConfirmedFlushLSN.String()), CurrentLSN: st.CurrentLSN.String(),
		PublicationChanged: changed,
	}
	if !st.InactiveSince.IsZero() {
		rep.InactiveSince = st.InactiveSince.UTC().Format(time.RFC3339)
	}
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = printStatus(stdout, rep)
	}
	return int(level), err
}

func printStatus(w io.Writer, r slotReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { _, _ = fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("slot", r.Slot)
	row("level", r.Level)
	if r.Exists {
		row("wal_status", r.WALStatus)
		row("active", fmt.Sprintf("%v (pid %d)", r.Active, r.ActivePID))
		row("unconfirmed", human(r.UnconfirmedBytes))
		row("retained", human(r.RetainedBytes))
		row("safe_wal_size", human(r.SafeWALBytes))
		row("max_slot_wal_keep_size", human(r.MaxSlotWALKeepSize))
		row("confirmed_flush_lsn", r.ConfirmedFlushLSN)
		row("failover", fmt.Sprintf("%v (synced on this server: %v)", r.Failover, r.Synced))
		if r.InactiveSince != "" {
			row("inactive_since", r.InactiveSince)
		}
		if r.InvalidationReason != "" {
			row("invalidation_reason", r.InvalidationReason)
		}
	}
	row("current_wal_lsn", r.CurrentLSN)
	if r.PublicationChanged {
		row("publication", "changed after the oldest WAL the slot may decode (newer than its catalog_xmin): "+
			"the relay verifies from the WAL that no outbox insert was filtered before it confirms past the slot's position")
	}
	for _, reason := range r.Reasons {
		row("reason", reason)
	}
	if r.Action != "" {
		row("action", r.Action)
	}
	return tw.Flush()
}

// lsnText is a slot's position for the report: "" when there is no slot.
func lsnText(exists bool, lsn string) string {
	if !exists {
		return ""
	}
	return lsn
}

// human prints a byte count with its exact value; -1 means unbounded.
func human(n int64) string {
	if n < 0 {
		return "unbounded"
	}
	const mib = 1 << 20
	if n < mib {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%.1f MiB (%d bytes)", float64(n)/mib, n)
}
