//go:build integration

package integration

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestRun_KafkaDownAtStart: a relay started while its (private) broker is down used to exit 1,
// while a running relay waits for Kafka. Now it waits too: it logs what it waits for and how to
// fix it, /readyz answers 503 naming Kafka, /healthz 200, the slot is not confirmed and no
// session streams; rows are committed meanwhile. When the broker is started again, the relay
// (the same process) streams, and every row — those committed while it waited and after — is
// in Kafka exactly once, in order.
func TestRun_KafkaDownAtStart(t *testing.T) {
	t.Parallel()
	kafka := harness.StartPrivateKafka(t)
	e := harness.NewOutboxOn(t, harness.Services{DatabaseURL: harness.NeedPostgres(t), Brokers: kafka.Brokers}, 1)
	kafka.Stop()
	confirmedBefore := harness.SlotConfirmed(t, e.DatabaseURL, e.Name)

	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	relay := e.StartRelay(t, "PGOUTBOX_HTTP_ADDR="+addr, "PGOUTBOX_LOG_LEVEL=info", "PGOUTBOX_RECONNECT_MAX=2s")
	relay.WaitLog("waiting for Kafka before streaming", time.Minute)

	var ids []string
	for i := range 20 { // committed while the relay waits
		ids = append(ids, insertReturningID(t, e, fmt.Sprintf("ch-%d", i%3), fmt.Sprintf(`{"n": %d}`, i), ""))
	}
	// Several attempts, each logged; the process stays up, nothing streams.
	deadline := time.Now().Add(time.Minute)
	for len(relay.LogEntries("waiting for Kafka before streaming: nothing is read from PostgreSQL or confirmed until it answers; check --kafka-brokers and that Kafka is running")) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 3 waiting lines in a minute:\n%s", relay.InfoTail(5))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !relay.Running() {
		t.Fatalf("the relay exited while Kafka was down: %v\n%s", relay.Err, relay.InfoTail(5))
	}
	line := relay.LogEntries("waiting for Kafka before streaming: nothing is read from PostgreSQL or confirmed until it answers; check --kafka-brokers and that Kafka is running")[0]
	if errText, _ := line["error"].(string); !strings.Contains(errText, kafka.Brokers[0]) || line["level"] != "warn" {
		t.Errorf("the waiting line does not name the broker %s at warn level: %v", kafka.Brokers[0], line)
	}
	code, body := harness.Readyz(t, addr)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for Kafka") {
		t.Errorf("/readyz %d while Kafka is down, want 503 naming Kafka: %s", code, body)
	}
	t.Logf("while waiting: %s\n/readyz %d %s", relay.InfoTail(1), code, body)
	if hc, hb := harness.Health(t, addr, "/healthz"); hc != http.StatusOK {
		t.Errorf("/healthz %d while waiting, want 200 (the process is alive): %s", hc, hb)
	}
	if n := len(relay.LogEntries("streaming started")); n != 0 {
		t.Errorf("%d sessions started while Kafka was down", n)
	}
	if c := harness.SlotConfirmed(t, e.DatabaseURL, e.Name); c != confirmedBefore {
		t.Errorf("slot confirmed %s while Kafka was down (was %s): nothing may be confirmed before Kafka acknowledged", c, confirmedBefore)
	}
	waitingLines := len(relay.LogEntries("waiting for Kafka before streaming: nothing is read from PostgreSQL or confirmed until it answers; check --kafka-brokers and that Kafka is running"))

	kafka.Start()
	relay.WaitLog("kafka answers; streaming starts", 2*time.Minute)
	relay.WaitLog("streaming started", time.Minute)
	for i := range 10 { // and after
		ids = append(ids, insertReturningID(t, e, fmt.Sprintf("ch-%d", i%3), fmt.Sprintf(`{"n": %d}`, 100+i), ""))
	}
	harness.WaitRecords(t, e.Brokers, e.Name, len(ids), 2*time.Minute)
	deadline = time.Now().Add(30 * time.Second)
	for {
		if code, body = harness.Readyz(t, addr); code == http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code != http.StatusOK {
		t.Errorf("/readyz %d once Kafka answers, want 200: %s", code, body)
	}
	time.Sleep(2 * time.Second) // a duplicate would have arrived by now
	relay.Stop(30 * time.Second)
	recs, err := harness.ReadTopic(t.Context(), e.Brokers, e.Name)
	if err != nil {
		t.Fatal(err)
	}
	got := recordIDs(recs)
	if !slices.Equal(got, ids) {
		t.Errorf("topic holds %d records %v, want the %d rows once each, in order: %v", len(got), got, len(ids), ids)
	}
	if c := harness.SlotConfirmed(t, e.DatabaseURL, e.Name); c <= confirmedBefore {
		t.Errorf("slot still at %s after the rows were published", c)
	}
	t.Logf("waited through %d logged attempts; /readyz 503 meanwhile; rows %d (20 committed while waiting), records %d", waitingLines, len(ids), len(got))
}
