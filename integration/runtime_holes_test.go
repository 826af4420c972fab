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
	for _, want := range []string{"replication slot lost", "was dropped while pgoutbox streamed from it", "may be missing", "re-publish"} {
		if !strings.Contains(log, want) {
			t.Errorf("the relay's last line does not say %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "create it with `pgoutbox setup`:") {
		t.Errorf("the relay gave a first start's advice for a slot lost under it:\n%s", log)
	}
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
