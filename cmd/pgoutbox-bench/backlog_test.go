package main

import (
	"strings"
	"testing"

	"github.com/pgoutbox/pgoutbox/integration/harness"
	"github.com/pgoutbox/pgoutbox/record"
)

func benchRecord(partition int, offset int64, key, id, pos string) harness.Record {
	h := map[string]string{record.HeaderID: id}
	if pos != "" {
		h[record.HeaderPosition] = pos
	}
	return harness.Record{Partition: partition, Offset: offset, Key: key, Headers: h}
}

// The bench's check of a drained topic: exactly once, not at least once. The relay's metric
// alone cannot tell a duplicate from another process's event, nor either from a miscount.
func TestTopicCheck(t *testing.T) {
	rows := []harness.Record{
		benchRecord(0, 0, "ch-1", "1", "0000000001000010-00000000"),
		benchRecord(1, 0, "ch-2", "2", "0000000001000010-00000001"),
		benchRecord(0, 1, "ch-3", "3", "0000000001000020-00000000"),
	}
	for _, tc := range []struct {
		name  string
		extra []harness.Record
		want  string // in the error; "" = no error
	}{
		{"each row once", nil, ""},
		{"a duplicate", []harness.Record{benchRecord(0, 2, "ch-3", "3", "0000000001000020-00000000")},
			"1 duplicates (0000000001000020-00000000 at 0/2)"},
		{"another process's WAL-only message", []harness.Record{benchRecord(2, 0, "probe-1", "", "0000000001000030-00000000")},
			`1 that are no benchmark row (2/0 key "probe-1")`},
		{"a record without a position", []harness.Record{benchRecord(2, 0, "ch-4", "4", "")},
			"1 without a pgoutbox-position header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTopicCheck(len(rows))
			for _, r := range append(append([]harness.Record(nil), rows...), tc.extra...) {
				c.add(r)
			}
			err := c.err()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("err = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
	// Fewer records than rows: a row is missing.
	c := newTopicCheck(len(rows) + 1)
	for _, r := range rows {
		c.add(r)
	}
	if err := c.err(); err == nil || !strings.Contains(err.Error(), "the topic holds 3 records, want 4") {
		t.Fatalf("a missing row: err = %v", err)
	}
}

// A WAL-only outbox's events (pgoutbox_send) carry no outbox id: they are its rows, and a record
// with an id is then another process's table row.
func TestTopicCheck_Messages(t *testing.T) {
	c := newTopicCheck(2)
	c.messages = true
	c.add(benchRecord(0, 0, "ch-1", "", "0000000001000010-00000000"))
	c.add(benchRecord(1, 0, "ch-2", "", "0000000001000020-00000000"))
	if err := c.err(); err != nil {
		t.Fatalf("WAL-only events: err = %v, want nil", err)
	}
	c.add(benchRecord(2, 0, "ch-3", "3", "0000000001000030-00000000"))
	if err := c.err(); err == nil || !strings.Contains(err.Error(), `1 that are no benchmark row (2/0 key "ch-3")`) {
		t.Fatalf("a table row in a WAL-only outbox's topic: err = %v", err)
	}
}
