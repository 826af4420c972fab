//go:build integration

package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestSetup_Idempotent: `pgoutbox setup` creates what is missing, verifies what exists (naming
// every missing column), changes nothing when run again, and prints its SQL with --print-sql.
func TestSetup_Idempotent(t *testing.T) {
	t.Parallel()
	e := harness.NewOutbox(t, 2) // first run: creates table, publication, slot, topic

	out, err := e.Pgoutbox(t, "setup", "--partitions", "2")
	if err != nil {
		t.Fatalf("second setup: %v\n%s", err, out)
	}
	for _, want := range []string{"exists and is usable", "publication " + e.Name, "replication slot " + e.Name} {
		if !strings.Contains(out, want) {
			t.Errorf("second setup output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "created") {
		t.Errorf("second setup created something:\n%s", out)
	}
	if out, err := e.Pgoutbox(t, "setup", "--partitions", "5"); err == nil || !strings.Contains(out, "partitions") {
		t.Errorf("setup with another partition count: err %v; want an error naming the partition count:\n%s", err, out)
	}

	sql, err := e.Pgoutbox(t, "setup", "--print-sql")
	if err != nil {
		t.Fatalf("--print-sql: %v\n%s", err, sql)
	}
	for _, want := range []string{"CREATE TABLE IF NOT EXISTS", "CREATE PUBLICATION", "publish = 'insert'", "pg_create_logical_replication_slot", "'pgoutput'"} {
		if !strings.Contains(sql, want) {
			t.Errorf("--print-sql lacks %q:\n%s", want, sql)
		}
	}

	// An existing table without the configured columns: every missing one is named.
	other := e.Name + "_partial"
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`CREATE TABLE %s (sequence_id bigserial PRIMARY KEY, channel text)`, other))
	t.Cleanup(func() { harness.ExecInCleanup(t, e.DatabaseURL, fmt.Sprintf(`DROP TABLE IF EXISTS %s`, other)) })
	out, err = e.Pgoutbox(t, "setup", "--table", other, "--publication", other, "--slot", other)
	if err == nil {
		t.Fatalf("setup accepted a table without name, data and headers columns:\n%s", out)
	}
	for _, col := range []string{`\"name\"`, `\"data\"`, `\"headers\"`} {
		if !strings.Contains(out, col) {
			t.Errorf("setup's error does not name the missing column %s:\n%s", col, out)
		}
	}
	if strings.Contains(out, `\"channel\"`) {
		t.Errorf("setup names a column that exists:\n%s", out)
	}
}

// TestDropSlot: `pgoutbox drop-slot` refuses while a relay streams, explains what is given up
// without --yes, and drops the slot with it.
func TestDropSlot(t *testing.T) {
	t.Parallel()
	e := harness.NewOutbox(t, 1)
	relay := e.StartRelay(t)
	relay.WaitLog("streaming started", 30*time.Second)
	if out, err := e.Pgoutbox(t, "drop-slot", "--yes"); err == nil || !strings.Contains(out, "in use by process") {
		t.Errorf("drop-slot of an active slot: err %v, output:\n%s", err, out)
	}
	relay.Stop(30 * time.Second)

	out, err := e.Pgoutbox(t, "drop-slot")
	if err == nil || !strings.Contains(out, "WARNING") || !strings.Contains(out, "--yes") {
		t.Errorf("drop-slot without --yes: err %v, output:\n%s", err, out)
	}
	if st := slotExists(t, e); !st {
		t.Fatal("drop-slot without --yes dropped the slot")
	}
	if out, err := e.Pgoutbox(t, "drop-slot", "--yes"); err != nil {
		t.Fatalf("drop-slot --yes: %v\n%s", err, out)
	}
	if slotExists(t, e) {
		t.Error("the slot still exists after drop-slot --yes")
	}
}

func slotExists(t *testing.T, e harness.Outbox) bool {
	t.Helper()
	var n int
	if err := harness.Connect(t, e.DatabaseURL).QueryRow(t.Context(), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, e.Name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}
