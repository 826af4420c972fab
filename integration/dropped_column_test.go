//go:build integration

package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestSchemaChange_DroppedColumnAddedBack: the name column is dropped while the relay streams,
// a row is written, and the column is added back. The rows written meanwhile can never be
// decoded as configured, so on the old main the relay stopped at the same place after every
// restart, whatever the policy; then the way past was to dead-letter that row as a JSON object
// of its columns, which nothing could publish. Now the error names the whole way, and following
// it works: with --on-bad-row=dead-letter the row is set aside as its event with the name taken
// as NULL (the row as written in a header), logged once, the rest flow; `pgoutbox dlq redrive
// --apply` publishes it with its true position, once, and a re-sync control record after it
// (its channel holds a later event already); a second redrive publishes nothing.
func TestSchemaChange_DroppedColumnAddedBack(t *testing.T) {
	t.Parallel()
	e, dlq := harness.NewOutboxWithDeadLetter(t)
	relay := e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
	relay.WaitLog("streaming started", time.Minute)
	before := insertReturningID(t, e, "ch", `{"n": 1}`, "")
	harness.WaitRecords(t, e.Brokers, e.Name, 1, time.Minute)

	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`ALTER TABLE %s DROP COLUMN name`, e.Name))
	var during string
	if err := harness.Connect(t, e.DatabaseURL).QueryRow(t.Context(), fmt.Sprintf(
		`INSERT INTO %s (channel, data) VALUES ('ch', '{"n": 2}') RETURNING sequence_id::text`, e.Name)).Scan(&during); err != nil {
		t.Fatal(err)
	}
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN name text`, e.Name))
	after := insertReturningID(t, e, "ch", `{"n": 3}`, "")

	if code := relay.WaitExit(time.Minute); code == 0 {
		t.Fatal("relay exited 0 after the name column was dropped")
	}
	if log := relay.Log.String(); !strings.Contains(log, `no column \"name\"`) || !strings.Contains(log, "--on-bad-row=dead-letter") ||
		!strings.Contains(log, "pgoutbox dlq redrive --apply") {
		t.Fatalf("the error does not name the column and the way past (dead-letter, then dlq redrive --apply):\n%s", relay.Log.Tail(3))
	}
	// With the column back, stop still stops there: the rows in between cannot be decoded.
	relay = e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
	if code := relay.WaitExit(time.Minute); code == 0 {
		t.Fatal("relay exited 0 on the stretch written without the column")
	}
	// The advice, followed.
	relay = e.StartRelay(t, "PGOUTBOX_ON_BAD_ROW=dead-letter", "PGOUTBOX_LOG_LEVEL=info")
	dead := harness.WaitRecords(t, e.Brokers, dlq, 1, time.Minute)
	recs := harness.WaitRecords(t, e.Brokers, e.Name, 2, time.Minute)
	time.Sleep(time.Second) // a second dead-letter line, or record, would be there by now
	relay.Stop(30 * time.Second)
	if got := dead[0].Headers["pgoutbox-id"]; got != during || string(dead[0].Value) != `{"n": 2}` ||
		!strings.Contains(dead[0].Headers["pgoutbox-original-row"], `"data":"{\"n\": 2}"`) {
		t.Errorf("dead-letter record id %s value %s original row %s, want row %s as its event, the row as written in pgoutbox-original-row",
			got, dead[0].Value, dead[0].Headers["pgoutbox-original-row"], during)
	}
	if lines := relay.LogEntries("bad outbox row sent to the dead-letter topic"); len(lines) != 1 {
		t.Errorf("%d dead-letter log lines for one row, want 1:\n%s", len(lines), relay.InfoTail(8))
	}
	if ids := recordIDs(recs); len(ids) != 2 || ids[0] != before || ids[1] != after {
		t.Errorf("topic holds %v, want [%s %s]", ids, before, after)
	}

	// Then the redrive the reason names: the row published once, with its position.
	code, dry := e.RunExit(t, "dlq", "redrive")
	if code != 0 || !strings.Contains(dry, "1 to re-publish") {
		t.Fatalf("pgoutbox dlq redrive (dry run) exit %d, want 1 to re-publish:\n%s", code, dry)
	}
	code, applied := e.RunExit(t, "dlq", "redrive", "--apply")
	if code != 0 || !strings.Contains(applied, "re-published 1 records") {
		t.Fatalf("pgoutbox dlq redrive --apply exit %d:\n%s", code, applied)
	}
	code, again := e.RunExit(t, "dlq", "redrive", "--apply")
	if code != 0 || !strings.Contains(again, "0 to re-publish") {
		t.Fatalf("second pgoutbox dlq redrive --apply exit %d, want 0 to re-publish:\n%s", code, again)
	}
	recs, err := harness.ReadTopic(t.Context(), e.Brokers, e.Name)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	var redriven harness.Record
	resyncAfter := false
	for _, r := range recs {
		if r.Headers["pgoutbox-control"] == "resync" {
			resyncAfter = redriven.Headers != nil && r.Headers["pgoutbox-channel"] == "ch"
			continue
		}
		seen[r.Headers["pgoutbox-id"]]++
		if r.Headers["pgoutbox-id"] == during {
			redriven = r
		}
	}
	for _, id := range []string{before, during, after} {
		if seen[id] != 1 {
			t.Errorf("row %s is in the topic %d times, want once", id, seen[id])
		}
	}
	if redriven.Headers["pgoutbox-position"] != dead[0].Headers["pgoutbox-position"] || string(redriven.Value) != `{"n": 2}` {
		t.Errorf("redriven record position %q value %s, want %q and the row's data", redriven.Headers["pgoutbox-position"], redriven.Value, dead[0].Headers["pgoutbox-position"])
	}
	for _, k := range []string{"pgoutbox-error", "pgoutbox-original-row", "pgoutbox-dead-letter-stage"} {
		if _, ok := redriven.Headers[k]; ok {
			t.Errorf("the redriven record keeps the dead-letter header %s", k)
		}
	}
	if !resyncAfter {
		t.Errorf("no re-sync control record for channel ch after the redriven record (the channel held a later event already)")
	}
	t.Logf("row %s set aside with reason %q; rows %s and %s published; redrive --apply said:\n%s", during, dead[0].Headers["pgoutbox-error"], before, after, applied)
}
