package capture

import (
	"fmt"
	"strings"
	"time"
)

// Level is how worried an operator should be about the slot. Levels are ordered.
type Level int

// Alarm levels. Lost is not "more critical": it means events may already be missing.
const (
	LevelOK       Level = iota // nothing to do
	LevelWarn                  // the relay is falling behind; look before it gets worse
	LevelCritical              // act now: the slot will soon fill the disk or be invalidated
	LevelLost                  // the slot is gone or invalidated: events may be missing
)

// String returns ok, warn, critical or lost.
func (l Level) String() string {
	switch l {
	case LevelOK:
		return "ok"
	case LevelWarn:
		return "warn"
	case LevelCritical:
		return "critical"
	case LevelLost:
		return "lost"
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// Thresholds decide the alarm level from a slot's figures. A zero threshold is off.
type Thresholds struct {
	LagWarnBytes     int64 // unconfirmed WAL bytes that raise a warning; default 1 GiB
	LagCriticalBytes int64 // unconfirmed WAL bytes that are critical; default 4 GiB
	// KeepFraction: when max_slot_wal_keep_size is finite, retained bytes above this fraction of
	// it are critical (the slot is that close to being invalidated); half of it warns. Default 0.5.
	KeepFraction float64
	AgeWarn      time.Duration // age of the oldest unacknowledged commit that warns; default 1m
	AgeCritical  time.Duration // ... that is critical; default 5m
}

// Evaluate returns the alarm level of a slot reading and the reasons for it, most severe first.
// oldestUnacked is the age of the oldest commit whose rows Kafka has not acknowledged, as the
// relay knows it; 0 when none or unknown (e.g. `pgoutbox status` runs outside the relay).
func (th Thresholds) Evaluate(s Slot, oldestUnacked time.Duration) (Level, []string) {
	if !s.Exists {
		return LevelLost, []string{"the replication slot does not exist"}
	}
	if s.Lost() {
		return LevelLost, []string{"the replication slot was invalidated (" + s.lostDetail() + ")"}
	}
	level := LevelOK
	var reasons []string
	raise := func(l Level, format string, args ...any) {
		level = max(level, l)
		reasons = append(reasons, fmt.Sprintf(format, args...))
	}
	switch {
	case th.LagCriticalBytes > 0 && s.UnconfirmedBytes >= th.LagCriticalBytes:
		raise(LevelCritical, "unconfirmed WAL %s >= critical %s", bytesIEC(s.UnconfirmedBytes), bytesIEC(th.LagCriticalBytes))
	case th.LagWarnBytes > 0 && s.UnconfirmedBytes >= th.LagWarnBytes:
		raise(LevelWarn, "unconfirmed WAL %s >= warn %s", bytesIEC(s.UnconfirmedBytes), bytesIEC(th.LagWarnBytes))
	}
	if s.MaxSlotWALKeepSize > 0 && th.KeepFraction > 0 {
		limit := int64(float64(s.MaxSlotWALKeepSize) * th.KeepFraction)
		switch {
		case s.RetainedBytes >= limit:
			raise(LevelCritical, "retained WAL %s >= %.0f%% of max_slot_wal_keep_size %s: the slot is close to being invalidated",
				bytesIEC(s.RetainedBytes), th.KeepFraction*100, bytesIEC(s.MaxSlotWALKeepSize))
		case s.RetainedBytes >= limit/2:
			raise(LevelWarn, "retained WAL %s >= %.0f%% of max_slot_wal_keep_size %s",
				bytesIEC(s.RetainedBytes), th.KeepFraction*50, bytesIEC(s.MaxSlotWALKeepSize))
		}
	}
	if s.WALStatus == "unreserved" {
		raise(LevelCritical, "wal_status=unreserved: the slot will be invalidated at the next checkpoint unless it catches up")
	}
	switch {
	case th.AgeCritical > 0 && oldestUnacked >= th.AgeCritical:
		raise(LevelCritical, "oldest unacknowledged commit is %s old >= critical %s", oldestUnacked.Round(time.Second), th.AgeCritical)
	case th.AgeWarn > 0 && oldestUnacked >= th.AgeWarn:
		raise(LevelWarn, "oldest unacknowledged commit is %s old >= warn %s", oldestUnacked.Round(time.Second), th.AgeWarn)
	}
	return level, reasons
}

// Alarm is the whole alarm decision about one slot: its level, the reasons (most severe first)
// and what an operator should do.
type Alarm struct {
	Level   Level
	Reasons []string
	Action  string
}

// Assess is the one place that decides a slot's alarm (the relay's monitor and `pgoutbox
// status` both ask it): the slot's figures against th ([Thresholds.Evaluate]); a publication
// that no longer covers the outbox inserts (publicationProblem, nil when fine or not checked)
// is lost, as surely as a lost slot: PostgreSQL does not send those inserts; a publication
// stretch that was recorded and not recovered (open gaps) is at least critical.
func (th Thresholds) Assess(s Slot, oldestUnacked time.Duration, publicationProblem error, gaps []Gap) Alarm {
	level, reasons := th.Evaluate(s, oldestUnacked)
	a := Alarm{Level: level, Reasons: reasons, Action: Advice(level, s)}
	if publicationProblem != nil {
		a.Level = LevelLost
		a.Reasons = append([]string{publicationProblem.Error() + " (inserts committed meanwhile are not sent to Kafka)"}, a.Reasons...)
		a.Action = "run `pgoutbox setup` (it covers the outbox inserts again), then `pgoutbox recover` to see what it will publish, " +
			"then `pgoutbox recover --apply`, then start the relay"
	}
	if len(gaps) > 0 {
		a.Level = max(a.Level, LevelCritical)
		for _, g := range gaps {
			if g.Lost() {
				a.Reasons = append(a.Reasons, "lost slot not recovered: "+g.String()+" (events after that position may be missing from Kafka; the relay refuses to start)")
				continue
			}
			a.Reasons = append(a.Reasons, "publication stretch not recovered: "+g.String()+" (its events are not in Kafka; the relay refuses to start)")
		}
		if a.Level < LevelLost {
			a.Action = "run `pgoutbox recover` to see what it will do, then `pgoutbox recover --apply`"
		}
	}
	return a
}

// Advice tells an operator what to do at a level, for slot s. Dropping the slot appears only
// where it is the way out: an invalidated slot can never stream again, and at the critical
// level, as the last resort against a full disk, with what it costs.
func Advice(l Level, s Slot) string {
	const check = "check that Kafka accepts writes and that the relay is running and streaming (pgoutbox logs, /readyz, pgoutbox_publish_errors_total)"
	switch {
	case l == LevelWarn:
		return check + "; the slot keeps WAL until the relay catches up"
	case l == LevelCritical:
		return check + "; only if the disk would fill before the relay can catch up, drop the slot as the last resort (" + DropSlotSQL(s.Name) +
			"): events committed after its confirmed position are then not published; re-create it with `pgoutbox setup` and re-publish those outbox rows"
	case l == LevelLost && !s.Exists:
		return "if pgoutbox streamed from this slot before, events committed after its last confirmed position may be missing: run `pgoutbox recover` " +
			"to see what it will do, then `pgoutbox recover --apply` (it creates the slot again, republishes the outbox rows that are not in Kafka and " +
			"tells clients to re-sync); before a first start, `pgoutbox setup` is all that is needed"
	case l == LevelLost:
		return recoverLostAdvice
	}
	return ""
}

// recoverLostAdvice is the way back from a lost slot, in every message that reports one.
const recoverLostAdvice = "the slot cannot be streamed again: run `pgoutbox recover` to see what it will do, then `pgoutbox recover --apply` " +
	"(it creates the slot again, republishes from the outbox table the rows that are not in Kafka, and tells clients to re-sync)"

// bytesIEC formats a byte count for humans: 1.5 GiB.
func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit || m <= -unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// FormatReasons joins reasons for a log line.
func FormatReasons(r []string) string { return strings.Join(r, "; ") }
