//go:build integration

package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// insertReturningID inserts one outbox row and returns its id.
func insertReturningID(t *testing.T, e harness.Outbox, channel, data, headers string) string {
	t.Helper()
	var id int64
	conn := harness.Connect(t, e.DatabaseURL)
	err := conn.QueryRow(context.Background(), fmt.Sprintf(`INSERT INTO %s (channel, name, data, headers)
		VALUES ($1, 'bad.row.test', $2::jsonb, $3::jsonb) RETURNING sequence_id`, e.Name), channel, data, nullable(headers)).Scan(&id)
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	return fmt.Sprint(id)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// recordIDs lists the pgoutbox-id headers of records.
func recordIDs(recs []harness.Record) []string {
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.Headers["pgoutbox-id"])
	}
	return ids
}

// TestBadRow_StopThenDeadLetter walks the bad-row policies on one outbox:
//   - stop (the default): a row with an empty channel halts the relay with an error naming the
//     row's id and position, after the rows before it were delivered;
//   - restarted with dead-letter: that same row is decoded again — proof that the slot was not
//     confirmed past it — and lands on the dead-letter topic with the reason, as does a row
//     whose headers are not a JSON object and a row larger than the topic's max.message.bytes;
//     the good rows around them reach the topic in order;
//   - stop again: a too-large row halts the relay with Kafka's refusal and the row's id.
func TestBadRow_StopThenDeadLetter(t *testing.T) {
	t.Parallel()
	e, dlq := harness.NewOutboxWithDeadLetter(t)

	// Phase 1: stop.
	relay := e.StartRelay(t)
	relay.WaitLog("streaming started", 30*time.Second)
	good1 := insertReturningID(t, e, "ch-a", `{"n": 1}`, "")
	bad := insertReturningID(t, e, "", `{"n": 2}`, "")
	good2 := insertReturningID(t, e, "ch-a", `{"n": 3}`, "")
	if code := relay.WaitExit(time.Minute); code == 0 {
		t.Fatalf("relay exited 0 on a bad row under --on-bad-row=stop")
	}
	if log := relay.Log.String(); !strings.Contains(log, "cannot publish outbox row id="+bad+" at commit") || !strings.Contains(log, "channel") {
		t.Errorf("the stop error does not name row %s, its position and the reason:\n%s", bad, relay.Log.Tail(5))
	}
	if ids := recordIDs(harness.WaitRecords(t, e.Brokers, e.Name, 1, 30*time.Second)); strings.Join(ids, ",") != good1 {
		t.Errorf("topic holds %v after the stop, want only the row before the bad one (%s)", ids, good1)
	}

	// Phase 2: dead-letter. The bad row must come back from the slot.
	relay = e.StartRelay(t, "PGOUTBOX_ON_BAD_ROW=dead-letter")
	relay.WaitLog("streaming started", 30*time.Second)
	badHeaders := insertReturningID(t, e, "ch-a", `{"n": 4}`, `[1, 2]`)
	tooLarge := insertReturningID(t, e, "ch-a", fmt.Sprintf(`{"pad": "%s"}`, strings.Repeat("x", 1_500_000)), "")
	good3 := insertReturningID(t, e, "ch-a", `{"n": 6}`, "")

	main := harness.WaitRecords(t, e.Brokers, e.Name, 3, time.Minute)
	if got, want := strings.Join(recordIDs(main), ","), strings.Join([]string{good1, good2, good3}, ","); got != want {
		t.Errorf("topic holds %s, want the good rows in order %s", got, want)
	}
	dead := harness.WaitRecords(t, e.Brokers, dlq, 3, time.Minute)
	wantReason := map[string]string{bad: "channel", badHeaders: "headers", tooLarge: "too large"}
	for _, r := range dead {
		id := r.Headers["pgoutbox-id"]
		reason, ok := wantReason[id]
		if !ok {
			t.Errorf("unexpected dead-letter record id %s", id)
			continue
		}
		if !strings.Contains(strings.ToLower(r.Headers["pgoutbox-error"]), reason) {
			t.Errorf("dead-letter record %s: pgoutbox-error %q does not mention %q", id, r.Headers["pgoutbox-error"], reason)
		}
		if r.Headers["pgoutbox-position"] == "" {
			t.Errorf("dead-letter record %s lacks its position", id)
		}
		delete(wantReason, id)
	}
	if len(wantReason) > 0 {
		t.Errorf("rows missing from the dead-letter topic: %v", wantReason)
	}
	if m := strings.Count(relay.Log.String(), "dead-letter topic"); m < 3 {
		t.Errorf("%d log lines about the dead-letter topic, want one per bad row", m)
	}
	relay.Stop(30 * time.Second)

	// Phase 3: stop on a row Kafka refuses.
	relay = e.StartRelay(t)
	relay.WaitLog("streaming started", 30*time.Second)
	refused := insertReturningID(t, e, "ch-b", fmt.Sprintf(`{"pad": "%s"}`, strings.Repeat("y", 1_500_000)), "")
	if code := relay.WaitExit(time.Minute); code == 0 {
		t.Fatalf("relay exited 0 on a row Kafka refused under --on-bad-row=stop")
	}
	if log := relay.Log.String(); !strings.Contains(log, refused) || !strings.Contains(strings.ToLower(log), "too large") {
		t.Errorf("the stop error does not name row %s and Kafka's reason:\n%s", refused, relay.Log.Tail(5))
	}
	t.Logf("stopped at row %s; dead-lettered %d rows (%s, %s, %s); stopped at refused row %s", bad, len(dead), bad, badHeaders, tooLarge, refused)
}
