package capture_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/record"
)

// TestWireFormat fixes the headers of the records pgoutbox publishes — a table row, a WAL
// message (pgoutbox_send) and a dead-lettered row — so that a change to the wire format is a
// visible decision: change the golden text here, and say why in the commit. The sink appends
// pgoutbox-partitions to each (sink's publisher integration test checks that one).
func TestWireFormat(t *testing.T) {
	t.Parallel()
	const source = "7401286427335794708/1/pgoutbox/5f3a09c2"
	d := capture.NewDecoder(capture.DefaultTable())
	d.SetSource(source)
	d.SetSchemaErrorsAsBadRows(true)
	decode := func(msg []byte) (capture.Message, error) {
		t.Helper()
		return d.Decode(msg)
	}
	for _, m := range [][]byte{outboxRelation(), begin()} {
		if _, err := decode(m); err != nil {
			t.Fatal(err)
		}
	}
	tableRow, err := decode(outboxInsert(text("41"), text("room:1"), text("message.created"), text(`{"id": 1}`), text(`{"trace": "abc"}`)))
	if err != nil {
		t.Fatal(err)
	}
	walMessage, err := decode(sendMsg(`{"v": 1, "data": {"id": 2}, "name": "message.sent", "channel": "room:2", "headers": {"n": 2}}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = decode(outboxInsert(text("43"), null, text("message.created"), text(`{}`), null))
	bad, ok := errors.AsType[*capture.BadRowError](err)
	if !ok {
		t.Fatalf("a NULL channel: %v, want a *BadRowError", err)
	}
	// What the sink sends for a bad row: the dead-letter record of stage decode.
	deadLettered := record.DeadLetter(bad.Event.Headers, record.StageDecode, bad.Reason, "events")

	for _, tc := range []struct {
		name    string
		headers []record.Header
		golden  string
	}{
		{"table row", tableRow.(capture.Row).Event.Headers, `
pgoutbox-id: 41
pgoutbox-name: message.created
pgoutbox-commit-lsn: 16/B374D848
pgoutbox-commit-index: 0
pgoutbox-position: 00000016B374D848-00000000
pgoutbox-xid: 7781
pgoutbox-channel: room:1
pgoutbox-source: 7401286427335794708/1/pgoutbox/5f3a09c2
trace: abc`},
		{"WAL message", walMessage.(capture.Row).Event.Headers, `
pgoutbox-id: <null>
pgoutbox-name: message.sent
pgoutbox-commit-lsn: 16/B374D848
pgoutbox-commit-index: 1
pgoutbox-position: 00000016B374D848-00000001
pgoutbox-xid: 7781
pgoutbox-channel: room:2
pgoutbox-source: 7401286427335794708/1/pgoutbox/5f3a09c2
n: 2`},
		{"dead-lettered row", deadLettered, `
pgoutbox-id: 43
pgoutbox-name: message.created
pgoutbox-commit-lsn: 16/B374D848
pgoutbox-commit-index: 2
pgoutbox-position: 00000016B374D848-00000002
pgoutbox-xid: 7781
pgoutbox-channel: 
pgoutbox-source: 7401286427335794708/1/pgoutbox/5f3a09c2
pgoutbox-error: ` + bad.Reason + `
pgoutbox-original-topic: events
pgoutbox-dead-letter-stage: decode`},
	} {
		var b strings.Builder
		for _, h := range tc.headers {
			v := string(h.Value)
			if h.Value == nil {
				v = "<null>"
			}
			fmt.Fprintf(&b, "\n%s: %s", h.Key, v)
		}
		if got := b.String(); got != tc.golden {
			t.Errorf("%s: headers changed:\n got:%s\nwant:%s", tc.name, got, tc.golden)
		}
	}
	if !strings.Contains(bad.Reason, "channel") {
		t.Errorf("bad row reason %q does not name the channel", bad.Reason)
	}
}
