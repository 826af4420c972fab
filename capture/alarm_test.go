package capture

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestThresholds_Evaluate(t *testing.T) {
	t.Parallel()
	th := Thresholds{LagWarnBytes: 100, LagCriticalBytes: 1000, KeepFraction: 0.5, AgeWarn: time.Minute, AgeCritical: 5 * time.Minute}
	ok := Slot{Exists: true, WALStatus: "reserved", Active: true, MaxSlotWALKeepSize: -1}
	with := func(f func(*Slot)) Slot { s := ok; f(&s); return s }
	tests := []struct {
		name   string
		status Slot
		age    time.Duration // of the oldest unacknowledged commit
		want   Level
		reason string
	}{
		{"healthy", ok, 0, LevelOK, ""},
		{"missing slot", Slot{}, 0, LevelLost, "does not exist"},
		{"invalidated", with(func(s *Slot) { s.WALStatus = "lost" }), 0, LevelLost, "invalidated"},
		{"invalidated, PostgreSQL 17", with(func(s *Slot) { s.InvalidationReason = "wal_removed" }), 0, LevelLost, "invalidation_reason=wal_removed"},
		{"conflict on a standby, PostgreSQL 16", with(func(s *Slot) { s.Conflicting = true }), 0, LevelLost, "conflicting"},
		{"lag below warn", with(func(s *Slot) { s.UnconfirmedBytes = 99 }), 0, LevelOK, ""},
		{"lag at warn", with(func(s *Slot) { s.UnconfirmedBytes = 100 }), 0, LevelWarn, "unconfirmed WAL"},
		{"lag at critical", with(func(s *Slot) { s.UnconfirmedBytes = 1000 }), 0, LevelCritical, "critical"},
		{"retained half of the keep fraction warns", with(func(s *Slot) { s.MaxSlotWALKeepSize, s.RetainedBytes = 4000, 1000 }), 0, LevelWarn, "max_slot_wal_keep_size"},
		{"retained at the keep fraction is critical", with(func(s *Slot) { s.MaxSlotWALKeepSize, s.RetainedBytes = 4000, 2000 }), 0, LevelCritical, "invalidated"},
		{"unbounded keep size ignores retained", with(func(s *Slot) { s.RetainedBytes = 1 << 40 }), 0, LevelOK, ""},
		{"unreserved", with(func(s *Slot) { s.WALStatus = "unreserved" }), 0, LevelCritical, "unreserved"},
		{"old commit warns", ok, 2 * time.Minute, LevelWarn, "oldest unacknowledged"},
		{"very old commit is critical", ok, 10 * time.Minute, LevelCritical, "oldest unacknowledged"},
		{"most severe wins", with(func(s *Slot) { s.UnconfirmedBytes = 100 }), 10 * time.Minute, LevelCritical, "unconfirmed WAL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, reasons := th.Evaluate(tt.status, tt.age)
			if got != tt.want {
				t.Errorf("level = %s, want %s (reasons %q)", got, tt.want, reasons)
			}
			if !strings.Contains(FormatReasons(reasons), tt.reason) {
				t.Errorf("reasons %q lack %q", reasons, tt.reason)
			}
			if got == LevelOK && len(reasons) != 0 {
				t.Errorf("ok with reasons %q", reasons)
			}
		})
	}
}

func TestThresholds_ZeroIsOff(t *testing.T) {
	t.Parallel()
	got, _ := Thresholds{}.Evaluate(Slot{Exists: true, UnconfirmedBytes: 1 << 50, MaxSlotWALKeepSize: 10, RetainedBytes: 10}, time.Hour)
	if got != LevelOK {
		t.Errorf("zero thresholds gave %s", got)
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"-1": -1, "": -1, "4GB": 4 << 30, "1024MB": 1 << 30, "64kB": 64 << 10, "10": 10 << 20, "1TB": 1 << 40} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseSize("lots"); err == nil {
		t.Error("parseSize accepted garbage")
	}
}

func TestLevel_String(t *testing.T) {
	t.Parallel()
	for l, want := range map[Level]string{LevelOK: "ok", LevelWarn: "warn", LevelCritical: "critical", LevelLost: "lost"} {
		if l.String() != want {
			t.Errorf("%d.String() = %s", int(l), l)
		}
	}
}

// TestAdvice: dropping the slot is advised only at the critical level, as the last resort,
// saying what it costs; never at warn; a lost or vanished slot is `pgoutbox recover`'s (which
// drops and creates it itself).
func TestAdvice(t *testing.T) {
	t.Parallel()
	live := Slot{Name: "s", Exists: true, WALStatus: "reserved"}
	tests := []struct {
		level    Level
		slot     Slot
		drop     bool
		contains string
	}{
		{LevelWarn, live, false, "keeps WAL"},
		{LevelCritical, live, true, "last resort"},
		{LevelLost, Slot{Name: "s"}, false, "pgoutbox recover --apply"},
		{LevelLost, Slot{Name: "s", Exists: true, WALStatus: "lost"}, false, "pgoutbox recover --apply"},
	}
	for _, tt := range tests {
		got := Advice(tt.level, tt.slot)
		if strings.Contains(got, "pg_drop_replication_slot") != tt.drop || !strings.Contains(got, tt.contains) {
			t.Errorf("Advice(%v, exists=%v) = %q; want drop advice %v and %q", tt.level, tt.slot.Exists, got, tt.drop, tt.contains)
		}
	}
}

// Assess is the whole decision: the slot's figures, then a publication that stopped covering the
// outbox (lost), then recorded stretches nobody recovered (at least critical).
func TestThresholds_Assess(t *testing.T) {
	t.Parallel()
	th := Thresholds{LagWarnBytes: 100, LagCriticalBytes: 1000}
	ok := Slot{Name: "s", Exists: true, WALStatus: "reserved", Active: true, MaxSlotWALKeepSize: -1}
	lagging := ok
	lagging.UnconfirmedBytes = 200
	gap := Gap{Slot: "s", From: 0x100, To: 0x200, Reason: "publication dropped"}
	pubGone := errors.New(`publication "p" does not exist`)
	for _, tc := range []struct {
		name    string
		slot    Slot
		pub     error
		gaps    []Gap
		level   Level
		reasons []string // each reason, in order, contains this
		action  string
	}{
		{"ok", ok, nil, nil, LevelOK, nil, ""},
		{"the slot's figures only", lagging, nil, nil, LevelWarn, []string{"unconfirmed WAL"}, "check that Kafka"},
		{"publication gone", lagging, pubGone, nil, LevelLost, []string{`publication "p" does not exist (inserts committed meanwhile`, "unconfirmed WAL"}, "run `pgoutbox setup`"},
		{"open stretch", lagging, nil, []Gap{gap}, LevelCritical, []string{"unconfirmed WAL", "publication stretch not recovered: WAL after 0/100"}, "run `pgoutbox recover`"},
		{"both", ok, pubGone, []Gap{gap}, LevelLost, []string{"publication", "publication stretch not recovered"}, "run `pgoutbox setup`"},
		{"lost slot recorded, slot created again", ok, nil, []Gap{{Slot: "s", Kind: GapSlotLost, From: 0x100, Reason: "invalidated"}}, LevelCritical,
			[]string{"lost slot not recovered: slot s lost after 0/100"}, "run `pgoutbox recover`"},
	} {
		a := th.Assess(tc.slot, 0, tc.pub, tc.gaps)
		if a.Level != tc.level || len(a.Reasons) != len(tc.reasons) || !strings.HasPrefix(a.Action, tc.action) {
			t.Errorf("%s: Assess = %+v; want level %s, %d reasons, action starting %q", tc.name, a, tc.level, len(tc.reasons), tc.action)
			continue
		}
		for i, r := range tc.reasons {
			if !strings.Contains(a.Reasons[i], r) {
				t.Errorf("%s: reason %d = %q, want it to contain %q", tc.name, i, a.Reasons[i], r)
			}
		}
	}
}
