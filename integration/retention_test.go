//go:build integration

package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// outboxIDs returns the ids still in the outbox table.
func outboxIDs(t *testing.T, e harness.Outbox) map[string]bool {
	t.Helper()
	rows, err := harness.Connect(t, e.DatabaseURL).Query(context.Background(), fmt.Sprintf(`SELECT sequence_id::text FROM %s`, e.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	ids := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	return ids
}

// idLog is the set of ids whose INSERT committed, filled by concurrent writers.
type idLog struct {
	mu  sync.Mutex
	ids []string
}

func (l *idLog) add(id string) { l.mu.Lock(); l.ids = append(l.ids, id); l.mu.Unlock() }

func (l *idLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ids...)
}

// TestRetention_DeleteAfterPublish: with --retention=delete-after-publish the table holds
// exactly the rows Kafka has not acknowledged yet: at any moment, a committed row gone from the
// table is in Kafka; once everything is delivered the table is empty.
func TestRetention_DeleteAfterPublish(t *testing.T) {
	t.Parallel()
	e := harness.NewOutbox(t, 3)
	relay := e.StartRelay(t, "PGOUTBOX_RETENTION=delete-after-publish", "PGOUTBOX_JANITOR_BATCH=100")
	relay.WaitLog("streaming started", 30*time.Second)

	const writers, perWriter = 4, 1500
	committed := &idLog{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := harness.Connect(t, e.DatabaseURL)
			for i := range perWriter {
				var id string
				err := conn.QueryRow(context.Background(), fmt.Sprintf(`INSERT INTO %s (channel, name, data)
					VALUES ($1, 'retained', '{}') RETURNING sequence_id::text`, e.Name), fmt.Sprintf("ch-%d", (w*perWriter+i)%16)).Scan(&id)
				if err != nil {
					t.Error(err)
					return
				}
				committed.add(id)
			}
		}()
	}
	defer wg.Wait() // the writers' connections close at cleanup: never under a running writer
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()

	checks, maxInTable := 0, 0
	check := func() {
		// Committed ids first, then the table, then Kafka: a committed row that is gone from
		// the table was acknowledged before its DELETE, so Kafka must hold it by then.
		ids := committed.snapshot()
		inTable := outboxIDs(t, e)
		recs, err := harness.ReadTopic(context.Background(), e.Brokers, e.Name)
		if err != nil {
			t.Logf("read topic (the check is skipped this time): %v", err)
			return
		}
		inKafka := map[string]bool{}
		for _, r := range recs {
			inKafka[r.Headers["pgoutbox-id"]] = true
		}
		for _, id := range ids {
			if !inTable[id] && !inKafka[id] {
				t.Fatalf("row %s was deleted from the table but is not in Kafka", id)
			}
		}
		maxInTable = max(maxInTable, len(inTable))
		checks++
	}
	for done := false; !done; {
		select {
		case <-writing:
			done = true
		case <-time.After(200 * time.Millisecond):
		}
		check()
	}
	recs := harness.WaitRecords(t, e.Brokers, e.Name, writers*perWriter, time.Minute)
	deadline := time.Now().Add(30 * time.Second)
	for n := len(outboxIDs(t, e)); n > 0; n = len(outboxIDs(t, e)) {
		if time.Now().After(deadline) {
			t.Fatalf("%d rows still in the table 30 s after everything was delivered", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	check()
	relay.Stop(30 * time.Second)
	t.Logf("%d rows delivered (%d records) and deleted; invariant checked %d times; at most %d rows in the table at a check",
		writers*perWriter, len(recs), checks, maxInTable)
}

// TestRetention_None_InsertAndDeleteInOneTransaction: with the default --retention=none the
// application may delete its outbox row in the very transaction that inserted it — the common
// pattern that keeps the table empty — and the event is still published (the publication
// carries inserts only; the delete is not an event).
func TestRetention_None_InsertAndDeleteInOneTransaction(t *testing.T) {
	t.Parallel()
	e := harness.NewOutbox(t, 1)
	relay := e.StartRelay(t)
	relay.WaitLog("streaming started", 30*time.Second)
	conn := harness.Connect(t, e.DatabaseURL)
	for i := range 11 {
		tx, err := conn.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var id int64
		if err := tx.QueryRow(context.Background(), fmt.Sprintf(`INSERT INTO %s (channel, name, data)
			VALUES ('ch', 'transient', jsonb_build_object('n', %d)) RETURNING sequence_id`, e.Name, i)).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(context.Background(), fmt.Sprintf(`DELETE FROM %s WHERE sequence_id = $1`, e.Name), id); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	recs := harness.WaitRecords(t, e.Brokers, e.Name, 11, 30*time.Second)
	if n := len(outboxIDs(t, e)); n != 0 {
		t.Errorf("%d rows in the table, want 0", n)
	}
	for i, r := range recs {
		if want := fmt.Sprintf(`{"n": %d}`, i); string(r.Value) != want {
			t.Errorf("record %d = %s, want %s", i, r.Value, want)
		}
	}
	relay.Stop(30 * time.Second)
}
