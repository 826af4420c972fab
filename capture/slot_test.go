package capture

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
)

// slotRow builds one row of the slot query's result as the server sends it: column names and
// text values, nil for NULL.
func slotRow(cols ...any) ([]string, [][]byte) {
	var fields []string
	var row [][]byte
	for i := 0; i < len(cols); i += 2 {
		fields = append(fields, cols[i].(string))
		if v, ok := cols[i+1].(string); ok {
			row = append(row, []byte(v))
		} else {
			row = append(row, nil)
		}
	}
	return fields, row
}

func TestParseSlot(t *testing.T) {
	t.Parallel()
	base := []any{"current_database", "app", "current_lsn", "0/3000100", "max_slot_wal_keep_size", "4GB",
		"slot_name", "pgoutbox", "plugin", "pgoutput", "database", "app",
		"confirmed_flush_lsn", "0/3000000", "restart_lsn", "0/2FFF000",
		"active", "true", "active_pid", "4242", "unconfirmed_bytes", "256", "retained_bytes", "4352"}
	healthy := Slot{Name: "pgoutbox", Exists: true, Plugin: "pgoutput", Database: "app",
		ConfirmedFlushLSN: 0x3000000, RestartLSN: 0x2FFF000, Active: true, ActivePID: 4242,
		UnconfirmedBytes: 256, RetainedBytes: 4352, SafeWALBytes: -1, MaxSlotWALKeepSize: 4 << 30,
		CurrentLSN: 0x3000100, ConnDatabase: "app"}
	with := func(f func(*Slot)) Slot { s := healthy; f(&s); return s }
	tests := []struct {
		name string
		cols []any
		want Slot
	}{
		{"PostgreSQL 12: no wal_status, no safe_wal_size", base, healthy},
		{"PostgreSQL 15", append(base[:len(base):len(base)], "wal_status", "reserved", "safe_wal_size", "4290000000"),
			with(func(s *Slot) { s.WALStatus, s.SafeWALBytes = "reserved", 4290000000 })},
		{"PostgreSQL 17, invalidated and inactive", append(base[:len(base):len(base)], "wal_status", "lost", "safe_wal_size", nil,
			"conflicting", "false", "invalidation_reason", "wal_removed", "inactive_since", "1718000000.250000",
			"failover", "t", "synced", "f"),
			with(func(s *Slot) {
				s.WALStatus, s.InvalidationReason, s.Failover = "lost", "wal_removed", true
				s.InactiveSince = time.Date(2024, 6, 10, 6, 13, 20, 250_000_000, time.UTC)
			})},
		{"missing slot: the server's figures only", []any{"current_database", "app", "current_lsn", "0/3000100",
			"max_slot_wal_keep_size", "-1", "slot_name", nil, "plugin", nil, "database", nil, "confirmed_flush_lsn", nil,
			"restart_lsn", nil, "active", nil, "active_pid", nil, "unconfirmed_bytes", nil, "retained_bytes", nil,
			"wal_status", nil, "safe_wal_size", nil},
			Slot{Name: "pgoutbox", SafeWALBytes: -1, MaxSlotWALKeepSize: -1, CurrentLSN: 0x3000100, ConnDatabase: "app"}},
		{"a slot being created has no positions yet", []any{"slot_name", "pgoutbox", "plugin", "pgoutput",
			"confirmed_flush_lsn", nil, "restart_lsn", nil, "active", "false", "active_pid", nil},
			Slot{Name: "pgoutbox", Exists: true, Plugin: "pgoutput", SafeWALBytes: -1, MaxSlotWALKeepSize: -1}},
		{"unknown columns are ignored", []any{"slot_name", "pgoutbox", "two_phase_at", "0/1"},
			Slot{Name: "pgoutbox", Exists: true, SafeWALBytes: -1, MaxSlotWALKeepSize: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fields, row := slotRow(tt.cols...)
			got, err := parseSlot("pgoutbox", fields, row)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("parseSlot =\n%+v, want\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseSlot_badValues(t *testing.T) {
	t.Parallel()
	for _, cols := range [][]any{
		{"confirmed_flush_lsn", "nonsense"},
		{"current_lsn", "zz/1"},
		{"active", "yes"},
		{"active_pid", "99999999999"},
		{"unconfirmed_bytes", "1.5"},
		{"max_slot_wal_keep_size", "lots"},
		{"inactive_since", "yesterday"},
	} {
		fields, row := slotRow(cols...)
		if _, err := parseSlot("pgoutbox", fields, row); err == nil || !strings.Contains(err.Error(), cols[0].(string)) {
			t.Errorf("parseSlot(%v) error %v, want one naming the column", cols, err)
		}
	}
	if _, err := parseSlot("pgoutbox", []string{"slot_name", "plugin"}, [][]byte{[]byte("x")}); err == nil {
		t.Error("parseSlot accepted fewer values than columns")
	}
}

func TestSlotQuery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		version       int
		want, without []string
	}{
		{120000, []string{"AS active_pid", "AS unconfirmed_bytes", "pg_is_in_recovery()"}, []string{"wal_status", "safe_wal_size", "conflicting", "invalidation_reason"}},
		{150018, []string{"s.wal_status AS wal_status", "AS safe_wal_size"}, []string{"conflicting", "invalidation_reason", "failover"}},
		{160004, []string{"AS conflicting"}, []string{"invalidation_reason", "inactive_since", "synced"}},
		{170002, []string{"AS invalidation_reason", "extract(epoch FROM s.inactive_since)", "AS failover", "AS synced"}, nil},
	}
	for _, tt := range tests {
		q := slotQuery(tt.version, "it's")
		for _, w := range append(tt.want, "s.slot_name = 'it''s'") {
			if !strings.Contains(q, w) {
				t.Errorf("slotQuery(%d) lacks %q:\n%s", tt.version, w, q)
			}
		}
		for _, w := range tt.without {
			if strings.Contains(q, w) {
				t.Errorf("slotQuery(%d) selects %q, which that version lacks:\n%s", tt.version, w, q)
			}
		}
	}
	// Every column the query selects is one parseSlot reads.
	for _, c := range slotColumns {
		var s Slot
		if err := s.set(c.name, "garbage"); err == nil && s == (Slot{}) {
			t.Errorf("parseSlot ignores column %s", c.name)
		}
	}
}

func TestSlot_check(t *testing.T) {
	t.Parallel()
	good := Slot{Name: "pgoutbox", Exists: true, Plugin: outputPlugin, Database: "app", ConnDatabase: "app",
		ConfirmedFlushLSN: 0x3000000, WALStatus: "reserved"}
	with := func(f func(*Slot)) Slot { s := good; f(&s); return s }
	tests := []struct {
		name       string
		slot       Slot
		check      error    // of check
		streamable error    // of checkStreamable
		says       []string // in checkStreamable's message
	}{
		{"usable", good, nil, nil, nil},
		{"missing", Slot{Name: "pgoutbox"}, ErrNoSlot, ErrNoSlot, []string{"does not exist", "pgoutbox setup"}},
		{"another plugin", with(func(s *Slot) { s.Plugin = "wal2json" }), ErrSlotPlugin, ErrSlotPlugin,
			[]string{`"wal2json"`, "--slot", "pgoutbox setup"}},
		{"another database", with(func(s *Slot) { s.Database = "other" }), ErrSlotPlugin, ErrSlotPlugin,
			[]string{`database "other", not "app"`, "--slot"}},
		{"invalidated", with(func(s *Slot) { s.WALStatus = "lost" }), ErrSlotLost, ErrSlotLost,
			[]string{"invalidated (wal_status=lost)", "after 0/3000000 may be missing", "pgoutbox recover --apply", "republishes"}},
		{"invalidated, PostgreSQL 17", with(func(s *Slot) { s.InvalidationReason = "idle_timeout" }), ErrSlotLost, ErrSlotLost,
			[]string{"invalidation_reason=idle_timeout"}},
		{"in use: usable by a standby", with(func(s *Slot) { s.Active, s.ActivePID = true, 77 }), nil, ErrSlotInUse,
			[]string{"process 77", "waiting"}},
		{"no confirmed position", with(func(s *Slot) { s.ConfirmedFlushLSN = 0 }), nil, ErrSlotPlugin,
			[]string{"no confirmed position", "pgoutbox setup"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.slot.check(); !errors.Is(err, tt.check) || (tt.check == nil) != (err == nil) {
				t.Errorf("check() = %v, want %v", err, tt.check)
			}
			err := tt.slot.checkStreamable()
			if !errors.Is(err, tt.streamable) || (tt.streamable == nil) != (err == nil) {
				t.Fatalf("checkStreamable() = %v, want %v", err, tt.streamable)
			}
			for _, w := range tt.says {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v\ndoes not say %q", err, w)
				}
			}
		})
	}
}

// TestSlotErrors_neverAdviseDroppingAUsableSlot: only a slot that cannot be streamed again is
// worth dropping; every other slot error must fix the problem without giving events up.
func TestSlotErrors_neverAdviseDroppingAUsableSlot(t *testing.T) {
	t.Parallel()
	for _, err := range []error{
		errSlotMissing("s"), errSlotPlugin("s", "wal2json"), errSlotDatabase("s", "a", "b"),
		errSlotInUse("s", 1), errSlotInUse("s", 0), errSlotNoPosition("s"),
		SlotLostError(Slot{Name: "s"}, 0x100),
	} {
		if msg := err.Error(); strings.Contains(msg, "drop it") || strings.Contains(msg, "pg_drop_replication_slot") || strings.Contains(msg, "drop-slot") {
			t.Errorf("advises a drop: %s", msg)
		}
	}
}

func TestSlotLostError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		slot Slot
		last pglogrepl.LSN
		says []string
	}{
		{"dropped under the relay", Slot{Name: "s"}, 0x5000000,
			[]string{"was dropped while pgoutbox streamed", "after 0/5000000 may be missing", "pgoutbox recover --apply", "republishes"}},
		{"dropped, position unknown", Slot{Name: "s"}, 0, []string{"after its last confirmed position may be missing"}},
		{"invalidated: the slot's position", Slot{Name: "s", Exists: true, WALStatus: "lost", ConfirmedFlushLSN: 0x6000000}, 0x5000000,
			[]string{"invalidated (wal_status=lost)", "after 0/6000000", "pgoutbox recover --apply"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := SlotLostError(tt.slot, tt.last)
			if !errors.Is(err, ErrSlotLost) || errors.Is(err, ErrNoSlot) {
				t.Errorf("SlotLostError matches ErrSlotLost %v, ErrNoSlot %v; want only ErrSlotLost",
					errors.Is(err, ErrSlotLost), errors.Is(err, ErrNoSlot))
			}
			for _, w := range tt.says {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v\ndoes not say %q", err, w)
				}
			}
		})
	}
}
