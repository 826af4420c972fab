package capture

import (
	"strings"
	"testing"
	"time"
)

func TestThresholds_Evaluate(t *testing.T) {
	t.Parallel()
	th := Thresholds{LagWarnBytes: 100, LagCriticalBytes: 1000, KeepFraction: 0.5, AgeWarn: time.Minute, AgeCritical: 5 * time.Minute}
	ok := SlotStatus{Exists: true, WALStatus: "reserved", Active: true, MaxSlotWALKeepSize: -1}
	with := func(f func(*SlotStatus)) SlotStatus { s := ok; f(&s); return s }
	tests := []struct {
		name   string
		status SlotStatus
		want   Level
		reason string
	}{
		{"healthy", ok, LevelOK, ""},
		{"missing slot", SlotStatus{}, LevelLost, "does not exist"},
		{"invalidated", with(func(s *SlotStatus) { s.WALStatus = "lost" }), LevelLost, "invalidated"},
		{"lag below warn", with(func(s *SlotStatus) { s.UnconfirmedBytes = 99 }), LevelOK, ""},
		{"lag at warn", with(func(s *SlotStatus) { s.UnconfirmedBytes = 100 }), LevelWarn, "unconfirmed WAL"},
		{"lag at critical", with(func(s *SlotStatus) { s.UnconfirmedBytes = 1000 }), LevelCritical, "critical"},
		{"retained half of the keep fraction warns", with(func(s *SlotStatus) { s.MaxSlotWALKeepSize, s.RetainedBytes = 4000, 1000 }), LevelWarn, "max_slot_wal_keep_size"},
		{"retained at the keep fraction is critical", with(func(s *SlotStatus) { s.MaxSlotWALKeepSize, s.RetainedBytes = 4000, 2000 }), LevelCritical, "invalidated"},
		{"unbounded keep size ignores retained", with(func(s *SlotStatus) { s.RetainedBytes = 1 << 40 }), LevelOK, ""},
		{"unreserved", with(func(s *SlotStatus) { s.WALStatus = "unreserved" }), LevelCritical, "unreserved"},
		{"old commit warns", with(func(s *SlotStatus) { s.OldestUnacked = 2 * time.Minute }), LevelWarn, "oldest unacknowledged"},
		{"very old commit is critical", with(func(s *SlotStatus) { s.OldestUnacked = 10 * time.Minute }), LevelCritical, "oldest unacknowledged"},
		{"most severe wins", with(func(s *SlotStatus) { s.UnconfirmedBytes, s.OldestUnacked = 100, 10*time.Minute }), LevelCritical, "unconfirmed WAL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, reasons := th.Evaluate(tt.status)
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
	got, _ := Thresholds{}.Evaluate(SlotStatus{Exists: true, UnconfirmedBytes: 1 << 50, OldestUnacked: time.Hour, MaxSlotWALKeepSize: 10, RetainedBytes: 10})
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
