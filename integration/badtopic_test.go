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

// TestBadRow_TopicColumn: a row whose --topic-column names an illegal topic, or one that does
// not exist, used to stall every channel for ever (metadata retried without end, nothing else
// published, no dead-letter record, /readyz 200). Now the illegal name is a bad row at once, the
// missing topic one after --missing-topic-timeout (meanwhile /readyz names it), and the rows
// around them are published.
func TestBadRow_TopicColumn(t *testing.T) {
	t.Parallel()
	e, dlq := harness.NewOutboxWithDeadLetter(t)
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN topic text`, e.Name))

	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	relay := e.StartRelay(t, "PGOUTBOX_TOPIC_COLUMN=topic", "PGOUTBOX_ON_BAD_ROW=dead-letter",
		"PGOUTBOX_MISSING_TOPIC_TIMEOUT=5s", "PGOUTBOX_HTTP_ADDR="+addr, "PGOUTBOX_LOG_LEVEL=info")
	relay.WaitLog("streaming started", time.Minute)
	insert := func(channel, topic string) string {
		var id int64
		err := harness.Connect(t, e.DatabaseURL).QueryRow(context.Background(), fmt.Sprintf(
			`INSERT INTO %s (channel, name, data, topic) VALUES ($1, 'routed', '{}', $2) RETURNING sequence_id`, e.Name),
			channel, nullable(topic)).Scan(&id)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(id)
	}
	before := insert("a", "")
	illegal := insert("b", "bad topic!")
	missing := insert("c", "no_such_topic_"+e.Name[len(e.Name)-8:])
	after := insert("d", "")

	// While the missing topic is waited for, /readyz says so.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := harness.Readyz(t, addr)
		if code == 503 && strings.Contains(body, "no_such_topic") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never failed naming the missing topic: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	dead := harness.WaitRecords(t, e.Brokers, dlq, 2, time.Minute)
	recs := harness.WaitRecords(t, e.Brokers, e.Name, 2, time.Minute)
	relay.Stop(30 * time.Second)

	if got := recordIDs(recs); !slices.Equal(got, []string{before, after}) {
		t.Errorf("topic holds %v, want %v: the rows around the bad ones", got, []string{before, after})
	}
	reasons := map[string]string{}
	for _, r := range dead {
		reasons[r.Headers["pgoutbox-id"]] = r.Headers["pgoutbox-error"]
	}
	if !strings.Contains(reasons[illegal], "bad topic!") || !strings.Contains(reasons[missing], "does not exist after waiting 5s") {
		t.Errorf("dead-letter reasons %q, want the illegal name for %s and the missing topic for %s", reasons, illegal, missing)
	}
}
