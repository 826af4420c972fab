//go:build integration

package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestSchemaChange_WhileStreaming alters the outbox table under a running relay:
//   - a column added: rows keep flowing, and after a restart with --extra-header-columns the new
//     column rides along as a header;
//   - the payload column renamed: the relay stops with an error naming the missing column, and
//     nothing is skipped: restarted with --payload-column set to the new name, it delivers the
//     very row it stopped at.
func TestSchemaChange_WhileStreaming(t *testing.T) {
	t.Parallel()
	e := harness.NewOutbox(t, 1)
	relay := e.StartRelay(t)
	relay.WaitLog("streaming started", 30*time.Second)

	first := insertReturningID(t, e, "ch", `{"n": 1}`, "")
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN tenant text`, e.Name))
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`INSERT INTO %s (channel, name, data, tenant) VALUES ('ch', 'after.add', '{"n": 2}', 'acme')`, e.Name))
	harness.WaitRecords(t, e.Brokers, e.Name, 2, 30*time.Second)
	relay.Stop(30 * time.Second)

	relay = e.StartRelay(t, "PGOUTBOX_EXTRA_HEADER_COLUMNS=tenant")
	relay.WaitLog("streaming started", 30*time.Second)
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`INSERT INTO %s (channel, name, data, tenant) VALUES ('ch', 'with.header', '{"n": 3}', 'acme')`, e.Name))
	recs := harness.WaitRecords(t, e.Brokers, e.Name, 3, 30*time.Second)
	if got := recs[2].Headers["tenant"]; got != "acme" {
		t.Errorf("new column as header = %q, want acme (headers %v)", got, recs[2].Headers)
	}

	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`ALTER TABLE %s RENAME COLUMN data TO payload`, e.Name))
	var stuck string
	if err := harness.Connect(t, e.DatabaseURL).QueryRow(t.Context(), fmt.Sprintf(`INSERT INTO %s (channel, name, payload)
		VALUES ('ch', 'after.rename', '{"n": 4}') RETURNING sequence_id::text`, e.Name)).Scan(&stuck); err != nil {
		t.Fatal(err)
	}
	if code := relay.WaitExit(time.Minute); code == 0 {
		t.Fatal("relay exited 0 after the payload column was renamed")
	}
	if log := relay.Log.String(); !strings.Contains(log, `has no column \"data\"`) || !strings.Contains(log, "--payload-column") {
		t.Errorf("the error does not name the missing column and the setting:\n%s", relay.Log.Tail(3))
	}

	relay = e.StartRelay(t, "PGOUTBOX_EXTRA_HEADER_COLUMNS=tenant", "PGOUTBOX_PAYLOAD_COLUMN=payload")
	relay.WaitLog("streaming started", 30*time.Second)
	recs = harness.WaitRecords(t, e.Brokers, e.Name, 4, 30*time.Second)
	if got := recs[3].Headers["pgoutbox-id"]; got != stuck || string(recs[3].Value) != `{"n": 4}` {
		t.Errorf("after the restart the topic's 4th record is id %s value %s, want the row the relay stopped at (%s)", got, recs[3].Value, stuck)
	}
	relay.Stop(30 * time.Second)
	t.Logf("rows before the change %s..; stopped at row %s after the rename and delivered it after the restart", first, stuck)
}
