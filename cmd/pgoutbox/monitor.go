package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/rs/zerolog"
)

// monitor is the slot-safety loop of `pgoutbox run`: every interval it reads the slot's figures
// over a normal connection, exports them, and raises or clears the alarm — one log line per
// change of level, never one per check. A lost slot ends the relay: continuing would hide a gap.
type monitor struct {
	cfg     *Config
	th      capture.Thresholds
	log     zerolog.Logger
	metrics *metrics
	health  *health

	conn  *pgx.Conn
	level capture.Level
}

// run checks until ctx is done; it returns an error wrapping capture.ErrSlotLost when the slot
// is invalidated or dropped.
func (m *monitor) run(ctx context.Context) error {
	defer m.close()
	tick := time.NewTicker(m.cfg.MonitorInterval)
	defer tick.Stop()
	for {
		if err := m.check(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (m *monitor) close() {
	if m.conn != nil {
		_ = m.conn.Close(context.Background())
		m.conn = nil
	}
}

// check reads the slot once. Failing to read is logged, not fatal: the database may be
// restarting, and the replication session has its own reconnection.
func (m *monitor) check(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := m.read(cctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn().Err(err).Msg("cannot read the slot's status; retrying at the next check")
		}
		m.close()
		return nil
	}
	var oldestUnacked time.Duration
	if o := m.metrics.session.Load(); o != nil {
		if t, ok := o.tracker.OldestUnacked(); ok {
			oldestUnacked = time.Since(t)
		}
	}
	level, reasons := m.th.Evaluate(st, oldestUnacked)
	m.metrics.observeSlot(st, level)
	m.transition(st, oldestUnacked, level, reasons)
	if level == capture.LevelLost {
		from := st.ConfirmedFlushLSN.String()
		if !st.Exists {
			from = "its last confirmed position (unknown: the slot is gone)"
		}
		return fmt.Errorf("%w: %s: events committed after %s may be missing from Kafka: %s",
			capture.ErrSlotLost, capture.FormatReasons(reasons), from, capture.Advice(level, m.cfg.Slot))
	}
	return nil
}

func (m *monitor) read(ctx context.Context) (capture.Slot, error) {
	if m.conn == nil {
		conn, err := pgx.Connect(ctx, m.cfg.DatabaseURL)
		if err != nil {
			return capture.Slot{}, capture.ClassifyConnectError(err)
		}
		m.conn = conn
	}
	return capture.ReadSlot(ctx, m.conn, m.cfg.Slot)
}

// transition logs a change of alarm level once and updates readiness.
func (m *monitor) transition(st capture.Slot, oldestUnacked time.Duration, level capture.Level, reasons []string) {
	m.health.setAlarm(level, capture.FormatReasons(reasons))
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
	ev = ev.Str("slot", m.cfg.Slot).Stringer("level", level).Stringer("previous", prev).
		Int64("unconfirmed_bytes", st.UnconfirmedBytes).Int64("retained_bytes", st.RetainedBytes).
		Int64("safe_wal_bytes", st.SafeWALBytes).Str("wal_status", st.WALStatus).Bool("active", st.Active).
		Stringer("confirmed_lsn", st.ConfirmedFlushLSN).Dur("oldest_unacked", oldestUnacked)
	if level == capture.LevelOK {
		ev.Msg("slot alarm cleared")
		return
	}
	ev.Str("reason", capture.FormatReasons(reasons)).Str("action", capture.Advice(level, m.cfg.Slot)).Msg("slot alarm " + level.String())
}

// thresholds builds the alarm thresholds from the configuration.
func (c *Config) thresholds() capture.Thresholds {
	return capture.Thresholds{
		LagWarnBytes: c.LagWarnBytes, LagCriticalBytes: c.LagCriticalBytes, KeepFraction: c.LagKeepFraction,
		AgeWarn: c.LagWarnAge, AgeCritical: c.LagCriticalAge,
	}
}
