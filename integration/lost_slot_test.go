//go:build integration

package integration

import (
	"context"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestSlotLost: on a private cluster with a tiny max_slot_wal_keep_size, the relay is stalled
// (SIGSTOP) while the database writes far more WAL than the slot may keep, and a checkpoint
// invalidates the slot. `pgoutbox status` then exits 3, and the relay, resumed, stops with an
// error saying the slot was invalidated, from which position events may be missing and how to
// recover — and exits non-zero instead of streaming on past a gap.
func TestSlotLost(t *testing.T) {
	t.Parallel()
	testSlotLost(t, pgTarget{})
}

func testSlotLost(t *testing.T, target pgTarget) {
	pg := target.private(t)
	pg.SetConf(t, "max_slot_wal_keep_size", "32MB")
	e := harness.NewOutboxOn(t, harness.Services{DatabaseURL: pg.URL, Brokers: harness.NeedKafka(t)}, 1)
	harness.ExecSQL(t, pg.URL, `CREATE TABLE filler (id bigserial PRIMARY KEY, v text)`)

	relay := e.StartRelay(t, "PGOUTBOX_MONITOR_INTERVAL=300ms", "PGOUTBOX_RECONNECT_MAX=1s")
	relay.WaitLog("streaming started", 30*time.Second)
	insertReturningID(t, e, "ch", `{"n": 1}`, "")
	harness.WaitRecords(t, e.Brokers, e.Name, 1, 30*time.Second)
	if code, out := e.StatusExit(t, "PGOUTBOX_DATABASE_URL="+pg.URL); code != 0 {
		t.Fatalf("pgoutbox status exit %d on a healthy slot:\n%s", code, out)
	}

	if err := relay.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	confirmed := harness.SlotConfirmed(t, pg.URL, e.Name)
	su := pg.Superuser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var walStatus string
	for i := 0; walStatus != "lost"; i++ {
		if i == 10 {
			t.Fatalf("slot still %q after writing about 100 MB of WAL and checkpoints", walStatus)
		}
		harness.ExecSQL(t, pg.URL, `INSERT INTO filler (v) SELECT repeat('x', 1000) FROM generate_series(1, 10000)`)
		if _, err := su.Exec(ctx, `SELECT pg_switch_wal()`); err != nil {
			t.Fatal(err)
		}
		if _, err := su.Exec(ctx, `CHECKPOINT`); err != nil {
			t.Fatal(err)
		}
		if err := su.QueryRow(ctx, `SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1`, e.Name).Scan(&walStatus); err != nil {
			t.Fatal(err)
		}
	}
	code, out := e.StatusExit(t, "PGOUTBOX_DATABASE_URL="+pg.URL)
	if code != 3 || !strings.Contains(out, "lost") {
		t.Errorf("pgoutbox status exit %d on a lost slot, want 3:\n%s", code, out)
	}

	if err := relay.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if code := relay.WaitExit(time.Minute); code == 0 {
		t.Fatal("relay exited 0 on a lost slot")
	}
	log := lastLine(relay.Log.String())
	for _, want := range []string{"invalidated", "may be missing", "pgoutbox setup", "pg_drop_replication_slot"} {
		if !strings.Contains(log, want) {
			t.Errorf("the relay's error does not say %q:\n%s", want, relay.Log.Tail(4))
		}
	}
	// The position it names may be the relay's own (everything before it is in Kafka), which
	// can be ahead of what the slot had been told; it is never before the slot's.
	if m := regexp.MustCompile(`committed after ([0-9A-F]+/[0-9A-F]+)`).FindStringSubmatch(log); m == nil || harness.MustLSN(t, m[1]) < confirmed {
		t.Errorf("the relay's error does not name a position at or after the slot's confirmed %s:\n%s", confirmed, relay.Log.Tail(4))
	}
	t.Logf("slot lost after the relay confirmed %s; status exit %d; relay: %s", confirmed, code, lastLine(relay.Log.String()))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
