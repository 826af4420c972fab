//go:build integration

package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestDLQRedrive: rows routed (--topic-column) to a topic that does not exist are dead-lettered
// after --missing-topic-timeout; `pgoutbox dlq list` shows them with their original topic,
// position and error; the operator creates the topic (the cause) and follows the advice:
// `pgoutbox dlq redrive` (a dry run), then `--apply`. The topic then holds each row once, in
// commit order, with its original position headers and no dead-letter headers; a second
// `--apply` publishes nothing.
func TestDLQRedrive(t *testing.T) {
	t.Parallel()
	e, dlq := harness.NewOutboxWithDeadLetter(t)
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN topic text`, e.Name))
	missing := e.Name + "_later"
	t.Cleanup(func() { harness.DeleteTopicQuietly(e.Brokers, missing) })

	relay := e.StartRelay(t, "PGOUTBOX_TOPIC_COLUMN=topic", "PGOUTBOX_ON_BAD_ROW=dead-letter",
		"PGOUTBOX_MISSING_TOPIC_TIMEOUT=2s", "PGOUTBOX_LOG_LEVEL=info")
	relay.WaitLog("streaming started", time.Minute)
	const rows = 6
	var ids []string
	for i := range rows {
		var id int64
		if err := harness.Connect(t, e.DatabaseURL).QueryRow(context.Background(), fmt.Sprintf(
			`INSERT INTO %s (channel, name, data, topic) VALUES ($1, 'routed', $2, $3) RETURNING sequence_id`, e.Name),
			fmt.Sprintf("ch%d", i%2), fmt.Sprintf(`{"n": %d}`, i), missing).Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, fmt.Sprint(id))
	}
	dead := harness.WaitRecords(t, e.Brokers, dlq, rows, 2*time.Minute)
	relay.Stop(30 * time.Second)

	code, list := e.RunExit(t, "dlq", "list", "--topic-column", "topic")
	if code != 0 || !strings.Contains(list, missing) || !strings.Contains(list, fmt.Sprintf("%d records in %s", rows, dlq)) {
		t.Fatalf("pgoutbox dlq list exit %d:\n%s", code, list)
	}
	code, out := e.RunExit(t, "dlq", "redrive", "--topic-column", "topic")
	if code != 0 || !strings.Contains(out, "does not exist: create it") {
		t.Fatalf("redrive before the topic exists: exit %d, want advice to create it:\n%s", code, out)
	}
	harness.CreateTopic(t, e.Brokers, missing, 2) // the cause, fixed
	code, out = e.RunExit(t, "dlq", "redrive", "--topic-column", "topic")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%d to re-publish", rows)) || !strings.Contains(out, "dry run") {
		t.Fatalf("redrive dry run: exit %d:\n%s", code, out)
	}
	if recs, err := harness.ReadTopic(context.Background(), e.Brokers, missing); err != nil || len(recs) != 0 {
		t.Fatalf("the dry run published: %d records (%v)", len(recs), err)
	}
	code, applied := e.RunExit(t, "dlq", "redrive", "--topic-column", "topic", "--apply")
	if code != 0 {
		t.Fatalf("redrive --apply exit %d:\n%s", code, applied)
	}
	code, again := e.RunExit(t, "dlq", "redrive", "--topic-column", "topic", "--apply")
	if code != 0 || !strings.Contains(again, "0 to re-publish") {
		t.Fatalf("second redrive --apply exit %d, want 0 to re-publish:\n%s", code, again)
	}

	recs, err := harness.ReadTopic(context.Background(), e.Brokers, missing)
	if err != nil {
		t.Fatal(err)
	}
	deadPos := map[string]string{}
	for _, d := range dead {
		deadPos[d.Headers["pgoutbox-id"]] = d.Headers["pgoutbox-position"]
	}
	seen := map[string]int{}
	last := map[string]string{}
	for _, r := range recs {
		id := r.Headers["pgoutbox-id"]
		seen[id]++
		if r.Headers["pgoutbox-position"] != deadPos[id] || r.Headers["pgoutbox-position"] == "" {
			t.Errorf("row %s re-published with position %q, dead-lettered with %q", id, r.Headers["pgoutbox-position"], deadPos[id])
		}
		if p := r.Headers["pgoutbox-position"]; p <= last[string(r.Key)] {
			t.Errorf("channel %s: position %s after %s", r.Key, p, last[string(r.Key)])
		} else {
			last[string(r.Key)] = p
		}
		for _, k := range []string{"pgoutbox-error", "pgoutbox-original-topic", "pgoutbox-dead-letter-stage"} {
			if _, ok := r.Headers[k]; ok {
				t.Errorf("row %s re-published with the dead-letter header %s", id, k)
			}
		}
	}
	var got []string
	for id, n := range seen {
		if n != 1 {
			t.Errorf("row %s re-published %d times", id, n)
		}
		got = append(got, id)
	}
	slices.Sort(got)
	want := slices.Clone(ids)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("topic %s holds rows %v, want %v", missing, got, want)
	}
	t.Logf("%d rows dead-lettered; redrive re-published %d records (%d rows, duplicates 0) after a second --apply; apply said:\n%s",
		len(dead), len(recs), len(seen), applied)
}
