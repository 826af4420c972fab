//go:build integration

package integration

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestSlotDroppedUnderTheRelay: the slot is dropped while the relay streams. On the old main it
// exited with "does not exist: create it with setup" — following that advice left a gap
// silently. Now it is the lost alarm, naming the position after which events may be missing.
func TestSlotDroppedUnderTheRelay(t *testing.T) {
	t.Parallel()
	e := harness.NewOutbox(t, 1)
	relay := e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
	relay.WaitLog("streaming started", time.Minute)
	insertReturningID(t, e, "ch", `{"n": 1}`, "")
	harness.WaitRecords(t, e.Brokers, e.Name, 1, time.Minute)

	// Freeze the relay so that it cannot reconnect in between, end its walsender, drop the slot.
	if err := relay.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	harness.ExecSQL(t, e.DatabaseURL, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1`, e.Name)
	harness.WaitSlotInactive(t, e.DatabaseURL, e.Name, 30*time.Second)
	harness.ExecSQL(t, e.DatabaseURL, `SELECT pg_drop_replication_slot($1)`, e.Name)
	if err := relay.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if code := relay.WaitExit(time.Minute); code == 0 {
		t.Fatal("relay exited 0 after its slot was dropped")
	}
	log := lastLine(relay.Log.String())
	for _, want := range []string{"replication slot lost", "was dropped while pgoutbox streamed from it", "may be missing", "pgoutbox recover --apply"} {
		if !strings.Contains(log, want) {
			t.Errorf("the relay's last line does not say %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "create it with `pgoutbox setup`:") {
		t.Errorf("the relay gave a first start's advice for a slot lost under it:\n%s", log)
	}

	// Rows committed while there is no slot; `pgoutbox setup` would create the slot at the end of
	// WAL and skip them: the relay refuses even then, and the advice brings them back.
	var ids []string
	for n := 2; n <= 4; n++ {
		ids = append(ids, insertReturningID(t, e, "ch", fmt.Sprintf(`{"n": %d}`, n), ""))
	}
	if out, err := e.Pgoutbox(t, "setup"); err != nil {
		t.Fatalf("pgoutbox setup: %v\n%s", err, out)
	}
	if r := e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info"); r.WaitExit(time.Minute) == 0 || !strings.Contains(r.Log.String(), "pgoutbox recover --apply") {
		t.Fatalf("a start after setup re-created the lost slot did not refuse naming `pgoutbox recover --apply`:\n%s", r.Log.Tail(3))
	}
	if code, out := e.StatusExit(t); code != 2 || !strings.Contains(out, "lost slot not recovered") {
		t.Errorf("pgoutbox status exit %d, want 2 (critical) naming the lost slot:\n%s", code, out)
	}
	code, out := e.RunExit(t, "recover", "--apply")
	if code != 0 || !strings.Contains(out, "published 3 events") {
		t.Fatalf("pgoutbox recover --apply exit %d, want 3 events published:\n%s", code, out)
	}
	relay = e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
	relay.WaitLog("streaming started", time.Minute)
	last := insertReturningID(t, e, "ch", `{"n": 5}`, "")
	recs := waitEvents(t, e, 5, time.Minute)
	relay.Stop(30 * time.Second)
	var got []string
	for _, r := range recs {
		if r.Headers["pgoutbox-control"] == "" {
			got = append(got, r.Headers["pgoutbox-id"])
		}
	}
	if want := append(append([]string{got[0]}, ids...), last); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("records %v, want %v (each row once, in order)", got, want)
	}
	t.Logf("recover --apply after the slot was dropped:\n%s", out)
}

// TestSlotDroppedWhileNoRelayRan: the slot dropped while the relay was stopped leaves no trace
// in PostgreSQL, and `pgoutbox setup` used to create it again at the end of WAL: the rows
// committed in between were skipped for good, silently. Setup now finds the slot's records in
// the topic, records the loss, and the relay refuses until `pgoutbox recover --apply` has run.
func TestSlotDroppedWhileNoRelayRan(t *testing.T) {
	t.Parallel()
	e := harness.NewOutbox(t, 1)
	relay := e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
	relay.WaitLog("streaming started", time.Minute)
	first := insertReturningID(t, e, "ch", `{"n": 1}`, "")
	harness.WaitRecords(t, e.Brokers, e.Name, 1, time.Minute)
	relay.Stop(30 * time.Second)
	harness.ExecSQL(t, e.DatabaseURL, `SELECT pg_drop_replication_slot($1)`, e.Name)

	var ids []string
	for n := 2; n <= 4; n++ {
		ids = append(ids, insertReturningID(t, e, "ch", fmt.Sprintf(`{"n": %d}`, n), ""))
	}
	setup, err := e.Pgoutbox(t, "setup")
	if err != nil {
		t.Fatalf("pgoutbox setup: %v\n%s", err, setup)
	}
	for _, want := range []string{"did not exist when `pgoutbox setup` ran", "holds records a slot of that name wrote", "recorded as a lost slot",
		"pgoutbox recover --apply"} {
		if !strings.Contains(setup, want) {
			t.Errorf("setup's output does not say %q:\n%s", want, setup)
		}
	}
	if !slotExists(t, e) {
		t.Fatalf("setup did not create the slot:\n%s", setup)
	}
	for range 2 { // every start, not only the first
		r := e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
		if code := r.WaitExit(time.Minute); code == 0 || !strings.Contains(r.Log.String(), "pgoutbox recover --apply") {
			t.Fatalf("a start after setup re-created the dropped slot exited %d, want a refusal naming `pgoutbox recover --apply`:\n%s", code, r.Log.Tail(3))
		}
	}
	if code, out := e.StatusExit(t); code != 2 || !strings.Contains(out, "lost slot not recovered") {
		t.Errorf("pgoutbox status exit %d, want 2 (critical) naming the lost slot:\n%s", code, out)
	}
	code, out := e.RunExit(t, "recover", "--apply")
	if code != 0 || !strings.Contains(out, "published 3 events") {
		t.Fatalf("pgoutbox recover --apply exit %d, want 3 events published:\n%s", code, out)
	}
	if again, err := e.Pgoutbox(t, "setup"); err != nil || strings.Contains(again, "recorded as a lost slot") {
		t.Errorf("setup after recovery (err %v) records a loss again:\n%s", err, again)
	}
	relay = e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
	relay.WaitLog("streaming started", time.Minute)
	last := insertReturningID(t, e, "ch", `{"n": 5}`, "")
	recs := waitEvents(t, e, 5, time.Minute)
	relay.Stop(30 * time.Second)
	var got []string
	resyncs := 0
	for _, r := range recs {
		if r.Headers["pgoutbox-control"] == "" {
			got = append(got, r.Headers["pgoutbox-id"])
		} else {
			resyncs++
		}
	}
	if want := append(append([]string{first}, ids...), last); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("records %v, want %v (each row once, in order)", got, want)
	}
	if resyncs != 1 {
		t.Errorf("%d re-sync control records, want 1 (on channel ch)", resyncs)
	}
	t.Logf("setup after the slot was dropped with no relay running:\n%s\nrecover --apply:\n%s", lastLine(setup), out)
}

// TestSetup_KafkaUnreachableCreatesNoSlot: `setup --partitions` with Kafka unreachable used to
// create the slot and then fail, leaving a new slot that pins WAL. It now checks Kafka first.
func TestSetup_KafkaUnreachableCreatesNoSlot(t *testing.T) {
	t.Parallel()
	e := harness.Outbox{Services: harness.NeedServices(t), Name: harness.UniqueName(t)}
	harness.DropSlotAtCleanup(t, e.DatabaseURL, e.Name) // only if the test fails
	t.Cleanup(func() {
		harness.ExecInCleanup(t, e.DatabaseURL, fmt.Sprintf(`DROP PUBLICATION IF EXISTS %s`, e.Name))
		harness.ExecInCleanup(t, e.DatabaseURL, fmt.Sprintf(`DROP TABLE IF EXISTS %s`, e.Name))
	})
	e.Brokers = []string{fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))}
	out, err := e.Pgoutbox(t, "setup", "--partitions", "1")
	if err == nil {
		t.Fatalf("setup succeeded with Kafka unreachable:\n%s", out)
	}
	if slotExists(t, e) {
		t.Errorf("setup left a replication slot behind although it failed:\n%s", out)
	}
}
