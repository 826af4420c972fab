//go:build integration

package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSchemaChange_WhileStreaming alters the outbox table under a running relay:
//   - a column added: rows keep flowing, and after a restart with --extra-header-columns the new
//     column rides along as a header;
//   - the payload column renamed: the relay stops with an error naming the missing column, and
//     nothing is skipped: restarted with --payload-column set to the new name, it delivers the
//     very row it stopped at.
func TestSchemaChange_WhileStreaming(t *testing.T) {
	t.Parallel()
	e := newOutbox(t, 1)
	relay := e.startRelay(t)
	relay.waitLog("streaming started", 30*time.Second)

	first := insertReturningID(t, e, "ch", `{"n": 1}`, "")
	execSQL(t, e.DatabaseURL, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN tenant text`, e.Name))
	execSQL(t, e.DatabaseURL, fmt.Sprintf(`INSERT INTO %s (channel, name, data, tenant) VALUES ('ch', 'after.add', '{"n": 2}', 'acme')`, e.Name))
	waitRecords(t, e.Brokers, e.Name, 2, 30*time.Second)
	relay.stop(30 * time.Second)

	relay = e.startRelay(t, "PGOUTBOX_EXTRA_HEADER_COLUMNS=tenant")
	relay.waitLog("streaming started", 30*time.Second)
	execSQL(t, e.DatabaseURL, fmt.Sprintf(`INSERT INTO %s (channel, name, data, tenant) VALUES ('ch', 'with.header', '{"n": 3}', 'acme')`, e.Name))
	recs := waitRecords(t, e.Brokers, e.Name, 3, 30*time.Second)
	if got := recs[2].Headers["tenant"]; got != "acme" {
		t.Errorf("new column as header = %q, want acme (headers %v)", got, recs[2].Headers)
	}

	execSQL(t, e.DatabaseURL, fmt.Sprintf(`ALTER TABLE %s RENAME COLUMN data TO payload`, e.Name))
	var stuck string
	if err := connect(t, e.DatabaseURL).QueryRow(t.Context(), fmt.Sprintf(`INSERT INTO %s (channel, name, payload)
		VALUES ('ch', 'after.rename', '{"n": 4}') RETURNING sequence_id::text`, e.Name)).Scan(&stuck); err != nil {
		t.Fatal(err)
	}
	if code := relay.waitExit(time.Minute); code == 0 {
		t.Fatal("relay exited 0 after the payload column was renamed")
	}
	if log := relay.log.String(); !strings.Contains(log, `has no column \"data\"`) || !strings.Contains(log, "--payload-column") {
		t.Errorf("the error does not name the missing column and the setting:\n%s", relay.log.tail(3))
	}

	relay = e.startRelay(t, "PGOUTBOX_EXTRA_HEADER_COLUMNS=tenant", "PGOUTBOX_PAYLOAD_COLUMN=payload")
	relay.waitLog("streaming started", 30*time.Second)
	recs = waitRecords(t, e.Brokers, e.Name, 4, 30*time.Second)
	if got := recs[3].Headers["pgoutbox-id"]; got != stuck || string(recs[3].Value) != `{"n": 4}` {
		t.Errorf("after the restart the topic's 4th record is id %s value %s, want the row the relay stopped at (%s)", got, recs[3].Value, stuck)
	}
	relay.stop(30 * time.Second)
	t.Logf("rows before the change %s..; stopped at row %s after the rename and delivered it after the restart", first, stuck)
}
