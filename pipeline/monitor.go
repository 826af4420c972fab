package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/rs/zerolog"
)

// monitor is the slot-safety loop: every MonitorInterval it reads the slot's figures, tells the
// observer, and raises or clears the alarm — one log line per change of level, never one per
// check. A lost slot ends the relay: continuing would hide a gap. It returns ctx.Err() when ctx
// is done.
func (r *Pipeline) monitor(ctx context.Context) error {
	defer r.deps.Slots.Close()
	m := &slotWatch{slot: r.cfg.Slot, th: r.cfg.Thresholds, log: r.deps.Log.With().Str("component", "monitor").Logger()}
	for {
		if err := r.checkSlot(ctx, m); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.clock.After(r.cfg.MonitorInterval):
		}
	}
}

// checkSlot reads the slot once. Failing to read is logged, not fatal: the database may be
// restarting, and the replication session has its own reconnection.
func (r *Pipeline) checkSlot(ctx context.Context, m *slotWatch) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := r.deps.Slots.ReadSlotStatus(cctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn().Err(err).Msg("cannot read the slot's status; retrying at the next check")
		}
		r.deps.Slots.Close()
		return nil
	}
	oldest := r.Progress().OldestUnacked
	// The publication is the guard's (pubguard.go): here only the slot's figures.
	alarm := m.th.Assess(st, oldest, nil, nil)
	r.obs.SlotChecked(st, alarm.Level, alarm.Reasons)
	m.transition(st, oldest, alarm)
	if alarm.Level == capture.LevelLost {
		return fmt.Errorf("%w (%s)", capture.SlotLostError(st, r.Progress().Confirmed), capture.FormatReasons(alarm.Reasons))
	}
	return nil
}

// slotWatch remembers the alarm level between checks, so that only changes are logged.
type slotWatch struct {
	slot  string
	th    capture.Thresholds
	log   zerolog.Logger
	level capture.Level
}

// transition logs a change of alarm level once.
func (m *slotWatch) transition(st capture.Slot, oldestUnacked time.Duration, alarm capture.Alarm) {
	level := alarm.Level
	if level == m.level {
		return
	}
	prev := m.level
	m.level = level
	ev := m.log.Info()
	switch level {
	case capture.LevelWarn:
		ev = m.log.Warn()
	case capture.LevelCritical, capture.LevelLost:
		ev = m.log.Error()
	}
	ev = ev.Str("slot", m.slot).Stringer("alarm", level).Stringer("previous_alarm", prev).
		Int64("unconfirmed_bytes", st.UnconfirmedBytes).Int64("retained_bytes", st.RetainedBytes).
		Int64("safe_wal_bytes", st.SafeWALBytes).Str("wal_status", st.WALStatus).Bool("active", st.Active).
		Stringer("confirmed_lsn", st.ConfirmedFlushLSN).Stringer("oldest_unacked", oldestUnacked)
	if level == capture.LevelOK {
		ev.Msg("slot alarm cleared")
		return
	}
	ev.Str("reason", capture.FormatReasons(alarm.Reasons)).Str("action", alarm.Action).Msg("slot alarm " + level.String())
}
