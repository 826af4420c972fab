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
// restart, whatever the policy. Now the error says the way past, and following it works:
// with --on-bad-row=dead-letter that row is set aside (its columns kept) and the rest flow.
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
	if log := relay.Log.String(); !strings.Contains(log, `no column \"name\"`) || !strings.Contains(log, "--on-bad-row=dead-letter") {
		t.Fatalf("the error does not name the column and the way past:\n%s", relay.Log.Tail(3))
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
	relay.Stop(30 * time.Second)
	if got := dead[0].Headers["pgoutbox-id"]; got != during || !strings.Contains(string(dead[0].Value), `"data":"{\"n\": 2}"`) {
		t.Errorf("dead-letter record id %s value %s, want row %s with its columns", got, dead[0].Value, during)
	}
	if ids := recordIDs(recs); len(ids) != 2 || ids[0] != before || ids[1] != after {
		t.Errorf("topic holds %v, want [%s %s]", ids, before, after)
	}
	t.Logf("row %s set aside with reason %q; rows %s and %s published", during, dead[0].Headers["pgoutbox-error"], before, after)
}
