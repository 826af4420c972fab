//go:build integration

package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/jackc/pglogrepl"
)

// TestRelay_AckGating: while Kafka is down, committed rows are not confirmed — the slot's
// confirmed position stays below their commits — and the relay keeps running; once Kafka is
// back every row arrives and the confirmed position passes them.
func TestRelay_AckGating(t *testing.T) {
	t.Parallel()
	testAckGating(t, pgTarget{})
}

func testAckGating(t *testing.T, pg pgTarget) {
	kafka := harness.StartPrivateKafka(t)
	e := harness.NewOutboxOn(t, harness.Services{DatabaseURL: pg.url(t), Brokers: kafka.Brokers}, 2)

	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	relay := e.StartRelay(t, "PGOUTBOX_KAFKA_BACKOFF_MAX=500ms", "PGOUTBOX_HTTP_ADDR="+addr)
	relay.WaitLog("streaming started", 30*time.Second)
	kafka.Stop()

	const txns, perTxn = 10, 10
	for i := range txns {
		harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`INSERT INTO %s (channel, name, data)
			SELECT 'ch-' || (g %% 4), 'gated', jsonb_build_object('txn', %d, 'n', g) FROM generate_series(1, %d) g`, e.Name, i, perTxn))
	}
	end := harness.CurrentWAL(t, e.DatabaseURL)

	// The relay must have received the rows' commits before the slot is sampled: otherwise
	// "nothing confirmed" would hold trivially, because nothing had been read yet.
	deadline := time.Now().Add(time.Minute)
	for received := pglogrepl.LSN(0); received < harness.MustLSN(t, end); {
		if time.Now().After(deadline) {
			t.Fatalf("the relay received up to %s, not the rows' end %s, within a minute", received, end)
		}
		time.Sleep(100 * time.Millisecond)
		received = pglogrepl.LSN(harness.Scrape(t, addr)["pgoutbox_received_lsn"])
	}
	// Then several status-update intervals pass with Kafka still down.
	time.Sleep(3 * time.Second)
	during := harness.SlotConfirmed(t, e.DatabaseURL, e.Name)
	select {
	case <-relay.Done:
		t.Fatalf("relay exited while Kafka was down: %v", relay.Err)
	default:
	}

	kafka.Start()
	recs := harness.WaitRecords(t, e.Brokers, e.Name, txns*perTxn, 2*time.Minute)
	harness.WaitConfirmedPast(t, e, end, time.Minute)
	relay.Stop(30 * time.Second)

	first := recs[0].Headers["pgoutbox-commit-lsn"]
	for _, r := range recs {
		if lsn := r.Headers["pgoutbox-commit-lsn"]; harness.MustLSN(t, lsn) < harness.MustLSN(t, first) {
			first = lsn
		}
	}
	if during >= harness.MustLSN(t, first) {
		t.Errorf("with Kafka down the slot confirmed %s, at or past the first unpublished commit %s", during, first)
	}
	if len(recs) != txns*perTxn {
		t.Errorf("%d records, want %d", len(recs), txns*perTxn)
	}
	t.Logf("confirmed during the outage %s < first commit %s; after recovery >= %s; %d records", during, first, end, len(recs))
}
